"""Checkpoints: atomic writes, exact resumption, refusal of foreign files."""

import numpy as np
import pytest

from sknn_large import LargeMLPClassifier, LargeMLPRegressor, _checkpoint
from sknn_large._engine import _loop as _train

KW = dict(
    hidden_layer_sizes=(16,),
    dropout=0.2,
    early_stopping=True,
    n_iter_no_change=50,
    max_iter=8,
    batch_size=32,
    random_state=0,
)


def _crash_at(monkeypatch, epoch):
    real = _train._run_epoch
    calls = {"n": 0}

    def crashing(*args):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", crashing)


def _count_epochs(monkeypatch):
    real = _train._run_epoch
    ran = {"n": 0}

    def counting(*args):
        ran["n"] += 1
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", counting)
    return ran


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_resume_equals_uninterrupted(Est, iris, tmp_path, monkeypatch):
    # A run that crashes and resumes from its checkpoint ends with exactly the
    # weights, curves and scores of an uninterrupted run (dropout, early stopping).
    X, y = iris
    path = tmp_path / "run.ckpt"
    whole = Est(**KW).fit(X, y)

    _crash_at(monkeypatch, epoch=6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Est(checkpoint=path, **KW).fit(X, y)
    assert _checkpoint.read(path)["state"]["n_iter"] == 5
    monkeypatch.undo()

    ran = _count_epochs(monkeypatch)
    resumed = Est(checkpoint=path, **KW).fit(X, y)
    assert ran["n"] == 3  # it resumed: only epochs 6-8 were run
    for a, b in zip(
        whole.coefs_ + whole.intercepts_,
        resumed.coefs_ + resumed.intercepts_,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert resumed.loss_curve_ == whole.loss_curve_
    assert resumed.validation_scores_ == whole.validation_scores_
    assert resumed.n_iter_ == whole.n_iter_ == 8
    assert not path.exists()  # finished: the checkpoint is removed


def test_checkpoint_every(iris, tmp_path, monkeypatch):
    # checkpoint_every=3 writes after epochs 3 and 6 only.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crash_at(monkeypatch, epoch=6)
    with pytest.raises(RuntimeError):
        LargeMLPClassifier(checkpoint=path, checkpoint_every=3, **KW).fit(X, y)
    assert _checkpoint.read(path)["state"]["n_iter"] == 3


def test_crash_mid_write_keeps_previous_checkpoint(iris, tmp_path, monkeypatch):
    # A write that dies before its rename leaves the previous checkpoint whole
    # and no temporary file behind.
    import os

    X, y = iris
    path = tmp_path / "run.ckpt"
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(OSError, match="disk full"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert _checkpoint.read(path)["state"]["n_iter"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]


def test_interrupt_keeps_checkpoint_for_resume(iris, tmp_path, monkeypatch):
    # Ctrl-C keeps the checkpoint; the next fit resumes and finishes the run.
    X, y = iris
    path = tmp_path / "run.ckpt"
    real = _train._run_epoch
    calls = {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", interrupted)
    with pytest.warns(UserWarning, match="interrupted"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert path.exists()
    monkeypatch.undo()
    whole = LargeMLPClassifier(**KW).fit(X, y)
    resumed = LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    np.testing.assert_array_equal(whole.coefs_[0], resumed.coefs_[0])


def test_checkpoint_of_other_fit_refused(iris, tmp_path, monkeypatch):
    # A checkpoint written with other parameters is not silently resumed.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crash_at(monkeypatch, epoch=3)
    with pytest.raises(RuntimeError):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="other parameters or data"):
        LargeMLPClassifier(checkpoint=path, **{**KW, "alpha": 0.1}).fit(X, y)


def test_foreign_file_refused(iris, tmp_path):
    # A file that is not a checkpoint gives a clear error, not a torch traceback.
    X, y = iris
    path = tmp_path / "run.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable sknn_large checkpoint"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)


def test_checkpoint_rejected_for_lbfgs(iris, tmp_path):
    # L-BFGS runs as one SciPy call: asking for checkpoints is an error.
    X, y = iris
    with pytest.raises(ValueError, match="stochastic solvers"):
        LargeMLPClassifier(solver="lbfgs", checkpoint=tmp_path / "c").fit(X, y)


# ------------------------------------------------- integrity (issue 13)


def _crashed_checkpoint(monkeypatch, path, X, y, epoch=4, **kw):
    """Run a fit that crashes at ``epoch``, leaving its checkpoint at ``path``."""
    _crash_at(monkeypatch, epoch=epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        LargeMLPClassifier(checkpoint=path, **{**KW, **kw}).fit(X, y)
    monkeypatch.undo()


def test_damaged_checkpoint_is_refused(iris, tmp_path, monkeypatch):
    # One flipped byte inside a weight record is found by the digest: the fit
    # refuses the checkpoint, naming it, instead of resuming other weights; the
    # damaged file is left where it was.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crashed_checkpoint(monkeypatch, path, X, y)
    weight = _checkpoint.read(path)["module"]["0.weight"]
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(weight.numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(_checkpoint.CheckpointError, match="damaged") as info:
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert str(path) in str(info.value)
    assert path.read_bytes() == bytes(raw)


def _resealed(path, edit):
    """Rewrite a checkpoint with ``edit`` applied and a fresh, valid digest."""
    import torch

    payload = torch.load(path, weights_only=True)
    payload.pop("sha256", None)
    edit(payload)
    _checkpoint.write_atomic(path, payload)


def _drop(key):
    return lambda p: p.pop(key)


def _set_state(key, value):
    return lambda p: p["state"].__setitem__(key, value)


def _short_rng(p):
    import torch

    p["rng_start"]["keys"] = torch.zeros(10, dtype=torch.int64)


def _short_generator(p):
    p["state"]["generator"] = p["state"]["generator"][:100]


def _wide_weight(p):
    import torch

    p["module"]["0.weight"] = torch.zeros(17, 4)


def _foreign_moments(p):
    import torch

    opt = p["state"]["optimizer_state"]
    for moments in opt["state"].values():
        moments["exp_avg"] = torch.zeros(3, 3)


MALFORMED = {
    "no fingerprint": _drop("fingerprint"),
    "no state": _drop("state"),
    "short numpy rng": _short_rng,
    "short torch generator": _short_generator,
    "wrong weight shape": _wide_weight,
    "negative epoch": _set_state("n_iter", -1),
    "string loss": _set_state("loss", "low"),
    "moments of another network": _foreign_moments,
    "best weights of another network": _set_state("best_params", []),
}


@pytest.mark.parametrize("problem", sorted(MALFORMED))
def test_malformed_checkpoint_names_the_file(problem, iris, tmp_path, monkeypatch):
    # A checkpoint that is intact (valid digest) but malformed gives a clear
    # CheckpointError naming the file, never a KeyError, IndexError or torch
    # RuntimeError from deep inside the resume.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crashed_checkpoint(monkeypatch, path, X, y)
    _resealed(path, MALFORMED[problem])
    with pytest.raises(_checkpoint.CheckpointError) as info:
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content", [{"format": 1}, {"format": 2}, {"format": "2"}, [1, 2], {"x": 1}]
)
def test_foreign_torch_files_name_the_file(content, iris, tmp_path):
    # torch.save({"format": 1}, path) and other torch files are refused with a
    # CheckpointError naming the file (it was KeyError: 'fingerprint').
    import torch

    X, y = iris
    path = tmp_path / "run.ckpt"
    torch.save(content, path)
    with pytest.raises(_checkpoint.CheckpointError) as info:
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert str(path) in str(info.value)


def test_checkpoint_that_is_not_a_regular_file_is_refused(iris, tmp_path):
    # A FIFO at the checkpoint path is refused at once instead of blocking fit.
    import os

    X, y = iris
    path = tmp_path / "run.ckpt"
    os.mkfifo(path)
    with pytest.raises(_checkpoint.CheckpointError, match="not a regular file"):
        _checkpoint.read(path)


# ------------------------------------------------- fingerprint (issue 13)

_PARAMS = LargeMLPClassifier(**KW).get_params()


def _fp(X, y, sw=None, classes=(0, 1, 2), params=_PARAMS):
    return _checkpoint.fingerprint(params, X, y, sw, classes)


def test_fingerprint_covers_the_data(iris):
    # Data of the same shape but other values (X, y or sample weights), other
    # classes or other parameters give another fingerprint; equal data given in
    # another memory layout gives the same one.
    X, y = iris
    Y = np.eye(3, dtype=bool)[y]
    base = _fp(X, Y)
    assert base == _fp(X.copy(), Y.copy())
    assert base == _fp(np.asfortranarray(X), Y)
    X2 = X.copy()
    X2[17, 2] = np.nextafter(X2[17, 2], 2.0)
    assert _fp(X2, Y) != base
    assert _fp(X, Y[::-1].copy()) != base
    assert _fp(X, Y, np.ones(len(X))) != base
    sw = np.ones(len(X))
    sw2 = sw.copy()
    sw2[0] = 2.0
    assert _fp(X, Y, sw) != _fp(X, Y, sw2)
    assert _fp(X, Y, classes=("a", "b", "c")) != base
    assert _fp(X, Y, params={**_PARAMS, "alpha": 0.5}) != base
    # Parameters that do not change the steps may change between runs.
    assert _fp(X, Y, params={**_PARAMS, "max_iter": 99, "verbose": 2}) == base


def test_fingerprint_of_sparse_input_is_canonical(iris):
    # A CSR and a CSC matrix of the same values, or one with unsorted indices,
    # fingerprint alike; changing one stored value changes the fingerprint.
    import scipy.sparse as sp

    X, y = iris
    X = np.where(X > 0.5, X, 0.0)
    csr = sp.csr_matrix(X)
    base = _fp(csr, y)
    assert base == _fp(sp.csc_matrix(X), y)
    shuffled = csr.copy()
    shuffled.indices = shuffled.indices.copy()
    row = slice(shuffled.indptr[0], shuffled.indptr[1])
    order = np.argsort(-shuffled.indices[row])
    shuffled.indices[row] = shuffled.indices[row][order]
    shuffled.data[row] = shuffled.data[row][order]
    shuffled.has_sorted_indices = False
    assert base == _fp(shuffled, y)
    changed = csr.copy()
    changed.data[3] += 1.0
    assert _fp(changed, y) != base


class _LazyRows:
    """A row source that makes its rows on demand and records each read."""

    def __init__(self, n, d, seed=0):
        self.shape, self.dtype = (n, d), np.dtype(np.float64)
        self.seed, self.reads = seed, []

    def __getitem__(self, key):
        assert isinstance(key, slice) and key.step is None
        start, stop, _ = key.indices(self.shape[0])
        self.reads.append(stop - start)
        rows = np.arange(start, stop, dtype=np.float64)[:, None] * (self.seed + 1)
        out = np.empty((stop - start, self.shape[1]))
        np.add(rows, np.arange(self.shape[1]), out=out)
        return np.sin(out, out=out)

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole source was read at once")


def test_fingerprint_streams_lazy_sources():
    # An out-of-core source is hashed a block of rows at a time: never read
    # whole, peak memory near one block, the same digest as the array itself.
    import tracemalloc

    source = _LazyRows(200_000, 50)  # 80 MB of float64 made on demand
    y = np.zeros(source.shape[0])
    tracemalloc.start()
    try:
        digest = _fp(source, y, classes=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max(source.reads) * 50 * 8 <= 16 * 2**20
    assert sum(source.reads) == source.shape[0]
    assert peak < 40 * 2**20  # a block or two, not the 80 MB source
    whole = source[0 : source.shape[0]]
    assert digest == _fp(whole, y, classes=None)
    assert digest != _fp(_LazyRows(200_000, 50, seed=1), y, classes=None)


def test_fingerprint_of_memory_mapped_input(tmp_path):
    # A memory-mapped X fingerprints like the same values in memory.
    X = np.random.RandomState(0).rand(5000, 20)
    mapped = np.lib.format.open_memmap(
        tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape
    )
    mapped[:] = X
    mapped.flush()
    y = np.zeros(len(X))
    readonly = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert _fp(readonly, y, classes=None) == _fp(X, y, classes=None)


def test_fingerprint_is_the_same_on_any_number_of_threads(monkeypatch):
    # Large inputs are hashed on a thread pool; the fingerprint does not
    # depend on whether, or on how many threads, it was.
    X = np.random.RandomState(0).rand(30_000, 40)
    y = np.zeros(len(X))
    from sknn_large._checkpoint import _fingerprint

    monkeypatch.setattr(_fingerprint, "_PARALLEL_BYTES", 2**62)
    alone = _fp(X, y, classes=None)
    monkeypatch.setattr(_fingerprint, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(_fingerprint.os, "cpu_count", lambda: 3)
    assert _fp(X, y, classes=None) == alone
    monkeypatch.setattr(_fingerprint.os, "cpu_count", lambda: 8)
    assert _fp(np.asfortranarray(X), y, classes=None) == alone


def test_fingerprint_is_cheap_beside_one_epoch():
    # Hashing the data costs well under one epoch of training on it.
    import time

    rng = np.random.RandomState(0)
    X = rng.rand(20_000, 50)
    y = (X[:, 0] > 0.5).astype(int)
    est = LargeMLPClassifier(
        hidden_layer_sizes=(32,), max_iter=1, batch_size=200, random_state=0
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:500], y[:500])  # warm up torch outside the timing
        t0 = time.perf_counter()
        est.fit(X, y)
        epoch = time.perf_counter() - t0
    t0 = time.perf_counter()
    _fp(X, np.eye(2, dtype=bool)[y], classes=(0, 1), params=est.get_params())
    hashing = time.perf_counter() - t0
    assert hashing < 0.5 * epoch, (hashing, epoch)


def test_checkpoint_of_other_data_is_refused(iris, tmp_path, monkeypatch):
    # A checkpoint written for other data of the same shape (other X values,
    # other labels, other sample weights) is refused, not resumed.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crashed_checkpoint(monkeypatch, path, X, y)
    X2 = X.copy()
    X2[0, 0] += 0.25
    y2 = y.copy()
    y2[[0, 60]] = y2[[60, 0]]
    for args in ((X2, y), (X, y2)):
        with pytest.raises(ValueError, match="other parameters or data"):
            LargeMLPClassifier(checkpoint=path, **KW).fit(*args)
    with pytest.raises(ValueError, match="other parameters or data"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(
            X, y, sample_weight=np.linspace(0.5, 1.5, len(y))
        )
    # The right data still resumes.
    LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert not path.exists()


def test_resume_with_a_random_state_instance(iris, tmp_path, monkeypatch):
    # random_state=RandomState(seed) fingerprints by its state, not its memory
    # address: a new process (a new, equal RandomState) resumes its checkpoint.
    X, y = iris
    path = tmp_path / "run.ckpt"
    kw = {k: v for k, v in KW.items() if k != "random_state"}
    _crash_at(monkeypatch, epoch=4)
    with pytest.raises(RuntimeError):
        LargeMLPClassifier(
            checkpoint=path, random_state=np.random.RandomState(3), **kw
        ).fit(X, y)
    monkeypatch.undo()
    ran = _count_epochs(monkeypatch)
    resumed = LargeMLPClassifier(
        checkpoint=path, random_state=np.random.RandomState(3), **kw
    ).fit(X, y)
    assert ran["n"] == KW["max_iter"] - 3
    whole = LargeMLPClassifier(random_state=np.random.RandomState(3), **kw).fit(X, y)
    np.testing.assert_array_equal(whole.coefs_[0], resumed.coefs_[0])


# ------------------------------------------------- stale temporaries (issue 13)

_KILLED_WRITER = """
import os, signal, sys
from sknn_large import _io

def die(fd):
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of a write

os.fsync = die
_io.atomic_write(sys.argv[1], b"x" * 100000)
"""


def test_killed_write_leaves_no_temporary_behind(tmp_path):
    # A writer killed with SIGKILL mid-write leaves a full-size temporary; the
    # next write to the same checkpoint removes it (and only it).
    import subprocess
    import sys

    path = tmp_path / "run.ckpt"
    out = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], timeout=120, check=False
    )
    assert out.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].endswith(".tmp")
    (tmp_path / "other.txt").write_text("not ours")
    _checkpoint.write_atomic(path, {"format": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "run.ckpt"]


def test_live_writers_temporaries_are_kept(tmp_path):
    # A temporary whose writer is still running (here: our parent process) is
    # another write in progress, and is left alone.
    import os

    from sknn_large import _io

    path = tmp_path / "run.ckpt"
    live = tmp_path / f".run.ckpt.{_io._host()}.{os.getppid()}.0123abcd.tmp"
    live.write_bytes(b"in progress")
    _checkpoint.write_atomic(path, {"format": 2})
    assert live.exists()
