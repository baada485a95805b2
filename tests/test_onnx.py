"""ONNX export: onnxruntime reproduces predict and predict_proba, in pipelines too."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._onnx import register_onnx_converters, to_onnx

ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

TOL = dict(rtol=1e-5, atol=1e-5)
SMALL = dict(hidden_layer_sizes=(8, 4), max_iter=20, device="cpu", random_state=0)


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _run(onx, X):
    session = ort.InferenceSession(
        onx.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})


def _batches(X):
    # A single row and many rows through the same graph: the batch is dynamic.
    return [X[:1], X]


@pytest.mark.parametrize(
    "target", ["binary", "binary-strings", "multiclass", "multiclass-strings"]
)
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_classifier_matches_onnxruntime(target, activation, iris):
    # Labels equal predict and probabilities match predict_proba within 1e-5.
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])
    y = {
        "binary": (y > 0).astype(int),
        "binary-strings": names[(y > 0).astype(int)],
        "multiclass": y,
        "multiclass-strings": names[y],
    }[target]
    clf = _fit(LargeMLPClassifier(activation=activation, **SMALL), X, y)
    onx = to_onnx(clf)
    for batch in _batches(X):
        label, proba = _run(onx, batch)
        np.testing.assert_array_equal(label, clf.predict(batch.astype(np.float32)))
        np.testing.assert_allclose(proba, clf.predict_proba(batch), **TOL)


@pytest.mark.parametrize("activation", ["gelu", "silu", "leaky_relu", "elu"])
def test_extra_activations_match(activation, iris):
    # The activations sklearn lacks have exact ONNX forms too.
    X, y = iris
    clf = _fit(LargeMLPClassifier(activation=activation, **SMALL), X, y)
    label, proba = _run(to_onnx(clf), X)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), **TOL)


def test_multilabel_and_bool_labels(iris):
    # Multilabel gives an int64 indicator matrix; bool classes come out as 0/1.
    X, y = iris
    multi = _fit(LargeMLPClassifier(**SMALL), X, np.c_[y == 0, y > 0, y == 2])
    label, proba = _run(to_onnx(multi), X)
    np.testing.assert_array_equal(label, multi.predict(X))
    np.testing.assert_allclose(proba, multi.predict_proba(X), **TOL)
    binary = _fit(LargeMLPClassifier(**SMALL), X, y > 0)
    label, _ = _run(to_onnx(binary), X)
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, binary.predict(X).astype(np.int64))


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_matches_onnxruntime(n_outputs, loss, regression):
    # Predictions match within 1e-5 for single and multi-output targets.
    X, y = regression
    Y = np.abs(np.c_[y, 2 * y, -y][:, :n_outputs])
    reg = _fit(
        LargeMLPRegressor(loss=loss, **SMALL), X, Y if n_outputs > 1 else Y[:, 0]
    )
    onx = to_onnx(reg)
    for batch in _batches(X):
        (variable,) = _run(onx, batch)
        assert variable.shape == (batch.shape[0], n_outputs)
        expected = reg.predict(batch).reshape(batch.shape[0], n_outputs)
        np.testing.assert_allclose(variable, expected, **TOL)


def test_float64_lbfgs_model_exports(iris):
    # A float64 (L-BFGS) model runs in float32 in ONNX, still within 1e-5.
    X, y = iris
    clf = _fit(LargeMLPClassifier(**{**SMALL, "solver": "lbfgs"}), X, y)
    assert clf.coefs_[0].dtype == np.float64
    label, proba = _run(to_onnx(clf), X)
    np.testing.assert_array_equal(label, clf.predict(X))
    np.testing.assert_allclose(proba, clf.predict_proba(X), **TOL)


def test_pipeline_converts_with_skl2onnx(iris):
    # StandardScaler -> LargeMLPClassifier converts through skl2onnx.to_onnx, with
    # ZipMap (skl2onnx's default) and without it.
    X, y = iris
    X = X * 10 + 3
    register_onnx_converters()
    pipe = _fit(make_pipeline(StandardScaler(), LargeMLPClassifier(**SMALL)), X, y)
    X32 = X.astype(np.float32)
    label, proba = _run(skl2onnx.to_onnx(pipe, X32[:1], options={"zipmap": False}), X)
    np.testing.assert_array_equal(label, pipe.predict(X32))
    np.testing.assert_allclose(proba, pipe.predict_proba(X32), **TOL)
    label, dicts = _run(skl2onnx.to_onnx(pipe, X32[:1]), X)
    np.testing.assert_array_equal(label, pipe.predict(X32))
    as_array = np.array([[row[c] for c in pipe.classes_] for row in dicts])
    np.testing.assert_allclose(as_array, pipe.predict_proba(X32), **TOL)


def test_regressor_pipeline_converts_with_skl2onnx(regression):
    # A regressor pipeline converts and matches too.
    X, y = regression
    register_onnx_converters()
    pipe = _fit(make_pipeline(StandardScaler(), LargeMLPRegressor(**SMALL)), X, y)
    (variable,) = _run(skl2onnx.to_onnx(pipe, X[:1].astype(np.float32)), X)
    np.testing.assert_allclose(
        variable[:, 0], pipe.predict(X.astype(np.float32)), **TOL
    )


def test_whole_number_float_labels_export_exactly(iris):
    # Float labels that are whole numbers (0.0/1.0, common in user data) export
    # as int64 labels equal to predict's.
    X, y = iris
    for labels in (y.astype(float), (y > 0).astype(np.float32) * 7 - 3):
        clf = _fit(LargeMLPClassifier(**SMALL), X, labels)
        label, proba = _run(to_onnx(clf), X)
        assert label.dtype == np.int64
        np.testing.assert_array_equal(label, clf.predict(X))
        np.testing.assert_allclose(proba, clf.predict_proba(X), **TOL)


def test_labels_beyond_int64_are_refused(iris):
    # uint64 labels above 2**63 would wrap to negative int64: refused instead.
    X, y = iris
    big = np.array([2**63 + 1, 2**63 + 8], dtype=np.uint64)
    clf = _fit(LargeMLPClassifier(**SMALL), X, big[(y > 0).astype(int)])
    with pytest.raises(TypeError, match="outside int64's range"):
        to_onnx(clf)


def test_label_conversion_is_exact_or_refused():
    # The label rule on its own: exact conversions pass, the rest (fractions,
    # which a classifier cannot be fitted on, among them) is refused.
    from sknn_large._onnx import _exact_labels

    exact = {
        "ints": np.array([-5, 0, 2**62]),
        "top uint64 that fits": np.array([0, 2**63 - 1], dtype=np.uint64),
        "bools": np.array([False, True]),
        "floats": np.array([-2.0, 0.0, 1.0]),
        "object ints": np.array([1, 2**40], dtype=object),
    }
    for name, labels in exact.items():
        out = _exact_labels(labels)
        assert out.dtype == np.int64, name
        assert [int(v) for v in out] == [int(v) for v in labels], name
    strings = np.array(["a", "b"], dtype=object)
    assert _exact_labels(strings) is strings
    refused = [
        np.array([0.0, 2.0**63]),
        np.array([0.0, np.inf]),
        np.array([0.25, 1.0]),
        np.array([2**64 - 1], dtype=np.uint64),
        np.array([1, "a"], dtype=object),
        np.array([2**70], dtype=object),
    ]
    for labels in refused:
        with pytest.raises(TypeError, match="ONNX class labels"):
            _exact_labels(labels)


def test_import_does_not_load_onnx():
    # Importing sknn_large (its export module included) never imports onnx.
    code = (
        "import sys, sknn_large, sknn_large._onnx, sknn_large._persist\n"
        "assert not {'onnx', 'skl2onnx', 'onnxruntime'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
