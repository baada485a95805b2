"""Huber and absolute-error regression: gradients, values, training."""

import warnings

import numpy as np
import pytest
import torch

from sknn_large import LargeMLPRegressor
from sknn_large._engine import _LOSSES


@pytest.mark.parametrize("name", ["huber", "absolute_error"])
def test_robust_loss_gradients_match_finite_differences(name):
    # The hand-derived step's output delta is the derivative of the loss,
    # checked by central differences in float64 away from the kinks.
    loss = _LOSSES[name]
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 7, 3, generator=g, dtype=torch.float64) * 2
    y = torch.randn(2, 7, 3, generator=g, dtype=torch.float64)
    diff = (raw - y).abs()
    assert ((diff - 1.0).abs() > 1e-3).all() and (diff > 1e-3).all()
    value, delta = loss.value_and_delta(raw.clone(), y)
    torch.testing.assert_close(value, loss.per_sample(raw, y))
    eps = 1e-6
    numeric = torch.zeros_like(raw)
    for idx in np.ndindex(*raw.shape):
        up, down = raw.clone(), raw.clone()
        up[idx] += eps
        down[idx] -= eps
        k, b = idx[0], idx[1]
        numeric[idx] = (
            loss.per_sample(up, y)[k, b] - loss.per_sample(down, y)[k, b]
        ) / (2 * eps)
    torch.testing.assert_close(delta, numeric, rtol=1e-6, atol=1e-8)


def test_huber_and_absolute_error_resist_outliers():
    # With 10 % gross outliers in y, the robust losses fit the clean trend
    # better than the squared error does; all three train and predict.
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (400, 2))
    y = X @ np.array([1.5, -1.0])
    noisy = y.copy()
    noisy[rng.rand(400) < 0.1] += 30.0
    errors = {}
    for name in ("squared_error", "huber", "absolute_error"):
        est = LargeMLPRegressor(
            loss=name, hidden_layer_sizes=(16,), learning_rate_init=0.01,
            max_iter=300, random_state=0,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, noisy)
        errors[name] = np.median(np.abs(est.predict(X) - y))
        assert est.out_activation_ == "identity"
    assert errors["huber"] < errors["squared_error"] / 2
    assert errors["absolute_error"] < errors["squared_error"] / 2
