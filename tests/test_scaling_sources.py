"""Out-of-core sources: lazy array-likes (HDF5, zarr) and early stopping on them."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import sknn_large._data._sources as data_module
import sknn_large._estimator._inputs as base_module
import sknn_large._estimator._predict as predict_module
from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._data import RowView, is_row_source
from sknn_large._estimator import _plan

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self"
)


class CountingSource:
    """A minimal lazy 2-D array-like that records every row span it serves."""

    def __init__(self, a):
        self._a = a
        self.shape, self.dtype = a.shape, a.dtype
        self.reads = []

    def __getitem__(self, key):
        assert isinstance(key, slice), key
        start, stop, _ = key.indices(self.shape[0])
        self.reads.append(stop - start)
        return self._a[key].copy()


def _data(classifier=True, n=600, d=10, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, d).astype(np.float32)
    y = X[:, 0] + X[:, 1] > 1.0 if classifier else X @ rng.rand(d)
    return X, y


_PARAMS = dict(
    hidden_layer_sizes=(7,), shuffle=False, batch_size=50, max_iter=4, random_state=0
)


@pytest.fixture
def small_chunks(monkeypatch):
    # ~4 KiB chunks: a few hundred rows of 10 float32 features stream in many,
    # and the finite check and prediction read them in blocks of that size.
    monkeypatch.setattr(data_module, "_DEFAULT_CHUNK_BYTES", 4000)
    monkeypatch.setattr(base_module, "_CHECK_BLOCK_BYTES", 4000)
    monkeypatch.setattr(predict_module, "_PREDICT_ROWS", {"cpu": 100})


def _assert_same_fit(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_


def test_what_counts_as_a_row_source():
    a = np.ones((3, 2))
    assert is_row_source(CountingSource(a))
    for not_source in (
        a,
        sp.csr_matrix(a),
        torch.ones(3, 2),
        a.tolist(),
        CountingSource(np.ones(3)),  # 1-D
        CountingSource(np.array([["a", "b"]])),  # not numeric
    ):
        assert not is_row_source(not_source)
    pd = pytest.importorskip("pandas")
    assert not is_row_source(pd.DataFrame(a))


@pytest.mark.parametrize("Estimator", [LargeMLPClassifier, LargeMLPRegressor])
def test_row_source_streams_in_chunks_and_equals_in_memory(small_chunks, Estimator):
    # Fitting from a lazy source reads it a chunk at a time, never whole, and
    # with shuffle=False gives the very weights of the in-memory fit.
    X, y = _data(Estimator is LargeMLPClassifier)
    source = CountingSource(X)
    in_ram = Estimator(**_PARAMS).fit(X, y)
    streamed = Estimator(**_PARAMS).fit(source, y)
    _assert_same_fit(in_ram, streamed)
    assert 0 < max(source.reads) < X.shape[0]
    source.reads.clear()
    np.testing.assert_array_equal(in_ram.predict(X), streamed.predict(source))
    assert 0 < max(source.reads) < X.shape[0]


def test_row_source_validation_keeps_sklearn_errors():
    X, y = _data()
    bad = X.copy()
    bad[417, 3] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        LargeMLPClassifier(max_iter=1).fit(CountingSource(bad), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LargeMLPClassifier(max_iter=1).fit(CountingSource(X), y[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        LargeMLPClassifier(max_iter=1).fit(CountingSource(X[:0]), y[:0])
    est = LargeMLPClassifier(max_iter=1).fit(CountingSource(X), y)
    assert est.n_features_in_ == X.shape[1]
    with pytest.raises(ValueError, match="features"):
        est.predict(CountingSource(X[:, :4]))


@pytest.mark.parametrize("kind", ["source", "memmap"])
def test_integer_data_is_streamed_as_float64(tmp_path, kind):
    # Integer features are converted chunk by chunk, as scikit-learn would
    # convert them whole: same weights as from the float64 array in memory.
    X, y = _data(classifier=False)
    ints = (X * 100).astype(np.int32)
    if kind == "memmap":
        np.save(tmp_path / "x.npy", ints)
        source = np.load(tmp_path / "x.npy", mmap_mode="r")
    else:
        source = CountingSource(ints)
    est = LargeMLPRegressor(**_PARAMS).fit(source, y)
    ref = LargeMLPRegressor(**_PARAMS).fit(ints.astype(np.float64), y)
    assert est.coefs_[0].dtype == np.float64
    _assert_same_fit(ref, est)
    np.testing.assert_array_equal(est.predict(source), ref.predict(ints))


def test_row_view_subset_reads_sorted_rows():
    a = np.arange(40, dtype=np.float64).reshape(20, 2)
    source = CountingSource(a)
    view = RowView(source).subset([1, 4, 5, 9, 17])
    np.testing.assert_array_equal(view[1:4], a[[4, 5, 9]])
    assert source.reads == [2, 1]  # runs spanning at most 3 rows: 4..5, then 9
    np.testing.assert_array_equal(view.subset([0, 4])[0:2], a[[1, 17]])
    assert view[3:3].shape == (0, 2)
    with pytest.raises(TypeError, match="row slices"):
        view[[0, 1]]


@pytest.mark.parametrize("kind", ["memmap", "source"])
def test_early_stopping_splits_rows_without_copying(tmp_path, small_chunks, kind):
    # Early stopping on out-of-core data holds out the same rows an in-memory
    # split picks, as sorted views of the source, not copies of it.
    X, y = _data(n=800)
    if kind == "memmap":
        np.save(tmp_path / "x.npy", X)
        source = np.load(tmp_path / "x.npy", mmap_mode="r")
    else:
        source = CountingSource(X)
    params = dict(_PARAMS, early_stopping=True, max_iter=3)
    est = LargeMLPClassifier(**params).fit(source, y)
    assert len(est.validation_scores_) == est.n_iter_
    # The same split, from the same starting random state, in memory and out.
    ref = LargeMLPClassifier(**params)
    ref.fit(X, y)  # sets n_outputs_ and the classes
    Y = ref._label_binarizer.transform(y)
    rng = np.random.RandomState(0)
    Xt, _, _, Xv, _, _ = (
        getattr(p, "X", p) for p in _plan.holdout_split(ref, X, Y, None, rng)
    )
    rng = np.random.RandomState(0)
    view = RowView(source) if kind == "source" else source
    St, _, _, Sv, Wv, _ = _plan.holdout_split(ref, view, Y, None, rng)
    assert St.streams and Sv.streams
    Vt, Vv = St.X, Sv.X
    assert isinstance(Vt, RowView) and isinstance(Vv, RowView)
    # The rows are X's, identified by their (unique) values.
    position = {row.tobytes(): i for i, row in enumerate(X)}
    np.testing.assert_array_equal(Vv.index, sorted(position[r.tobytes()] for r in Xv))
    np.testing.assert_array_equal(Vt.index, sorted(position[r.tobytes()] for r in Xt))
    np.testing.assert_array_equal(Vv[0 : len(Vv)], X[Vv.index])
    np.testing.assert_array_equal(Wv, Y[Vv.index])


def test_hdf5_dataset_streams(tmp_path):
    h5py = pytest.importorskip("h5py")
    X, y = _data()
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(64, X.shape[1]))
    with h5py.File(path, "r") as f:
        dset = f["X"]
        assert is_row_source(dset)
        streamed = LargeMLPClassifier(**_PARAMS).fit(dset, y)
        pred = streamed.predict_proba(dset)
        early = LargeMLPClassifier(**dict(_PARAMS, early_stopping=True)).fit(dset, y)
    in_ram = LargeMLPClassifier(**_PARAMS).fit(X, y)
    _assert_same_fit(in_ram, streamed)
    np.testing.assert_array_equal(pred, in_ram.predict_proba(X))
    assert len(early.validation_scores_) == early.n_iter_


def test_zarr_array_streams(tmp_path):
    zarr = pytest.importorskip("zarr")
    X, y = _data(classifier=False)
    z = zarr.open_array(
        str(tmp_path / "x.zarr"), mode="w", shape=X.shape, chunks=(64, 10), dtype="f4"
    )
    z[:] = X
    assert is_row_source(z)
    streamed = LargeMLPRegressor(**_PARAMS).fit(z, y)
    in_ram = LargeMLPRegressor(**_PARAMS).fit(X, y)
    _assert_same_fit(in_ram, streamed)
    np.testing.assert_array_equal(streamed.predict(z), in_ram.predict(X))


def test_dask_array_streams_block_by_block():
    # A Dask array is a row source too: each chunk is computed when it is read.
    da = pytest.importorskip("dask.array")
    X, y = _data()
    Xd = da.from_array(X, chunks=(100, X.shape[1]))
    assert is_row_source(Xd)
    streamed = LargeMLPClassifier(**_PARAMS).fit(Xd, y)
    in_ram = LargeMLPClassifier(**_PARAMS).fit(X, y)
    _assert_same_fit(in_ram, streamed)
    pred = streamed.predict(Xd)
    assert isinstance(pred, np.ndarray)
    np.testing.assert_array_equal(pred, in_ram.predict(X))
