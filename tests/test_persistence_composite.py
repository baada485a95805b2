"""Model files of composites: ensembles and tabular models saved and loaded safely."""

import functools
import json
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import safetensors
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

import sknn_large
from sknn_large import (
    LargeMLPClassifier,
    LargeMLPRegressor,
    ModelFileError,
    TabularMLPClassifier,
    TabularMLPRegressor,
)
from sknn_large._persist import FORMAT_VERSION, _digest, from_bytes, load, to_bytes
from sknn_large.ensemble import LargeMLPEnsembleClassifier, LargeMLPEnsembleRegressor

SMALL = dict(
    n_estimators=2, hidden_layer_sizes=(6,), max_iter=3, device="cpu", random_state=0
)


def _table(n=160, seed=0):
    """Every column kind a table brings: numbers with NaN, categories with NaN,
    text with None, booleans, integers."""
    rng = np.random.RandomState(seed)
    num = rng.normal(size=n)
    num[rng.rand(n) < 0.1] = np.nan
    cat = rng.choice(["x", "y", "z"], n).astype(object)
    cat[rng.rand(n) < 0.1] = None
    text = rng.choice(["red", "green", "blue", "grey"], n).astype(object)
    text[rng.rand(n) < 0.2] = None
    return pd.DataFrame(
        {
            "num": num,
            "count": rng.randint(0, 50, n),
            "cat": pd.Categorical(cat, categories=["z", "y", "x"]),
            "text": text,
            "flag": rng.rand(n) < 0.4,
        }
    )


def _labels(n, seed=1):
    return np.random.RandomState(seed).choice(["cat", "dog", "emu"], n)


def _targets(n, outputs=1, seed=2):
    y = np.random.RandomState(seed).normal(size=(n, outputs)) * [10.0, 0.1][:outputs]
    return y[:, 0] + 5 if outputs == 1 else y


def _object_array(n=160):
    # A plain object array, no column names; the categories given by index.
    X = _table(n).to_numpy(dtype=object)
    return X[:, [0, 3, 4]]


_CASES = {
    "ensemble-classifier-strings": lambda: (
        LargeMLPEnsembleClassifier(**SMALL),
        pd.DataFrame(
            np.random.RandomState(0).normal(size=(120, 4)), columns=list("abcd")
        ),
        _labels(120),
    ),
    "ensemble-classifier-multilabel": lambda: (
        LargeMLPEnsembleClassifier(**{**SMALL, "n_estimators": 3}),
        np.random.RandomState(0).normal(size=(120, 3)),
        (np.random.RandomState(3).rand(120, 3) < 0.5).astype(int),
    ),
    "ensemble-regressor-multi-output": lambda: (
        LargeMLPEnsembleRegressor(**{**SMALL, "solver": "sgd", "dropout": 0.1}),
        np.random.RandomState(0).normal(size=(120, 3)).astype(np.float32),
        _targets(120, outputs=2),
    ),
    "tabular-classifier-robust": lambda: (
        TabularMLPClassifier(**SMALL),
        _table(),
        _labels(160),
    ),
    "tabular-classifier-quantile-codes": lambda: (
        # Few one-hot columns: the text column becomes an embedding code.
        TabularMLPClassifier(
            **SMALL, numeric_transform="quantile", max_onehot_categories=3
        ),
        _table(),
        _labels(160) == "cat",
    ),
    "tabular-regressor-quantile-multi-output": lambda: (
        TabularMLPRegressor(**SMALL, numeric_transform="quantile", clip=None),
        _table(),
        _targets(160, outputs=2),
    ),
    "tabular-regressor-object-array": lambda: (
        TabularMLPRegressor(
            **{**SMALL, "random_state": np.random.RandomState(5)},
            categorical_features=[1, 2],
        ),
        _object_array(),
        _targets(160),
    ),
}
CASES = sorted(_CASES)


@functools.cache
def _fitted(case):
    est, X, y = _CASES[case]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est, X


def _outputs(est, X):
    if hasattr(est, "predict_proba"):
        return est.predict(X), est.predict_proba(X)
    return (est.predict(X),)


