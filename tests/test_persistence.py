"""Safe model files: save/load round trips, refusal of bad files, no code on load."""

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._persist import (
    FORMAT_VERSION,
    ModelFileError,
    _digest,
    from_bytes,
    load,
    save,
    to_bytes,
)

SMALL = dict(hidden_layer_sizes=(5,), max_iter=3, device="cpu", random_state=0)


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _outputs(est, X):
    if isinstance(est, LargeMLPClassifier):
        return est.predict(X), est.predict_proba(X)
    return (est.predict(X),)


def _assert_same_outputs(a, b, X):
    for x, y in zip(_outputs(a, X), _outputs(b, X), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def _assert_same_params(a, b):
    assert a.keys() == b.keys()
    for key, value in b.items():
        if isinstance(value, np.random.RandomState):
            # Same generator state: the loaded model draws what the saved one would.
            assert a[key].randint(10**9) == value.randint(10**9)
        else:
            assert type(a[key]) is type(value) and a[key] == value, key


def _cases(iris, regression):
    X, y = iris
    Xr, yr = regression
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    multilabel = np.c_[y == 0, y == 1, y > 0].astype(int)
    return {
        "multiclass": (LargeMLPClassifier(**SMALL), X, y),
        "binary-bool": (LargeMLPClassifier(**SMALL), X, y > 0),
        "strings-float32-weights": (
            LargeMLPClassifier(**SMALL, class_weight={"setosa": 2.0}),
            X.astype(np.float32),
            labels,
        ),
        "multilabel": (LargeMLPClassifier(**SMALL), X, multilabel),
        "lbfgs-float64": (
            LargeMLPClassifier(**{**SMALL, "solver": "lbfgs"}),
            X,
            y,
        ),
        "regressor": (LargeMLPRegressor(**SMALL), Xr, yr),
        "multi-output-dropout": (
            LargeMLPRegressor(
                **{**SMALL, "dropout": 0.2, "hidden_layer_sizes": [4, 3]}
            ),
            Xr,
            np.c_[yr, -yr],
        ),
        "poisson-sgd-randomstate": (
            LargeMLPRegressor(
                loss="poisson",
                solver="sgd",
                **{**SMALL, "random_state": np.random.RandomState(3)},
            ),
            Xr,
            np.abs(yr),
        ),
    }


CASES = [
    "multiclass",
    "binary-bool",
    "strings-float32-weights",
    "multilabel",
    "lbfgs-float64",
    "regressor",
    "multi-output-dropout",
    "poisson-sgd-randomstate",
]


@pytest.mark.parametrize("case", CASES)
def test_loaded_model_predicts_identically(case, iris, regression, tmp_path):
    # A saved and loaded model is the same model: outputs bit for bit, dtypes,
    # parameters and every fitted attribute.
    est, X, y = _cases(iris, regression)[case]
    _fit(est, X, y)
    path = tmp_path / "model.safetensors"
    save(est, path)
    loaded = load(path)
    assert type(loaded) is type(est)
    _assert_same_outputs(est, loaded, X)
    _assert_same_params(loaded.get_params(), est.get_params())
    assert set(vars(loaded)) == set(vars(est))
    for name in ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_"):
        assert getattr(loaded, name) == getattr(est, name)
    assert loaded.loss_curve_ == est.loss_curve_
    assert (loaded.n_iter_, loaded.t_, loaded.loss_) == (est.n_iter_, est.t_, est.loss_)
    for a, b in zip(
        est.coefs_ + est.intercepts_, loaded.coefs_ + loaded.intercepts_, strict=True
    ):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    if isinstance(est, LargeMLPClassifier):
        assert loaded.classes_.dtype == est.classes_.dtype
        np.testing.assert_array_equal(loaded.classes_, est.classes_)


def test_feature_names_survive(iris, tmp_path):
    # Column names from a DataFrame are kept, and still checked at predict time.
    X, y = iris
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = _fit(LargeMLPClassifier(**SMALL), df, y)
    save(est, tmp_path / "m")
    loaded = load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.feature_names_in_, est.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(df), est.predict(df))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(df[["d", "c", "b", "a"]])


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_loaded_model_keeps_training_exactly(Est, iris, tmp_path):
    # Optimizer moments and RNG streams are saved: 3 partial_fit epochs, save,
    # load, 2 more equal 5 epochs without the round trip, bit for bit.
    X, y = iris
    kw = dict(SMALL, dropout=0.1)
    extra = {"classes": [0, 1, 2]} if Est is LargeMLPClassifier else {}
    straight, saved = Est(**kw), Est(**kw)
    for _ in range(3):
        straight.partial_fit(X, y, **extra)
        saved.partial_fit(X, y, **extra)
    save(saved, tmp_path / "m")
    resumed = load(tmp_path / "m")
    for _ in range(2):
        straight.partial_fit(X, y)
        resumed.partial_fit(X, y)
    for a, b in zip(straight.coefs_, resumed.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.t_ == straight.t_


def test_warm_start_after_load(iris, tmp_path):
    # warm_start=True after loading continues from the saved weights.
    X, y = iris
    est = _fit(LargeMLPClassifier(**{**SMALL, "warm_start": True}), X, y)
    save(est, tmp_path / "m")
    loaded = load(tmp_path / "m")
    _fit(est, X, y)
    _fit(loaded, X, y)
    np.testing.assert_array_equal(est.coefs_[0], loaded.coefs_[0])


def test_file_is_plain_safetensors_with_json(iris, tmp_path):
    # The documented layout: module.* weights, JSON metadata with format version
    # and library versions, readable by any safetensors reader.
    X, y = iris
    est = _fit(LargeMLPClassifier(**SMALL), X, y)
    save(est, tmp_path / "m.safetensors")
    with safetensors.safe_open(tmp_path / "m.safetensors", framework="pt") as f:
        meta = f.metadata()
        weight = f.get_tensor("module.0.weight")
    np.testing.assert_array_equal(weight.numpy().T, est.coefs_[0])
    assert meta["format"] == "sknn_large"
    assert meta["format_version"] == str(FORMAT_VERSION)
    payload = json.loads(meta["payload"])
    assert payload["estimator"] == "LargeMLPClassifier"
    assert {"sknn_large", "torch", "numpy", "scikit-learn"} <= set(payload["versions"])
    assert payload["params"]["activation"] == "relu"


def test_load_never_unpickles(iris, tmp_path, monkeypatch):
    # Loading a real model works with every unpickling entry point disabled.
    X, y = iris
    est = _fit(LargeMLPClassifier(**SMALL), X, y)
    save(est, tmp_path / "m")

    def refuse(*args, **kwargs):
        raise AssertionError("load unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(np, "load", refuse)
    np.testing.assert_array_equal(load(tmp_path / "m").predict(X), est.predict(X))


class _Payload:
    # Unpickling this object would create the marker file.
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    # A pickle (or torch.save) file posing as a model is refused; its code never runs.
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ModelFileError, match="Not a readable model file"):
        load(bad)
    torch.save({"x": _Payload(str(marker))}, bad)
    with pytest.raises(ModelFileError, match="Not a readable model file"):
        load(bad)
    assert not marker.exists()


@pytest.fixture(scope="module")
def model_bytes():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    est = _fit(LargeMLPClassifier(**{**SMALL, "hidden_layer_sizes": (3,)}), X, y)
    return to_bytes(est), X, est.predict_proba(X)


def test_truncated_file_is_refused(model_bytes, tmp_path):
    # Every cut of a real file (kept short: a sample of lengths) is refused cleanly.
    data = model_bytes[0]
    for n in sorted({0, 1, 7, 8, 9, 100, len(data) // 2, len(data) - 1}):
        with pytest.raises(ModelFileError):
            from_bytes(data[:n])


def test_wrong_file_types_are_refused(tmp_path):
    # Text, an empty file and a safetensors file of someone else's are refused.
    for content in (b"", b"hello world\n", b"\x00" * 64):
        with pytest.raises(ModelFileError, match="Not a readable model file"):
            from_bytes(content)
    other = safetensors.torch.save({"w": torch.zeros(2, 2)}, metadata={"a": "b"})
    with pytest.raises(ModelFileError, match="Not an sknn_large model file"):
        from_bytes(other)


def _rewrite(data, edit_metadata=None, edit_payload=None, edit_tensors=None, sign=True):
    """A re-signed copy of a model file with its parts edited (a deliberate forgery)."""
    tensors = safetensors.torch.load(data)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    metadata = header["__metadata__"]
    payload = json.loads(metadata["payload"])
    if edit_payload:
        edit_payload(payload)
    if edit_tensors:
        edit_tensors(tensors)
    metadata["payload"] = json.dumps(payload)
    if sign:
        metadata["sha256"] = _digest(metadata["payload"], tensors)
    if edit_metadata:
        edit_metadata(metadata)
    return safetensors.torch.save(tensors, metadata=metadata)


def test_newer_format_version_is_refused(model_bytes):
    # A file from a newer sknn_large says to upgrade, not fails obscurely.
    def newer(meta):
        meta["format_version"] = str(FORMAT_VERSION + 1)

    with pytest.raises(ModelFileError, match="newer.*upgrade sknn_large"):
        from_bytes(_rewrite(model_bytes[0], edit_metadata=newer))


def test_changed_weights_fail_the_digest(model_bytes):
    # Weights changed without a matching digest are found before anything is built.
    def nudge(tensors):
        tensors["module.0.weight"][0, 0] += 1e-3

    with pytest.raises(ModelFileError, match="SHA-256"):
        from_bytes(_rewrite(model_bytes[0], edit_tensors=nudge, sign=False))


def _set(path, value):
    def edit(payload):
        node = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


FORGERIES = {
    "unknown class": _set(("estimator",), "os.system"),
    "bad parameter": _set(("params", "activation"), "rm -rf"),
    "extra parameter": _set(("params", "evil"), 1),
    "method override": _set(("attributes", "predict_proba"), 1),
    "unknown tag": _set(("attributes", "n_iter_"), {"__reduce__": ["os.system"]}),
    "wrong outputs": _set(("attributes", "n_outputs_"), 7),
    "wrong layers": _set(("attributes", "n_layers_"), 9),
    "huge input": _set(("attributes", "n_features_in_"), 10**12),
    "bad dtype": _set(("attributes", "_output_dtype"), {"__numpy_dtype__": "<i8"}),
    "bad activation": _set(("attributes", "out_activation_"), "eval"),
    "classes vs outputs": _set(
        ("attributes", "classes_", "__ndarray__"), ["<i8", [2], [0, 1]]
    ),
    "bad counter": _set(("attributes", "_state", "__train_state__", "t"), "x"),
    "bad epoch order": _set(
        ("attributes", "_state", "__train_state__", "epoch_order"),
        {"__epoch_order__": {"__tuple__": [None, -1, 0, None]}},
    ),
}


def _replay_bomb(payload):
    # The file's own random state, asking for 10**15 epochs of redraws.
    node = payload["attributes"]["_state"]["__train_state__"]["epoch_order"]
    start = node["__epoch_order__"]["__tuple__"][0]
    node["__epoch_order__"]["__tuple__"] = [start, 10**15, 10, None]


FORGERIES["epoch order replay bomb"] = _replay_bomb


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_files_are_refused(forgery, model_bytes):
    # Even with a recomputed digest, contents that fit() could not have made are
    # refused with ModelFileError before a model is returned.
    with pytest.raises(ModelFileError):
        from_bytes(_rewrite(model_bytes[0], edit_payload=FORGERIES[forgery]))


def test_forged_tensor_shapes_are_refused(model_bytes):
    # A weight of the wrong shape or dtype, or an extra tensor, is refused.
    def transpose(t):
        t["module.0.weight"] = t["module.0.weight"].T.contiguous()

    def as_double(t):
        t["module.0.bias"] = t["module.0.bias"].double()

    def extra(t):
        t["state.999"] = torch.zeros(1)

    for edit in (transpose, as_double, extra):
        with pytest.raises(ModelFileError):
            from_bytes(_rewrite(model_bytes[0], edit_tensors=edit))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_flipped_and_cut_bytes_never_crash(data, model_bytes):
    # Property: any mix of flipped bytes and a cut either raises ModelFileError or
    # (bytes changed without changing meaning, e.g. JSON whitespace) loads the
    # very same model. Never another exception, never a different model.
    original, X, expected = model_bytes
    blob = bytearray(original)
    header_end = 8 + int.from_bytes(original[:8], "little")
    for _ in range(data.draw(st.integers(0, 3), label="flips")):
        # Half of the flips hit the header, where the structure lives.
        hi = data.draw(st.sampled_from([header_end, len(blob)]), label="region")
        i = data.draw(st.integers(0, hi - 1), label="index")
        blob[i] ^= data.draw(st.integers(1, 255), label="xor")
    if data.draw(st.booleans(), label="cut"):
        blob = blob[: data.draw(st.integers(0, len(blob)), label="length")]
    try:
        loaded = from_bytes(bytes(blob))
    except ModelFileError:
        return
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


def test_save_is_atomic(iris, tmp_path, monkeypatch):
    # A crash while writing leaves the previous file whole and no temporary behind.
    X, y = iris
    est = _fit(LargeMLPClassifier(**SMALL), X, y)
    path = tmp_path / "m"
    save(est, path)
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save(_fit(LargeMLPClassifier(**{**SMALL, "random_state": 1}), X, y), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m"]


def test_unfitted_and_foreign_estimators_are_not_saved(tmp_path, iris):
    # Only fitted sknn_large estimators are saved; subclasses are told to pickle.
    with pytest.raises(NotFittedError):
        save(LargeMLPClassifier(), tmp_path / "m")

    class Custom(LargeMLPClassifier):
        pass

    X, y = iris
    with pytest.raises(TypeError, match="pickle"):
        save(_fit(Custom(**SMALL), X, y), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_load_reports_missing_file_and_bad_device(tmp_path, model_bytes):
    # A missing path is the usual OSError; an absent accelerator a ValueError.
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")
    if not torch.cuda.is_available():
        (tmp_path / "m").write_bytes(model_bytes[0])
        with pytest.raises(ValueError, match="no CUDA"):
            load(tmp_path / "m", device="cuda")


def test_loaded_model_pickles_and_joblibs(iris, tmp_path):
    # A model read from a safe file is an ordinary estimator for pickle and joblib.
    X, y = iris
    est = _fit(LargeMLPClassifier(**SMALL), X, y)
    save(est, tmp_path / "m")
    loaded = load(tmp_path / "m")
    joblib.dump(loaded, tmp_path / "m.joblib")
    for other in (
        pickle.loads(pickle.dumps(loaded)),
        joblib.load(tmp_path / "m.joblib"),
    ):
        _assert_same_outputs(est, other, X)


_CPU_ONLY_CHECK = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np, torch
    assert not torch.cuda.is_available()
    from sknn_large._persist import load
    X = np.load(sys.argv[1])
    expected = np.load(sys.argv[2])
    for est in (load(sys.argv[3]), pickle.load(open(sys.argv[4], "rb"))):
        np.testing.assert_array_equal(est.predict_proba(X), expected)
    print("ok")
    """
)


@pytest.mark.cuda
def test_cuda_model_loads_on_cpu_only_machine(iris, tmp_path):
    # A model trained on a GPU, saved or pickled, predicts identically in a process
    # that sees no GPU at all.
    X, y = iris
    est = _fit(LargeMLPClassifier(**{**SMALL, "device": "cuda"}), X, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "p.npy", est.predict_proba(X))
    save(est, tmp_path / "m.safetensors")
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(est))
    paths = [tmp_path / n for n in ("X.npy", "p.npy", "m.safetensors", "m.pkl")]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, "-c", _CPU_ONLY_CHECK, *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.cuda
def test_load_onto_gpu(iris, tmp_path):
    # device='cuda' places a loaded model on the GPU; predictions match the CPU's.
    X, y = iris
    est = _fit(LargeMLPClassifier(**SMALL), X, y)
    save(est, tmp_path / "m")
    gpu = load(tmp_path / "m", device="cuda")
    assert next(gpu.module_.parameters()).is_cuda
    np.testing.assert_allclose(gpu.predict_proba(X), est.predict_proba(X), atol=1e-6)


@pytest.mark.cuda
def test_save_leaves_a_cuda_model_where_it_is(iris, tmp_path):
    # Saving reads the estimator's state (__sknn_state__); the network and the
    # training state it keeps stay on the GPU, the same objects as before.
    X, y = iris
    est = _fit(LargeMLPClassifier(**{**SMALL, "device": "cuda"}), X, y)
    module, state = est.module_, est._state
    save(est, tmp_path / "m")
    assert est.module_ is module and next(est.module_.parameters()).is_cuda
    assert est._state is state


def test_public_save_round_trips(tmp_path):
    # sknn_large.save(est, path) and sknn_large.load(path) are the public pair.
    from sklearn.datasets import load_iris

    import sknn_large

    X, y = load_iris(return_X_y=True)
    clf = sknn_large.LargeMLPClassifier(
        hidden_layer_sizes=(5,), max_iter=5, random_state=0
    )
    _fit(clf, X, y)
    sknn_large.save(clf, tmp_path / "m.sknn")
    np.testing.assert_array_equal(
        sknn_large.load(tmp_path / "m.sknn").predict_proba(X), clf.predict_proba(X)
    )


# ------------------------------------------------ safe by construction (issue 13)


def _traced_peak(fn):
    """(result or raised exception, peak bytes traced while running ``fn``)."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            result = fn()
        except Exception as exc:  # the caller checks which
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "dtype, values",
    [
        ("<U5000000", [0, 1, 2]),  # 20 MB per element asked by a 15 KB file
        ("<U536870911", ["a", "b", "c"]),  # 2 GiB per element
        ("<U0", ["a", "b", "c"]),
        ("<f16", [0, 1, 2]),
        ("<c16", [0, 1, 2]),
        ("V8", [0, 1, 2]),
        ("(2,)i8", [0, 1, 2]),
    ],
)
def test_crafted_array_dtype_cannot_allocate(dtype, values, model_bytes):
    # A re-signed file whose array asks for far more memory than its size (a
    # '<U5000000' dtype) or for an exotic dtype is refused before allocating.
    forged = _rewrite(
        model_bytes[0],
        edit_payload=_set(
            ("attributes", "classes_", "__ndarray__"), [dtype, [3], values]
        ),
    )
    result, peak = _traced_peak(lambda: from_bytes(forged))
    assert isinstance(result, ModelFileError), result
    assert peak < 20 * len(forged) + 2**20


def test_crafted_label_encoder_array_cannot_allocate(model_bytes):
    # The same bound holds for arrays nested inside other objects.
    path = ("attributes", "_label_binarizer", "__label_binarizer__", "classes_")
    forged = _rewrite(
        model_bytes[0],
        edit_payload=_set(path, {"__ndarray__": ["<U50000000", [3], [0, 1, 2]]}),
    )
    result, peak = _traced_peak(lambda: from_bytes(forged))
    assert isinstance(result, ModelFileError), result
    assert peak < 20 * len(forged) + 2**20


def test_attributes_outside_the_schema_are_refused(model_bytes):
    # Which attributes exist, and of what type, is decided by the estimator's
    # schema: an extra attribute, or a known one of the wrong form, is refused.
    for edit in (
        _set(("attributes", "extra_"), 1),
        _set(("attributes", "_private"), {"__ndarray__": ["<i8", [1], [1]]}),
        _set(("attributes", "n_iter_"), {"__ndarray__": ["<i8", [1], [1]]}),
        _set(("attributes", "classes_"), [0, 1, 2]),
        _set(("attributes", "loss"), "squared_error"),
        _set(("params", "alpha"), {"__tensor__": "state.0"}),
    ):
        with pytest.raises(ModelFileError):
            from_bytes(_rewrite(model_bytes[0], edit_payload=edit))


def test_header_is_checked_before_the_body_is_read(model_bytes, tmp_path):
    # A file whose header announces a newer format, or tensors larger than the
    # file, is refused after reading the header alone: a sparse 256 MB file is
    # never read into memory.
    data = model_bytes[0]
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"]["format_version"] = str(FORMAT_VERSION + 1)
    raw = json.dumps(header).encode()
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(256 * 2**20)
    result, peak = _traced_peak(lambda: load(path))
    assert isinstance(result, ModelFileError) and "newer" in str(result), result
    assert peak < 16 * 2**20


def test_fifo_is_refused_without_blocking(tmp_path):
    # A FIFO would block a reader for ever: load refuses it at once.
    import threading

    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome = []

    def attempt():
        try:
            load(fifo)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # unblock the reader so the test run can go on
        with open(fifo, "wb"):
            pass
        thread.join(timeout=10)
        pytest.fail("load blocked on a FIFO")
    assert isinstance(outcome[0], ModelFileError), outcome
    assert "regular file" in str(outcome[0])


_DEVICE_FILE = textwrap.dedent(
    """
    import resource, sys
    from sknn_large import ModelFileError, load
    # Were /dev/zero read to its end, this limit would stop it with MemoryError.
    resource.setrlimit(resource.RLIMIT_AS, (2**33, 2**33))
    try:
        load("/dev/zero")
    except ModelFileError as exc:
        print("refused:", exc)
    """
)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_files_are_refused():
    # /dev/zero has no end: load refuses it instead of reading without bound.
    out = subprocess.run(
        [sys.executable, "-c", _DEVICE_FILE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused:" in out.stdout and "regular file" in out.stdout


def test_loaded_model_keeps_no_write_path(iris, tmp_path):
    # A model file never chooses where its model writes: the checkpoint path of
    # the machine that saved it is not written, and one in a crafted file is
    # not restored, so refitting a downloaded model creates no files.
    X, y = iris
    est = _fit(LargeMLPClassifier(**SMALL, checkpoint=tmp_path / "mine.ckpt"), X, y)
    data = to_bytes(est)
    n = int.from_bytes(data[:8], "little")
    payload = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["payload"])
    assert payload["params"]["checkpoint"] is None
    target = tmp_path / "chosen" / "by" / "the file.ckpt"
    forged = _rewrite(data, edit_payload=_set(("params", "checkpoint"), str(target)))
    loaded = from_bytes(forged)
    assert loaded.checkpoint is None
    _fit(loaded, X, y)
    assert not (tmp_path / "chosen").exists()


@pytest.mark.parametrize("where", ["params", "attributes"])
@pytest.mark.parametrize("device", ["meta", "xla", "cpu:0:1", "cuda:99999999"])
def test_file_cannot_set_an_unknown_device(where, device, model_bytes):
    # device / device_ in a file are held to the same kinds as the parameter:
    # a 'meta' device (or garbage) is refused at load, not failed on later.
    key = "device" if where == "params" else "device_"
    forged = _rewrite(
        model_bytes[0], edit_payload=_set((where, key), {"__device__": device})
    )
    with pytest.raises(ModelFileError):
        from_bytes(forged)
