"""Per-batch learning-rate schedules: cosine, warm-up + cosine, one-cycle."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._engine._solvers import _BATCH_SCHEDULES, schedule_factor
from sknn_large._estimator import fit_many


def _factor(name, p):
    return float(schedule_factor([name], torch.tensor([[p]], dtype=torch.float64)))


def test_each_schedule_rate_over_steps():
    # The factor on learning_rate_init at training progress p = step / steps.
    # cosine: 1 -> 0.5 at half way -> 0; warm-up + cosine: linear to 1 over
    # the first 5 %, then cosine to 0; one-cycle: lr/25 -> lr at 30 % -> lr/1e4.
    assert _factor("cosine", 0.0) == pytest.approx(1.0)
    assert _factor("cosine", 0.5) == pytest.approx(0.5)
    assert _factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert _factor("warmup_cosine", 0.025) == pytest.approx(0.5)
    assert _factor("warmup_cosine", 0.05) == pytest.approx(1.0)
    assert _factor("warmup_cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert _factor("onecycle", 0.0) == pytest.approx(1 / 25)
    assert _factor("onecycle", 0.3) == pytest.approx(1.0)
    assert _factor("onecycle", 1.0) == pytest.approx(1e-4)
    mid = 0.3 + 0.7 / 2
    assert _factor("onecycle", mid) == pytest.approx(1e-4 + (1 - 1e-4) / 2)
    # Past the planned steps (more partial_fit calls) the rate stays at the end.
    assert _factor("cosine", 1.5) == pytest.approx(0.0, abs=1e-12)
    assert _factor("constant", 0.7) == 1.0


def test_members_on_different_schedules_each_follow_their_own():
    # A stack mixing schedules gives each row its own factor, as alone.
    names = ["cosine", "constant", "onecycle", "cosine", "warmup_cosine"]
    p = torch.tensor([[0.5], [0.5], [0.1], [0.9], [0.02]], dtype=torch.float64)
    mixed = schedule_factor(names, p)[:, 0].tolist()
    alone = [_factor(n, float(q)) for n, q in zip(names, p[:, 0], strict=True)]
    assert mixed == pytest.approx(alone, rel=1e-15)
    assert len(set(mixed)) == len(mixed)


@pytest.mark.parametrize("schedule", sorted(_BATCH_SCHEDULES))
def test_schedule_is_stepped_every_batch_of_a_fit(schedule, iris):
    # After max_iter epochs of n batches the rate is the factor at p = 1, and
    # the optimizer state the model keeps says so; every solver takes it.
    X, y = iris
    for solver in ("adam", "sgd", "rmsprop", "adamw"):
        clf = LargeMLPClassifier(
            hidden_layer_sizes=(4,),
            solver=solver,
            learning_rate=schedule,
            learning_rate_init=0.01,
            batch_size=32,
            max_iter=3,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        lr = clf._state.optimizer_state["param_groups"][0]["lr"]
        assert lr == pytest.approx(0.01 * _factor(schedule, 1.0), abs=1e-9)


def test_cosine_rate_changes_within_an_epoch(iris, monkeypatch):
    # Within a fit, each of the 2 x 5 batch steps runs at its own rate:
    # lr_init * (1 + cos(pi * step / 10)) / 2 for step = 1 .. 10.
    from sknn_large._engine import _loop

    rates = []
    real = _loop._Trainer.schedule_step

    def recording(self):
        real(self)
        rates.append(float(self.hyper["lr"][0, 0]))

    monkeypatch.setattr(_loop._Trainer, "schedule_step", recording)
    X, y = iris
    LargeMLPClassifier(
        hidden_layer_sizes=(4,), batch_size=30, max_iter=2, learning_rate="cosine",
        tol=0, n_iter_no_change=99, precision="float64", random_state=0,
    ).fit(X, y)  # fmt: skip
    expected = [0.001 * 0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(1, 11)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=1e-15)


def test_members_with_different_schedules_share_one_stack(regression):
    # A stack may mix schedules (a search over learning_rate): each member
    # still ends where it ends fitted alone.
    X, y = regression
    base = LargeMLPRegressor(
        hidden_layer_sizes=(8,), max_iter=4, batch_size=32, precision="float64",
        random_state=0,
    )  # fmt: skip
    ests = [
        clone(base).set_params(learning_rate=s)
        for s in ("constant", "cosine", "onecycle", "warmup_cosine")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = fit_many([clone(e) for e in ests], X, y)
        alone = [clone(e).fit(X, y) for e in ests]
    for a, b in zip(stacked, alone, strict=True):
        np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-9, atol=1e-12)
    assert not np.allclose(stacked[0].coefs_[0], stacked[1].coefs_[0])


def test_scheduled_and_robust_models_save_load_and_continue(tmp_path):
    # A cosine schedule ends at rate 0; the model file keeps it, loads, predicts
    # identically and continues with partial_fit; the robust losses round-trip.
    import sknn_large

    rng = np.random.RandomState(0)
    X = rng.randn(100, 3)
    y = X.sum(axis=1)
    for kw in (dict(learning_rate="cosine", solver="sgd"), dict(loss="huber")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = LargeMLPRegressor(max_iter=5, random_state=0, **kw).fit(X, y)
        sknn_large.save(est, tmp_path / "m.sknn")
        loaded = sknn_large.load(tmp_path / "m.sknn")
        np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
        loaded.partial_fit(X, y)