def _assert_same_outputs(a, b, X):
    for x, y in zip(_outputs(a, X), _outputs(b, X), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def _same(a, b) -> bool:
    """Equal values of equal types (NaN equal to NaN), arrays and lists
    element by element."""
    if isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and a.dtype == b.dtype):
            return False
        if b.dtype.kind == "O":
            return a.shape == b.shape and _same(a.tolist(), b.tolist())
        return bool(np.array_equal(a, b, equal_nan=b.dtype.kind == "f"))
    if isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(b, np.random.RandomState):
        # The same generator state: the loaded model draws what the saved one would.
        return _same(a.get_state(legacy=True), b.get_state(legacy=True))
    if isinstance(b, float) and b != b:
        return isinstance(a, float) and a != a
    return type(a) is type(b) and a == b


def _assert_same_params(a, b):
    pa, pb = a.get_params(), b.get_params()
    assert pa.keys() == pb.keys()
    for key in pb:
        assert _same(pa[key], pb[key]), key


def _assert_same_fitted(a, b, attributes):
    for name in attributes:
        assert _same(getattr(a, name), getattr(b, name)), name


def _payload(data):
    n = int.from_bytes(data[:8], "little")
    return json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["payload"])


def _forge(data, edit_payload=None, edit_tensors=None):
    """A re-signed copy of a model file with its parts edited (a deliberate forgery)."""
    tensors = safetensors.torch.load(data)
    n = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + n])["__metadata__"]
    payload = json.loads(metadata["payload"])
    if edit_payload:
        edit_payload(payload)
    if edit_tensors:
        edit_tensors(tensors)
    metadata["payload"] = json.dumps(payload)
    metadata["sha256"] = _digest(metadata["payload"], tensors)
    return safetensors.torch.save(tensors, metadata=metadata)


def _at(payload, *path):
    node = payload
    for key in path:
        node = node[key]
    return node


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("case", CASES)
def test_loaded_composite_predicts_identically(case, tmp_path):
    # A saved and loaded composite is the same model: outputs bit for bit and
    # their dtypes, parameters, and the fitted attributes of every part.
    est, X = _fitted(case)
    sknn_large.save(est, tmp_path / "model.safetensors")
    loaded = sknn_large.load(tmp_path / "model.safetensors")
    assert type(loaded) is type(est)
    _assert_same_outputs(est, loaded, X)
    _assert_same_params(loaded, est)
    assert set(vars(loaded)) == set(vars(est))
    ensemble, saved = (
        (loaded.ensemble_, est.ensemble_)
        if hasattr(est, "ensemble_")
        else (loaded, est)
    )
    fitted = (
        "n_iter_",
        "n_features_in_",
        "feature_names_in_",
        "classes_",
        "multilabel_",
        "target_mean_",
        "target_scale_",
    )
    _assert_same_fitted(loaded, est, [n for n in fitted if hasattr(est, n)])
    assert len(ensemble.estimators_) == len(saved.estimators_)
    for a, b in zip(ensemble.estimators_, saved.estimators_, strict=True):
        assert type(a) is type(b)
        _assert_same_params(a, b)
        _assert_same_fitted(a, b, ["coefs_", "intercepts_", "loss_curve_", "n_iter_"])
    if hasattr(est, "classes_"):
        # One classes_ object, shared with the ensemble, as after fit.
        assert loaded.classes_ is ensemble.estimators_[0].classes_
    if hasattr(est, "preprocessor_"):
        pre, ref = loaded.preprocessor_, est.preprocessor_
        assert set(vars(pre)) == set(vars(ref))
        _assert_same_params(pre, ref)
        names = [n for n in vars(ref) if n.endswith("_") or n.startswith("_")]
        _assert_same_fitted(
            pre, ref, [n for n in names if n != "quantile_transformer_"]
        )
        if ref.quantile_transformer_ is not None:
            qt = pre.quantile_transformer_
            assert set(vars(qt)) == set(vars(ref.quantile_transformer_))
            _assert_same_fitted(
                qt, ref.quantile_transformer_, ["quantiles_", "references_"]
            )


def test_unseen_rows_predict_identically_after_loading(tmp_path):
    # Unknown categories, missing values where none were seen, new extremes:
    # the loaded preprocessing treats them exactly as the saved one.
    est, X = _fitted("tabular-classifier-quantile-codes")
    new = _table(40, seed=9)
    new["cat"] = pd.Categorical(["w", None] * 20)
    new.loc[::3, "text"] = "purple"
    new.loc[::4, "count"] = 10**6
    save_path = tmp_path / "m"
    sknn_large.save(est, save_path)
    _assert_same_outputs(est, load(save_path), new)


