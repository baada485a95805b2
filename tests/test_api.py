"""The drop-in promise: parameters, defaults and fitted attributes match sklearn's."""

import inspect

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_multilabel_classification, make_regression
from sklearn.neural_network import MLPClassifier, MLPRegressor

from sknn_large import LargeMLPClassifier, LargeMLPRegressor

PAIRS = [(LargeMLPClassifier, MLPClassifier), (LargeMLPRegressor, MLPRegressor)]
EXTRA = {"penalty": "l2", "l1_ratio": 0.15, "dropout": 0.0, "device": "auto"}


@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_signature_matches_sklearn(ours, theirs):
    # Swapping the import must keep every sklearn parameter, in order, with its default.
    ours_params = list(inspect.signature(ours).parameters.values())
    theirs_params = list(inspect.signature(theirs).parameters.values())
    assert [p.name for p in ours_params[: len(theirs_params)]] == [
        p.name for p in theirs_params
    ]
    for a, b in zip(ours_params, theirs_params, strict=False):
        assert a.kind == b.kind, a.name
        assert a.default == b.default, a.name


@pytest.mark.parametrize("ours", [LargeMLPClassifier, LargeMLPRegressor])
def test_extra_parameters_and_defaults(ours):
    # Parameters beyond sklearn have the documented defaults and are keyword-only.
    params = inspect.signature(ours).parameters
    for name, default in {**EXTRA, "precision": "auto"}.items():
        assert params[name].default == default
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    if ours is LargeMLPClassifier:
        assert params["class_weight"].default is None


@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_fitted_attributes_match_sklearn(ours, theirs, iris):
    # Every fitted attribute sklearn exposes exists with the same type and shapes.
    X, y = iris
    kw = dict(hidden_layer_sizes=(7, 5), max_iter=5, random_state=0)
    a = ours(**kw, device="cpu").fit(X, y)
    b = theirs(**kw).fit(X, y)
    for name in [
        "n_features_in_",
        "loss_",
        "best_loss_",
        "loss_curve_",
        "validation_scores_",
        "best_validation_score_",
        "t_",
        "n_iter_",
        "n_layers_",
        "n_outputs_",
        "out_activation_",
    ]:
        assert type(getattr(a, name)) is type(getattr(b, name)) or isinstance(
            getattr(a, name), float
        ), name
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_ and a.n_layers_ == b.n_layers_
    assert a.out_activation_ == b.out_activation_
    assert len(a.loss_curve_) == len(b.loss_curve_)
    assert [c.shape for c in a.coefs_] == [c.shape for c in b.coefs_]
    assert [c.shape for c in a.intercepts_] == [c.shape for c in b.intercepts_]
    assert all(isinstance(c, np.ndarray) for c in a.coefs_ + a.intercepts_)
    assert isinstance(a.module_, torch.nn.Module)
    assert a.device_ == torch.device("cpu")
    if ours is LargeMLPClassifier:
        np.testing.assert_array_equal(a.classes_, b.classes_)


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_initial_weights_equal_sklearn(Est, iris):
    # The same random_state gives sklearn's starting network. One SGD epoch with
    # a negligible learning rate leaves both networks at their initial weights.
    X, y = iris
    theirs = MLPClassifier if Est is LargeMLPClassifier else MLPRegressor
    kw = dict(
        hidden_layer_sizes=(4, 3),
        solver="sgd",
        learning_rate_init=1e-12,
        momentum=0.0,
        max_iter=1,
        random_state=3,
    )
    a = Est(**kw, precision="float64").fit(X, y)
    b = theirs(**kw).fit(X, y)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(ca, cb, rtol=0, atol=1e-9)


def test_coefs_follow_module(iris):
    # coefs_/intercepts_ are module_'s weights in sklearn's (fan_in, fan_out) layout.
    X, y = iris
    clf = LargeMLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0)
    clf.fit(X, y)
    linear = [m for m in clf.module_ if isinstance(m, torch.nn.Linear)]
    for layer, coef, intercept in zip(linear, clf.coefs_, clf.intercepts_, strict=True):
        np.testing.assert_allclose(layer.weight.detach().numpy().T, coef, rtol=1e-6)
        np.testing.assert_allclose(layer.bias.detach().numpy(), intercept, rtol=1e-6)


def test_string_labels_and_dataframe(iris):
    # String labels and pandas input (with feature names) work end to end.
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200, random_state=0
    )
    clf.fit(df, names)
    assert list(clf.feature_names_in_) == ["a", "b", "c", "d"]
    assert set(clf.predict(df)) <= set(names)
    assert clf.score(df, names) > 0.8


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["b", "a", "c", "a", "b"]),  # multiclass, unicode
        np.array(["no", "yes", "yes", "no", "no"], dtype=object),  # binary
        np.array(["only"] * 5, dtype=object),  # a single class
        np.array([3, 10, 7, 7, 3]),  # multiclass integers with gaps
        np.array([1, 0, 0, 1, 1], dtype=np.uint8),  # binary, unsigned
        np.array([-2, -2, -2]),  # a single integer class
    ],
)
def test_labels_binarize_as_label_binarizer_does(labels):
    # String and integer labels are encoded with one sort; the classes, target
    # kind and training matrix must be LabelBinarizer's own.
    from sklearn.preprocessing import LabelBinarizer

    from sknn_large._labels import binarize_labels

    binarizer, Y = binarize_labels(labels)
    reference = LabelBinarizer().fit(labels)
    np.testing.assert_array_equal(binarizer.classes_, reference.classes_)
    assert binarizer.classes_.dtype == reference.classes_.dtype
    assert binarizer.y_type_ == reference.y_type_
    np.testing.assert_array_equal(Y, reference.transform(labels).astype(bool))
    assert Y.dtype == bool


