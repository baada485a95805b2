"""Larger-than-memory data: memory-mapped input streams in bounded memory."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils import check_array

import sknn_large._data._sources as data_module
from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._data import (
    ResidentFeed,
    StreamFeed,
    is_in_memory,
    is_memory_mapped,
    iter_host_blocks,
    make_feed,
    release_rows,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self"
)


def _save(path: Path, a: np.ndarray) -> np.memmap:
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@pytest.fixture
def small_chunks(monkeypatch):
    # ~4 KiB chunks: a few hundred rows of 10 float32 features stream in many.
    monkeypatch.setattr(data_module, "_DEFAULT_CHUNK_BYTES", 4000)


def test_memory_mapped_views_are_recognised(tmp_path):
    # scikit-learn's validation returns a plain ndarray view of a memmap; it
    # must still count as memory-mapped, or the resident feed would copy it.
    X = _save(tmp_path / "x.npy", np.ones((100, 4), dtype=np.float32))
    view = check_array(X, dtype=(np.float64, np.float32))
    assert type(view) is np.ndarray and np.shares_memory(view, X)
    assert is_memory_mapped(X) and is_memory_mapped(view)
    assert is_memory_mapped(view[10:20])
    assert not is_in_memory(view)
    assert is_in_memory(np.ones((3, 2))) and not is_memory_mapped(np.ones((3, 2)))
    feed = make_feed(
        view,
        np.zeros(100),
        None,
        batch_size=10,
        device=torch.device("cpu"),
        dtype=torch.float32,
        target_dtype=torch.float32,
    )
    assert isinstance(feed, StreamFeed)


def test_small_budget_forces_streaming():
    # An in-memory array larger than the device budget is streamed in chunks
    # of whole batches that fit the budget.
    X = np.random.RandomState(0).rand(1000, 10)
    kw = dict(
        batch_size=32,
        device=torch.device("cpu"),
        dtype=torch.float32,
        target_dtype=torch.float32,
    )
    assert isinstance(make_feed(X, np.zeros(1000), None, **kw), ResidentFeed)
    feed = make_feed(X, np.zeros(1000), None, budget_bytes=10 * 40 * 10, **kw)
    assert isinstance(feed, StreamFeed)
    assert feed.chunk_rows % 32 == 0 and feed.chunk_rows * 40 <= 10 * 40 * 10
    rows = torch.cat([x for x, _, _ in feed.chunks()])
    np.testing.assert_array_equal(rows.numpy(), X.astype(np.float32))


def test_stream_shuffle_is_chunk_then_row(tmp_path, small_chunks):
    # Documented guarantee: each epoch sees every row once; a batch never mixes
    # chunks; the chunk order and the order within chunks vary by epoch.
    n = 1000
    X = _save(tmp_path / "x.npy", np.arange(n, dtype=np.float32)[:, None] * [1, 1])
    feed = make_feed(
        X,
        np.arange(n, dtype=np.float64),
        None,
        batch_size=20,
        device=torch.device("cpu"),
        dtype=torch.float32,
        target_dtype=torch.float32,
    )
    assert isinstance(feed, StreamFeed) and feed.chunk_rows == 500 // 20 * 20
    gen = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        rows = []
        for x, y, _ in feed.batches(gen, shuffle=True):
            np.testing.assert_array_equal(x[:, 0].numpy(), y.numpy())
            chunk_ids = {int(r) // feed.chunk_rows for r in y}
            assert len(chunk_ids) == 1
            rows.extend(int(r) for r in y)
        assert sorted(rows) == list(range(n))
        epochs.append(rows)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(n))


def test_prefetching_reader_gives_the_same_epochs(tmp_path, small_chunks):
    # The background reader (the default on GPUs) changes timing, not order.
    X = _save(tmp_path / "x.npy", np.random.RandomState(0).rand(900, 10))
    kw = dict(
        batch_size=30,
        device=torch.device("cpu"),
        dtype=torch.float32,
        target_dtype=torch.float32,
        chunk_rows=120,
    )
    y = np.arange(900.0)
    plain = StreamFeed(X, y, None, prefetch=False, **kw)
    threaded = StreamFeed(X, y, None, prefetch=True, **kw)
    assert not StreamFeed(X, y, None, **kw).prefetch  # CPU default
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(2):
        a = list(plain.batches(g1, shuffle=True))
        b = list(threaded.batches(g2, shuffle=True))
        assert len(a) == len(b) == 30
        for (xa, ya, _), (xb, yb, _) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    chunks = [x for x, _, _ in threaded.chunks()]
    np.testing.assert_array_equal(torch.cat(chunks).numpy(), X.astype(np.float32))


@pytest.mark.parametrize(
    "Estimator, solver", [(LargeMLPRegressor, "adam"), (LargeMLPClassifier, "sgd")]
)
def test_streaming_equals_resident_without_shuffle(
    tmp_path, small_chunks, Estimator, solver
):
    # With shuffle=False the streaming feed yields the resident feed's batches,
    # so fitting from a memmap gives the very same weights as from RAM.
    rng = np.random.RandomState(0)
    X = rng.rand(600, 10).astype(np.float32)
    y = X @ rng.rand(10) if Estimator is LargeMLPRegressor else X[:, 0] > 0.5
    X_mm = _save(tmp_path / "x.npy", X)
    params = dict(
        hidden_layer_sizes=(7,),
        solver=solver,
        shuffle=False,
        batch_size=50,
        max_iter=4,
        random_state=0,
    )
    in_ram = Estimator(**params).fit(X, y)
    streamed = Estimator(**params).fit(X_mm, y)
    for a, b in zip(
        in_ram.coefs_ + in_ram.intercepts_,
        streamed.coefs_ + streamed.intercepts_,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(in_ram.predict(X), streamed.predict(X_mm))
    assert in_ram.loss_curve_ == streamed.loss_curve_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_streamed_in_chunks_equals_resident(tmp_path, small_chunks):
    # L-BFGS sums the chunks' losses and gradients into the whole set's, so a
    # memmap read in 100-row chunks trains as the array held whole, to the
    # rounding of a different summation order (float64).
    rng = np.random.RandomState(0)
    X = rng.rand(600, 5)
    y = X @ rng.rand(5) + 0.1 * rng.rand(600)
    X_mm = _save(tmp_path / "x.npy", X)
    params = dict(
        hidden_layer_sizes=(7,),
        solver="lbfgs",
        alpha=0.01,
        max_iter=15,
        random_state=0,
    )
    in_ram = LargeMLPRegressor(**params).fit(X, y)
    streamed = LargeMLPRegressor(**params).fit(X_mm, y)
    assert streamed.n_iter_ == in_ram.n_iter_ == 15
    assert streamed.loss_ == pytest.approx(in_ram.loss_, rel=1e-10)
    for a, b in zip(
        in_ram.coefs_ + in_ram.intercepts_,
        streamed.coefs_ + streamed.intercepts_,
        strict=True,
    ):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)


@linux_only
def test_release_rows_returns_pages(tmp_path):
    # Reading a mapped block maps its pages; releasing them takes them out of
    # the resident set again (they stay in the page cache).
    X = _save(tmp_path / "x.npy", np.ones((2**16, 128), dtype=np.float32))  # 32 MiB
    before = _status_mb("RssFile")
    float(np.asarray(X).sum())
    touched = _status_mb("RssFile")
    release_rows(np.asarray(X), 0, X.shape[0])
    after = _status_mb("RssFile")
    assert touched - before > 24
    assert after - before < 4


def test_copy_on_write_memmap_keeps_private_edits(tmp_path):
    # Pages of a copy-on-write mapping hold the user's edits: never dropped.
    np.save(tmp_path / "x.npy", np.zeros((300, 4), dtype=np.float32))
    X = np.load(tmp_path / "x.npy", mmap_mode="c")
    X[:] = 1.0
    release_rows(X, 0, 300)
    blocks = list(iter_host_blocks(X, 64))
    assert len(blocks) == 5
    assert float(X.sum()) == 1200.0


def test_streaming_validation_reports_nan(tmp_path):
    # The block-wise finite check of memory-mapped input keeps sklearn's error.
    a = np.ones((500, 3))
    a[417, 1] = np.nan
    X = _save(tmp_path / "x.npy", a)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LargeMLPRegressor(max_iter=1).fit(X, np.zeros(500))


def test_float64_memmap_streams_in_float32(tmp_path, small_chunks):
    # A float64 file is read chunk by chunk and converted on the way.
    rng = np.random.RandomState(1)
    X = rng.rand(400, 10)
    y = X.sum(axis=1)
    X_mm = _save(tmp_path / "x.npy", X)
    est = LargeMLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    est.fit(X_mm, y)
    assert est.coefs_[0].dtype == np.float64
    np.testing.assert_allclose(est.predict(X_mm), est.predict(X), rtol=1e-6, atol=1e-6)


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import torch
    sys.path.insert(0, {tests!r})
    warnings.simplefilter("ignore")
    from test_scaling_memmap import _status_mb
    import sknn_large._estimator._inputs as base_module
    import sknn_large._data._sources as data_module
    from sknn_large import LargeMLPRegressor

    torch.set_num_threads(1)
    data_module._DEFAULT_CHUNK_BYTES = 4 * 2**20
    base_module._CHECK_BLOCK_BYTES = 4 * 2**20
    X = np.load({path!r}, mmap_mode="r")
    y = np.load({ypath!r})
    # Warm up torch's allocator and thread pools before measuring.
    LargeMLPRegressor(hidden_layer_sizes=(4,), max_iter=1).fit(X[:64], y[:64])
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
    start = _status_mb("VmRSS")
    est = LargeMLPRegressor(
        hidden_layer_sizes=(4,), max_iter=1, batch_size=4096,
        early_stopping={early_stopping}
    )
    est.fit(X, y).predict(X)
    print(json.dumps(dict(start=start, peak=_status_mb("VmHWM"))))
    """
)