def test_numpy_scalars_in_categories_load_as_their_values(tmp_path):
    # An object column may hold numpy scalars: stored as the Python values they
    # equal, so the file loads and predicts as the model did.
    X = _table(120)
    X["code"] = pd.Series([np.int64(i % 3) for i in range(120)], dtype=object)
    X["text"] = X["text"].map(lambda v: v if v is None else np.str_(v))
    est = TabularMLPClassifier(**SMALL).fit(X, _labels(120))
    known = est.preprocessor_.categories_
    assert any(isinstance(v, np.generic) for cats in known for v in cats)
    data = to_bytes(est)
    _assert_same_outputs(est, from_bytes(data), X)


def test_values_without_a_json_form_are_not_saved(tmp_path):
    # A category no JSON form holds (a timestamp) is a TypeError at save time,
    # and no file is written.
    X = _table(60)
    X["when"] = pd.Series(pd.date_range("2020", periods=60), dtype=object)
    est = TabularMLPRegressor(**SMALL).fit(X, _targets(60))
    with pytest.raises(TypeError, match="cannot hold a Timestamp"):
        sknn_large.save(est, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unfitted_composites_are_not_saved(tmp_path):
    # As for the networks: only fitted models are written.
    for est in (TabularMLPClassifier(), LargeMLPEnsembleRegressor()):
        with pytest.raises(NotFittedError):
            sknn_large.save(est, tmp_path / "m")


def test_loaded_ensemble_members_keep_training_exactly(tmp_path):
    # Each member keeps its optimizer moments and generators: partial_fit on a
    # loaded member equals partial_fit on the saved one, bit for bit.
    est, X = _fitted("ensemble-regressor-multi-output")
    loaded = from_bytes(to_bytes(est))
    y = _targets(len(X), outputs=2)
    straight = pickle.loads(pickle.dumps(est.estimators_[1]))
    straight.partial_fit(X, y)
    loaded.estimators_[1].partial_fit(X, y)
    for a, b in zip(straight.coefs_, loaded.estimators_[1].coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_loaded_composite_pickles_and_refits(tmp_path):
    # A loaded model is an ordinary estimator: it pickles and fits again.
    est, X = _fitted("tabular-regressor-quantile-multi-output")
    loaded = from_bytes(to_bytes(est))
    _assert_same_outputs(est, pickle.loads(pickle.dumps(loaded)), X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.fit(X, _targets(len(X), outputs=2))
    _assert_same_outputs(est, loaded, X)  # same seed, same data: same model


# ------------------------------------------------------------------ the format


def test_composite_file_layout():
    # Members are records of their own under "members"; their tensors carry
    # the attribute (and index) as a prefix; the file is plain safetensors.
    est, _ = _fitted("tabular-classifier-quantile-codes")
    data = to_bytes(est)
    payload = _payload(data)
    assert payload["estimator"] == "TabularMLPClassifier"
    assert set(payload["members"]) == {"preprocessor_", "ensemble_"}
    ensemble = payload["members"]["ensemble_"]
    assert ensemble["estimator"] == "LargeMLPEnsembleClassifier"
    members = ensemble["members"]["estimators_"]
    assert [m["estimator"] for m in members] == ["LargeMLPClassifier"] * 2
    pre = payload["members"]["preprocessor_"]
    assert pre["members"]["quantile_transformer_"]["estimator"] == "QuantileTransformer"
    assert pre["attributes"]["categories_"][0]["__ndarray__"][0] == "|O"
    tensors = safetensors.torch.load(data)
    weight = tensors["ensemble_.estimators_.1.module.0.weight"]
    np.testing.assert_array_equal(
        weight.numpy().T, est.ensemble_.estimators_[1].coefs_[0]
    )
    quantiles = tensors["preprocessor_.quantile_transformer_.state.0"]
    np.testing.assert_array_equal(
        quantiles.numpy(), est.preprocessor_.quantile_transformer_.quantiles_
    )
    assert all(t.device.type == "cpu" for t in tensors.values())
    # A network's own file is as it was: no members, tensors without prefixes.
    member = est.ensemble_.estimators_[0]
    assert "members" not in _payload(to_bytes(member))
    assert all(
        k.startswith(("module.", "state."))
        for k in safetensors.torch.load(to_bytes(member))
    )
    n = int.from_bytes(data[:8], "little")
    assert json.loads(data[8 : 8 + n])["__metadata__"]["format_version"] == str(
        FORMAT_VERSION
    )


def test_version_1_network_files_still_load():
    # Files of a network written before composites existed (format version 1,
    # the same payload) load as before.
    X = np.random.RandomState(0).normal(size=(60, 3))
    est = LargeMLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, X.sum(axis=1))
    data = to_bytes(est)
    tensors = safetensors.torch.load(data)
    n = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + n])["__metadata__"]
    metadata["format_version"] = "1"
    old = safetensors.torch.save(tensors, metadata=metadata)
    np.testing.assert_array_equal(from_bytes(old).predict(X), est.predict(X))