def test_string_labels_train_as_their_integer_codes(iris):
    # The same rows under string names and under integer codes: the same fit.
    X, y = iris
    species = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    by_name = LargeMLPClassifier(**kw).fit(X, species[y])
    by_code = LargeMLPClassifier(**kw).fit(X, y)
    for a, b in zip(by_name.coefs_, by_code.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(by_name.classes_, species)
    np.testing.assert_array_equal(by_name.predict(X), species[by_code.predict(X)])


def test_mixed_label_types_fail_as_in_sklearn():
    # Labels that do not sort (strings and numbers) fail in sklearn's target
    # check, before any encoding, with the error MLPClassifier gives.
    X = np.arange(8, dtype=float).reshape(4, 2)
    y = np.array(["a", 1, "b", 2], dtype=object)
    with pytest.raises(TypeError, match="not supported") as theirs:
        MLPClassifier(max_iter=1).fit(X, y)
    with pytest.raises(TypeError) as ours:
        LargeMLPClassifier(max_iter=1).fit(X, y)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("fmt", [sp.csr_matrix, sp.csc_matrix])
def test_sparse_input_matches_dense(fmt, iris):
    # CSR/CSC input trains and predicts exactly like the dense array.
    X, y = iris
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, shuffle=False)
    dense = LargeMLPClassifier(**kw).fit(X, y)
    sparse = LargeMLPClassifier(**kw).fit(fmt(X), y)
    np.testing.assert_allclose(dense.coefs_[0], sparse.coefs_[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        dense.predict_proba(X), sparse.predict_proba(fmt(X)), rtol=1e-5, atol=1e-6
    )


def test_multilabel_classification():
    # An indicator matrix gives independent logistic outputs and indicator predictions.
    X, Y = make_multilabel_classification(n_samples=80, n_classes=4, random_state=0)
    clf = LargeMLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0)
    clf.fit(X, Y)
    assert clf.out_activation_ == "logistic"
    assert clf.predict(X).shape == Y.shape
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape and np.all((proba > 0) & (proba < 1))
    assert clf.score(X, Y) > 0.5


def test_multi_output_regression():
    # Several regression targets train jointly; predict returns one column each.
    X, Y = make_regression(n_samples=120, n_features=5, n_targets=3, random_state=0)
    Y = Y / Y.std(axis=0)
    reg = LargeMLPRegressor(hidden_layer_sizes=(32,), solver="lbfgs", random_state=0)
    reg.fit(X, Y)
    assert reg.predict(X).shape == (120, 3)
    assert reg.score(X, Y) > 0.9


def test_binary_predict_proba_columns(digits_binary):
    # Binary problems have one logistic output and two probability columns.
    X, y = digits_binary
    clf = LargeMLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    assert clf.n_outputs_ == 1 and proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_float64_rows_predict_in_float64_without_copying_the_model(
    dropout, iris, monkeypatch
):
    # A float32 model predicts float64 rows in float64 (as scikit-learn's MLP
    # does): the numbers of a float64 copy of the network, here without
    # deep-copying it at every call (0.3-0.5 ms of a one-row predict); a
    # network that is not a Sequential of linear and parameter-free layers
    # still gets its copy.
    import copy

    from sknn_large._estimator import _predict

    X, y = iris
    reg = LargeMLPRegressor(
        hidden_layer_sizes=(16, 8), dropout=dropout, max_iter=20, random_state=0
    ).fit(X, y)
    assert next(reg.module_.parameters()).dtype == torch.float32
    with torch.no_grad():
        want = copy.deepcopy(reg.module_).double().eval()(torch.from_numpy(X))
    copies = []
    deepcopy = copy.deepcopy
    monkeypatch.setattr(
        _predict.copy, "deepcopy", lambda m: copies.append(m) or deepcopy(m)
    )
    np.testing.assert_array_equal(reg.predict(X), want.numpy().ravel())
    assert copies == []
    reg.module_ = torch.nn.Sequential(torch.nn.Sequential(*reg.module_))
    np.testing.assert_array_equal(reg.predict(X), want.numpy().ravel())
    assert len(copies) == 1


def test_html_repr_shows_parameters():
    # Notebooks show the changed parameters as sklearn's estimators do.
    html = LargeMLPClassifier(dropout=0.2)._repr_html_()
    assert "LargeMLPClassifier" in html and "dropout" in html