@linux_only
@pytest.mark.parametrize("early_stopping", [False, True])
def test_fit_from_memmap_keeps_memory_bounded(tmp_path, early_stopping):
    # Fitting and predicting from a 256 MiB file raises the process's peak
    # resident memory by a small multiple of the 4 MiB chunk, not by the file.
    # With early stopping the training and held-out rows both stream from the
    # file (a copy of the training rows would add 90% of it); only the row
    # numbers of the split (8 bytes a row) are held in memory.
    n_rows, n_features = 2**20, 64
    path = tmp_path / "x.npy"
    X = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(n_rows, n_features)
    )
    rng = np.random.default_rng(0)
    for s in range(0, n_rows, 2**17):
        X[s : s + 2**17] = rng.random((2**17, n_features), dtype=np.float32)
    X.flush()
    del X
    np.save(tmp_path / "y.npy", rng.random(n_rows, dtype=np.float32))
    script = _RSS_SCRIPT.format(
        tests=str(Path(__file__).parent),
        path=str(path),
        ypath=str(tmp_path / "y.npy"),
        early_stopping=early_stopping,
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    mb = json.loads(out.stdout.strip().splitlines()[-1])
    file_mb = path.stat().st_size / 2**20
    growth = mb["peak"] - mb["start"]
    # y (4 MiB) and its float64 copies, 16 MiB prediction blocks, a few chunks.
    assert growth < 0.35 * file_mb, (growth, file_mb)


@pytest.mark.parametrize("gather_bytes", [1, 1000, 2**30])
def test_resident_shuffle_gathers_in_blocks_with_the_same_batches(
    monkeypatch, gather_bytes
):
    # A shuffled resident epoch gathers rows a block of batches at a time; the
    # batches are those of the permutation, whatever the block size.
    import sknn_large._data._feeds as feeds

    monkeypatch.setattr(feeds, "_GATHER_BYTES", gather_bytes)
    n, bs = 503, 20
    X = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    w = np.linspace(1, 2, n)
    feed = ResidentFeed(
        X,
        np.arange(n, dtype=np.float64),
        w,
        batch_size=bs,
        device=torch.device("cpu"),
        dtype=torch.float32,
        target_dtype=torch.float32,
    )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    # A batch is valid until the next block is gathered (its buffers are
    # reused): keep copies, as the engine consumes each batch at once.
    batches = [
        tuple(t.clone() for t in batch)
        for batch in feed.batches(torch.Generator().manual_seed(3), shuffle=True)
    ]
    assert len(batches) == -(-n // bs)
    for i, (x, y, wb) in enumerate(batches):
        rows = perm[i * bs : (i + 1) * bs].numpy()
        np.testing.assert_array_equal(x.numpy(), X[rows])
        np.testing.assert_array_equal(y.numpy(), rows)
        np.testing.assert_allclose(wb.numpy(), w[rows].astype(np.float32))


def test_resident_shuffle_reuses_its_block_buffers_across_epochs():
    # Fresh multi-megabyte blocks page-fault on first touch every epoch: the
    # gathered blocks live in buffers the feed keeps.
    n = 300
    feed = ResidentFeed(
        np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        np.arange(n, dtype=np.float64),
        None,
        batch_size=32,
        device=torch.device("cpu"),
        dtype=torch.float32,
        target_dtype=torch.float32,
    )
    gen = torch.Generator().manual_seed(0)
    first = [x.data_ptr() for x, _, _ in feed.batches(gen, shuffle=True)]
    second = [x.data_ptr() for x, _, _ in feed.batches(gen, shuffle=True)]
    assert first == second
