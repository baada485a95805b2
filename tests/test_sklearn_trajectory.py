"""Same random_state, same model: sknn_large follows scikit-learn's MLP step by step.

The initial weights, the early-stopping split and every epoch's batch order
are drawn from the NumPy random state in scikit-learn's order, and Adam is
scikit-learn's formula, so in float64 a fit reproduces ``MLPClassifier`` /
``MLPRegressor`` to rounding, epoch count included.
"""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier, LargeMLPRegressor


def _data(kind):
    if kind == "binary":
        X, y = load_breast_cancer(return_X_y=True)
    elif kind == "multiclass":
        X, y = load_iris(return_X_y=True)
    else:
        X, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
    return StandardScaler().fit_transform(X), y


def _estimators(kind):
    if kind == "regression":
        return LargeMLPRegressor, MLPRegressor
    return LargeMLPClassifier, MLPClassifier


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_float64_fit_reproduces_sklearn(kind, solver, early_stopping):
    X, y = _data(kind)
    ours, theirs = _estimators(kind)
    kw = dict(
        hidden_layer_sizes=(16,),
        solver=solver,
        learning_rate_init=0.01,
        batch_size=64,
        max_iter=40,
        early_stopping=early_stopping,
        random_state=3,
    )
    a = theirs(**kw).fit(X, y)
    b = ours(precision="float64", **kw).fit(X, y)
    assert b.n_iter_ == a.n_iter_
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-9)
    for u, v in zip(b.coefs_ + b.intercepts_, a.coefs_ + a.intercepts_, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-8, atol=1e-12)
    if early_stopping:
        np.testing.assert_allclose(b.validation_scores_, a.validation_scores_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_float64_lbfgs_reproduces_sklearn(kind, activation):
    # L-BFGS sees the parameters in scikit-learn's packing order (weights,
    # then biases) and the same loss and gradient, so SciPy takes the same
    # iterates. Its line search turns last-bit differences of a gradient into
    # slightly different steps, so the weights agree to about 1e-9 here
    # (measured up to 8e-9 on the multiclass case), not to rounding.
    X, y = _data(kind)
    ours, theirs = _estimators(kind)
    kw = dict(
        hidden_layer_sizes=(16,),
        solver="lbfgs",
        activation=activation,
        max_iter=40,
        random_state=3,
    )
    a = theirs(**kw).fit(X, y)
    b = ours(precision="float64", **kw).fit(X, y)
    assert b.n_iter_ == a.n_iter_
    assert b.loss_ == pytest.approx(a.loss_, rel=1e-8)
    for u, v in zip(b.coefs_ + b.intercepts_, a.coefs_ + a.intercepts_, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_float32_fit_stops_with_sklearn_on_the_readme_example():
    # The README's example: float32 training tracks the float64 trajectory
    # closely enough to stop at scikit-learn's epoch.
    X, y = _data("binary")
    kw = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0)
    a = MLPClassifier(**kw).fit(X, y)
    b = LargeMLPClassifier(**kw).fit(X, y)
    assert b.n_iter_ == a.n_iter_
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-3)


@pytest.mark.parametrize("limit", [None, 0])
def test_epoch_order_survives_pickling(monkeypatch, limit):
    # A saved order continues exactly; it is saved as its starting state and
    # epoch count (kilobytes whatever n) unless the replay would be long, then
    # as its current order.
    import pickle

    from sknn_large._data import _feeds
    from sknn_large._data._feeds import EpochOrder

    if limit is not None:
        monkeypatch.setattr(_feeds, "_REPLAY_LIMIT", limit)
    live = EpochOrder(np.random.RandomState(7), 10_000)
    for _ in range(3):
        live.next()
    blob = pickle.dumps(live)
    restored = pickle.loads(blob)
    for _ in range(3):
        np.testing.assert_array_equal(restored.next(), live.next())
    if limit is None:
        assert len(blob) < 10_000  # not the 80 kB order
    again = pickle.loads(pickle.dumps(restored))
    np.testing.assert_array_equal(again.next(), live.next())