def test_load_never_unpickles(tmp_path, monkeypatch):
    # Loading a composite works with every unpickling entry point disabled.
    est, X = _fitted("tabular-classifier-quantile-codes")
    sknn_large.save(est, tmp_path / "m")

    def refuse(*args, **kwargs):
        raise AssertionError("load unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(np, "load", refuse)
    _assert_same_outputs(est, load(tmp_path / "m"), X)


# ------------------------------------------------------------- hostile files


def _set(*path, value):
    def edit(payload):
        _at(payload, *path[:-1])[path[-1]] = value

    return edit


def _drop_member(payload):
    payload["members"]["ensemble_"]["members"]["estimators_"].pop()


def _swap_category(payload):
    cats = payload["members"]["preprocessor_"]["attributes"]["categories_"]
    cats[0]["__ndarray__"][2][0] = "q"  # no longer the _known category


_PRE = ("members", "preprocessor_", "attributes")
_ENS = ("members", "ensemble_")
_MEMBER = (*_ENS, "members", "estimators_", 0)
_QT = ("members", "preprocessor_", "members", "quantile_transformer_")
FORGERIES = {
    "fewer members": _drop_member,
    "more members wanted": _set(*_ENS, "params", "n_estimators", value=3),
    "members not a list": _set(*_ENS, "members", "estimators_", value={}),
    "unknown member class": _set(*_MEMBER, "estimator", value="os.system"),
    "member of another class": _set(*_MEMBER, "estimator", value="LargeMLPRegressor"),
    "member with other params": _set(*_MEMBER, "params", "alpha", value=0.5),
    "ensemble with other params": _set(*_ENS, "params", "max_iter", value=7),
    "missing preprocessor": _set("members", "preprocessor_", value=None),
    "missing quantile map": _set(*_QT, value=None),
    "extra slot": _set("members", "extra_", value=None),
    "members on a network": _set(*_MEMBER, "members", value={}),
    "category as text dtype": _set(
        *_PRE, "categories_", 1, "__ndarray__", value=["<U5", [1], ["green"]]
    ),
    "category as number dtype": _set(
        *_PRE, "_known", 0, "__ndarray__", value=["<f8", [2], [1.0, 2.0]]
    ),
    "category swapped": _swap_category,
    "duplicate category": _set(
        *_PRE, "_known", 0, "__ndarray__", value=["|O", [2], ["x", "x"]]
    ),
    "category tuple": _set(
        *_PRE, "_known", 0, "__ndarray__", value=["|O", [1], [{"__tuple__": [1]}]]
    ),
    "missing flag": _set(*_PRE, "_has_missing", 0, value=False),
    "bin edges not increasing": _set(
        *_PRE, "bin_edges_", 0, value={"__ndarray__": ["<f8", [3], [0.0, 2.0, 1.0]]}
    ),
    "bin edges of no column": _set(*_PRE, "bin_edges_", value=[]),
    "short centre": _set(*_PRE, "center_", "__ndarray__", value=["<f8", [1], [0.0]]),
    "quantile shape": _set(
        *_QT, "attributes", "quantiles_", "__ndarray__", 1, value=[3, 4]
    ),
    "quantile dtype": _set(
        *_QT, "attributes", "quantiles_", "__ndarray__", 0, value="<f4"
    ),
    "quantile as JSON": _set(
        *_QT, "attributes", "quantiles_", value={"__ndarray__": ["<f8", [1], [0.0]]}
    ),
    "references": _set(
        *_QT, "attributes", "references_", "__ndarray__", 2, 0, value=0.5
    ),
    "indices": _set(*_PRE, "numeric_features_", "__ndarray__", 2, 0, value=3),
    "classes": _set(
        "attributes", "classes_", "__ndarray__", value=["<U3", [2], ["cat", "emu"]]
    ),
    "iterations": _set("attributes", "n_iter_", value=99),
    "attribute outside the schema": _set(*_PRE, "__class__", value="os"),
    # Member 1 reaching member 0's generator state by its name in the ensemble.
    "reference to another member's tensor": _set(
        *_ENS,
        "members",
        "estimators_",
        1,
        "attributes",
        "_state",
        "__train_state__",
        "generator",
        "__generator__",
        value={"__tensor__": "estimators_.0.state.0"},
    ),
    "tensor in params": _set(*_ENS, "params", "alpha", value={"__tensor__": "state.0"}),
}


@functools.cache
def _victim():
    return to_bytes(_fitted("tabular-classifier-quantile-codes")[0])


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_composites_are_refused(forgery):
    # Even with a recomputed digest, contents fit could not have made (member
    # counts, classes, parameters, categories, shapes) are refused with
    # ModelFileError before a model is returned.
    with pytest.raises(ModelFileError):
        from_bytes(_forge(_victim(), edit_payload=FORGERIES[forgery]))


def test_member_count_error_says_what_is_wrong():
    # The message names the slot and both counts.
    with pytest.raises(ModelFileError, match="holds 1 estimators_ .* make 2"):
        from_bytes(_forge(_victim(), edit_payload=_drop_member))


def test_forged_member_tensors_are_refused():
    # A member's weight of the wrong shape, a stray tensor under a member's
    # prefix or a record's own prefix, a missing weight: all refused.
    name = "ensemble_.estimators_.1.module.2.weight"

    def transpose(t):
        t[name] = t[name].T.contiguous()

    def stray_member(t):
        t["ensemble_.estimators_.2.module.0.weight"] = torch.zeros(1)

    def member_stray_state(t):
        t["ensemble_.estimators_.0.state.99"] = torch.zeros(1)

    def stray_own(t):
        t["preprocessor_.module.0.weight"] = torch.zeros(1)

    def missing(t):
        del t[name]

    for edit in (transpose, stray_member, member_stray_state, stray_own, missing):
        with pytest.raises(ModelFileError):
            from_bytes(_forge(_victim(), edit_tensors=edit))
    with pytest.raises(ModelFileError, match="ensemble_.estimators_.2.module"):
        from_bytes(_forge(_victim(), edit_tensors=stray_member))


def test_truncated_composite_is_refused():
    # Every cut of a composite file (a sample of lengths) is refused cleanly.
    data = _victim()
    for n in sorted({0, 8, 100, len(data) // 3, len(data) // 2, len(data) - 1}):
        with pytest.raises(ModelFileError):
            from_bytes(data[:n])


def _traced_peak(fn):
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
    "path, value",
    [
        # A category array asking for 2 GiB per element.
        ((*_PRE, "categories_", 0), {"__ndarray__": ["<U536870911", [1], ["x"]]}),
        # A label array of a member, deep inside the file.
        (
            (*_MEMBER, "attributes", "classes_"),
            {"__ndarray__": ["<U50000000", [2], [0, 1]]},
        ),
        # An ensemble claiming a million members.
        ((*_ENS, "params", "n_estimators"), 10**6),
    ],
)
def test_oversized_requests_are_refused_within_budget(path, value):
    # A forged request for memory is refused before it is allocated, wherever
    # in the tree of members it sits; loading stays a small multiple of the size.
    forged = _forge(_victim(), edit_payload=_set(*path, value=value))
    result, peak = _traced_peak(lambda: from_bytes(forged))
    assert isinstance(result, ModelFileError), result
    assert peak < 20 * len(forged) + 2**20


def test_loading_a_composite_takes_memory_in_proportion():
    # A legitimate composite file loads within a small multiple of its size.
    data = _victim()
    from_bytes(data)  # caches filled outside the measurement
    result, peak = _traced_peak(lambda: from_bytes(data))
    assert isinstance(result, TabularMLPClassifier), result
    assert peak < 8 * len(data)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_HOSTILE = st.recursive(
    _SCALARS
    | st.builds(
        lambda d, n, v: {"__ndarray__": [d, n, v]},
        st.sampled_from(["|O", "<U3", "<f8", "<i8", "|b1", "<U536870911"]),
        st.lists(st.integers(-1, 10**9), max_size=2),
        st.lists(_SCALARS, max_size=3) | st.just({"__tensor__": "state.0"}),
    )
    | st.builds(lambda v: {"__tensor__": v}, st.sampled_from(["state.0", "x"]))
    | st.just({"__reduce__": ["os.system", "echo pwned"]}),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=5,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
        yield (*prefix, "__new__")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_forged_value_ends_in_our_error(data):
    # Property: any value of a composite's payload replaced by hostile JSON
    # (digest recomputed) ends in ModelFileError or in a model that predicts;
    # never another exception.
    original = _victim()
    paths = [p for p in _paths(_payload(original)) if p and p[0] != "versions"]
    path = data.draw(st.sampled_from(paths), label="path")
    value = data.draw(_HOSTILE, label="value")
    forged = _forge(original, edit_payload=_set(*path, value=value))
    try:
        loaded = from_bytes(forged)
    except ModelFileError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.predict(_fitted("tabular-classifier-quantile-codes")[1].head(5))


def test_unknown_fitted_attributes_are_not_saved(tmp_path):
    # A fitted attribute the file format does not know (say, one added to the
    # preprocessor later) would be lost on the way: save refuses, not loses it.
    est, _ = _fitted("tabular-classifier-robust")
    odd = pickle.loads(pickle.dumps(est))
    odd.preprocessor_.new_statistic_ = np.zeros(3)
    with pytest.raises(TypeError, match="new_statistic_.*TabularPreprocessor"):
        sknn_large.save(odd, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_foreign_members_are_not_saved(tmp_path):
    # A member swapped by hand for another class, or an unfitted one, has no
    # place in a file.
    est, _ = _fitted("ensemble-classifier-strings")
    odd = pickle.loads(pickle.dumps(est))
    odd.estimators_[1] = LargeMLPRegressor()
    with pytest.raises(TypeError, match="estimators_ holds a LargeMLPRegressor"):
        sknn_large.save(odd, tmp_path / "m")
    odd.estimators_[1] = LargeMLPClassifier()
    with pytest.raises(NotFittedError):
        sknn_large.save(odd, tmp_path / "m")
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------- GPU

_CPU_ONLY_CHECK = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np, torch
    assert not torch.cuda.is_available()
    from sknn_large import load
    X = pickle.load(open(sys.argv[1], "rb"))
    np.save(sys.argv[3], load(sys.argv[2]).predict_proba(X))
    print("ok")
    """
)


@pytest.mark.cuda
def test_gpu_composite_loads_on_a_cpu_only_machine(tmp_path):
    # A tabular model trained on a GPU is saved with its weights on the CPU: a
    # process without a GPU loads it, and predicts as a CPU load does here.
    X = _table()
    est = TabularMLPClassifier(**{**SMALL, "device": "cuda"}).fit(X, _labels(len(X)))
    sknn_large.save(est, tmp_path / "m.safetensors")
    assert next(est.ensemble_.estimators_[0].module_.parameters()).is_cuda
    (tmp_path / "X.pkl").write_bytes(pickle.dumps(X))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _CPU_ONLY_CHECK,
            str(tmp_path / "X.pkl"),
            str(tmp_path / "m.safetensors"),
            str(tmp_path / "p.npy"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    on_cpu = load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), on_cpu.predict_proba(X))
    np.testing.assert_allclose(on_cpu.predict_proba(X), est.predict_proba(X), atol=1e-5)
    on_gpu = load(tmp_path / "m.safetensors", device="cuda")
    assert all(
        next(m.module_.parameters()).is_cuda for m in on_gpu.ensemble_.estimators_
    )
    np.testing.assert_allclose(on_gpu.predict_proba(X), est.predict_proba(X), atol=1e-6)
