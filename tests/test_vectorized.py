"""The vectorised engine: each member equals the same model trained alone."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._estimator._stacked import _Job, fit_many, max_members, stackable

GRID = [
    {"learning_rate_init": 0.01, "alpha": 1e-3, "random_state": 0},
    {
        "learning_rate_init": 0.003,
        "alpha": 1e-2,
        "penalty": "elasticnet",
        "l1_ratio": 0.3,
        "beta_1": 0.8,
        "random_state": 1,
    },
    {"learning_rate_init": 0.02, "penalty": "l1", "random_state": 2},
]


@pytest.fixture(scope="module")
def iris_std():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


def _folds(n, sizes, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.permutation(n)[:s] for s in sizes]


def _alone_and_vectorised(base, grid, X, y, rows):
    ests = [clone(base).set_params(**g) for g in grid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = [clone(e).fit(X[r], y[r]) for e, r in zip(ests, rows, strict=True)]
        vec = fit_many(ests, X, y, rows)
    for v in vec:
        assert not isinstance(v, Exception), v
    return alone, vec


def _assert_same(alone, vec, rtol=1e-9, atol=1e-12):
    for a, v in zip(alone, vec, strict=True):
        assert v.n_iter_ == a.n_iter_
        assert v.t_ == a.t_
        for ca, cv in zip(
            a.coefs_ + a.intercepts_, v.coefs_ + v.intercepts_, strict=True
        ):
            np.testing.assert_allclose(cv, ca, rtol=rtol, atol=atol)
        np.testing.assert_allclose(v.loss_curve_, a.loss_curve_, rtol=rtol * 10)


def _classifier(**kw):
    params = dict(max_iter=5, precision="float64", device="cpu", batch_size=32)
    return LargeMLPClassifier((8,), **{**params, **kw})


@pytest.mark.parametrize("solver", ["adam", "sgd", "adamw", "rmsprop"])
def test_member_equals_single_model_per_solver(solver, iris_std):
    # Each solver's batched update follows torch's formula: same weights as alone.
    X, y = iris_std
    grid = [
        {**g, "momentum": m, "nesterovs_momentum": n}
        for g, m, n in zip(GRID, [0.9, 0.5, 0.0], [True, False, True], strict=True)
    ]
    alone, vec = _alone_and_vectorised(
        _classifier(solver=solver), grid, X, y, _folds(150, [120, 110, 130])
    )
    _assert_same(alone, vec)


def _count_stack_wide_fused(monkeypatch, solver):
    # Counts the fused-kernel calls that update a whole (K, P) stack at once.
    from sknn_large._engine import _solvers

    record = _solvers._SOLVERS[solver]
    calls = []

    def spy(theta, *args, **kwargs):
        if theta.dim() == 2:
            calls.append(theta.shape[0])
        return record.fused(theta, *args, **kwargs)

    patched = dict(_solvers._SOLVERS)
    patched[solver] = dataclasses.replace(record, fused=spy)
    monkeypatch.setattr(_solvers, "_SOLVERS", patched)
    from sknn_large._engine import _loop

    monkeypatch.setattr(_loop, "_SOLVERS", patched)
    return calls


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "adam"},
        {"solver": "adam", "learning_rate": "warmup_cosine"},
        {"solver": "adamw", "alpha": 1e-2},
        {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True},
    ],
)
def test_members_sharing_settings_update_in_one_fused_call(
    params, iris_std, monkeypatch
):
    # An ensemble's members differ only in their seeds: one fused kernel call
    # updates the whole stack, and each member still equals its fit alone.
    X, y = iris_std
    calls = _count_stack_wide_fused(monkeypatch, params["solver"])
    grid = [{"random_state": s} for s in range(3)]
    alone, vec = _alone_and_vectorised(
        _classifier(**params), grid, X, y, _folds(150, [120] * 3)
    )
    _assert_same(alone, vec)
    # 5 epochs of 4 batches; the fits alone update a 1-D vector.
    assert calls == [3] * 20


def test_members_apart_in_rate_or_step_count_leave_the_fused_call(
    iris_std, monkeypatch
):
    # Members of unequal folds skip batches (their step counts part), and
    # adaptive rates part on their own: both fall back to the stacked update.
    X, y = iris_std
    calls = _count_stack_wide_fused(monkeypatch, "sgd")
    base = _classifier(solver="sgd", max_iter=8, learning_rate_init=0.05)
    grid = [{"random_state": s} for s in range(2)]
    alone, vec = _alone_and_vectorised(base, grid, X, y, _folds(150, [150, 60]))
    _assert_same(alone, vec)
    # Fused until the shorter fold runs out of batches, on the first epoch.
    assert calls == [2, 2]
    calls.clear()
    base = _classifier(
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.5,
        max_iter=30,
        n_iter_no_change=1,
        tol=1e-3,
    )
    alone, vec = _alone_and_vectorised(base, grid, X, y, _folds(150, [120, 120]))
    _assert_same(alone, vec)
    # Equal folds keep the step counts equal: only the rates, set apart by
    # 'adaptive' at the end of an epoch, end the fused calls before any
    # member stops.
    epochs = min(v.n_iter_ for v in vec)
    assert calls and len(calls) % 4 == 0 and len(calls) < 4 * epochs


def test_member_equals_single_model_with_dropout(iris_std):
    # Each member draws dropout masks from its own stream, as nn.Dropout would.
    X, y = iris_std
    grid = [{**g, "dropout": d} for g, d in zip(GRID, [0.2, 0.0, 0.5], strict=True)]
    alone, vec = _alone_and_vectorised(
        _classifier(), grid, X, y, _folds(150, [120] * 3)
    )
    _assert_same(alone, vec)


def test_member_equals_single_model_with_early_stopping(iris_std):
    # Own validation split, own patience, best weights restored, members retire.
    X, y = iris_std
    base = _classifier(early_stopping=True, max_iter=40, n_iter_no_change=3)
    alone, vec = _alone_and_vectorised(base, GRID, X, y, _folds(150, [120] * 3))
    _assert_same(alone, vec)
    assert len({v.n_iter_ for v in vec}) > 1  # members stopped at different epochs
    for a, v in zip(alone, vec, strict=True):
        assert v.validation_scores_ == a.validation_scores_
        assert v.best_validation_score_ == a.best_validation_score_


def test_member_equals_single_model_stopping_on_training_loss(iris_std):
    # tol on the training loss: each member stops on its own epoch.
    X, y = iris_std
    base = _classifier(max_iter=60, n_iter_no_change=2, tol=1e-2)
    alone, vec = _alone_and_vectorised(base, GRID, X, y, _folds(150, [150] * 3))
    _assert_same(alone, vec)
    assert all(v.n_iter_ < 60 for v in vec)


def test_adaptive_and_invscaling_sgd_match(iris_std):
    # Per-member learning-rate schedules of SGD follow scikit-learn's rules.
    X, y = iris_std
    base = _classifier(solver="sgd", max_iter=25, n_iter_no_change=2, tol=1e-2)
    grid = [
        {"learning_rate": "adaptive", "learning_rate_init": 0.05, "random_state": 0},
        {"learning_rate": "invscaling", "learning_rate_init": 0.5, "random_state": 1},
    ]
    alone, vec = _alone_and_vectorised(base, grid, X, y, _folds(150, [150, 140]))
    _assert_same(alone, vec)


def test_regressor_uneven_folds_and_multi_output():
    # Folds of different sizes pad rows and mask updates; multi-output loss.
    X, y = make_regression(200, 5, n_targets=2, random_state=0)
    y = y / 100
    base = LargeMLPRegressor(
        hidden_layer_sizes=(8, 6),
        max_iter=5,
        precision="float64",
        device="cpu",
        batch_size=32,
    )
    rows = [np.arange(200)[: 150 + 7 * i] for i in range(3)]
    alone, vec = _alone_and_vectorised(base, GRID, X, y, rows)
    _assert_same(alone, vec)


def test_float32_members_close_to_single_model(iris_std):
    # precision='auto' (float32): batched products round differently, slightly.
    X, y = iris_std
    base = LargeMLPClassifier((16,), max_iter=5, device="cpu", batch_size=32)
    alone, vec = _alone_and_vectorised(base, GRID, X, y, _folds(150, [120] * 3))
    _assert_same(alone, vec, rtol=1e-4, atol=1e-5)
    assert vec[0].coefs_[0].dtype == np.float64  # follows the input's dtype


def test_memory_budget_chunks_members_without_changing_results(iris_std):
    # A tiny budget trains one member per stack; the results do not change
    # beyond float64 rounding (a one-member stack takes 2-D kernels, whose
    # elementwise loops round a few products differently from K-row ones).
    X, y = iris_std
    ests = [_classifier().set_params(**g) for g in GRID]
    rows = _folds(150, [120] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = fit_many([clone(e) for e in ests], X, y, rows)
        chunked = fit_many([clone(e) for e in ests], X, y, rows, budget=1.0)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-12, atol=1e-15)


def test_max_members_follows_budget(iris_std):
    # The member count per stack scales with the memory budget.
    X, y = iris_std
    job = _Job(_classifier(random_state=0), X, y, np.arange(150), None, "", None)
    cpu = torch.device("cpu")
    small = max_members([job.member], cpu, torch.float64, budget=1e6)
    large = max_members([job.member], cpu, torch.float64, budget=1e8)
    assert 1 <= small < large


def test_lbfgs_stacks_and_sparse_fits_alone(iris_std):
    # L-BFGS members go through the engine (one after another); sparse input
    # cannot share a resident stack and fits alone. Both equal a plain fit.
    import scipy.sparse as sp

    X, y = iris_std
    lbfgs = _classifier(solver="lbfgs", random_state=0)
    assert stackable(lbfgs, X)
    assert not stackable(_classifier(), sp.csr_matrix(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (fitted,) = fit_many([clone(lbfgs)], X, y)
        alone = clone(lbfgs).fit(X, y)
    np.testing.assert_allclose(fitted.coefs_[0], alone.coefs_[0])


def test_mixed_architectures_are_grouped(iris_std):
    # Different hidden sizes train in separate stacks, each exact.
    X, y = iris_std
    grid = [{"random_state": 0}, {"hidden_layer_sizes": (5, 4), "random_state": 1}]
    rows = [np.arange(150)] * 2
    alone, vec = _alone_and_vectorised(_classifier(), grid, X, y, rows)
    _assert_same(alone, vec)


def test_failed_member_is_reported_not_raised(iris_std):
    # A member whose parameters are invalid comes back as its exception.
    X, y = iris_std
    ests = [_classifier(random_state=0), _classifier(alpha=-1.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good, bad = fit_many(ests, X, y)
        alone = clone(ests[0]).fit(X, y)
    assert isinstance(bad, ValueError)
    np.testing.assert_allclose(good.coefs_[0], alone.coefs_[0])


def _continued_alone_and_vectorised(base, X, y, more):
    """Fit ``base`` alone and as a vectorised member, then train both on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = clone(base).fit(X, y)
        (vec,) = fit_many([clone(base)], X, y)
        (reset,) = fit_many([clone(base)], X, y)
        reset._state.optimizer_state = None  # what members used to carry
        for est in (alone, vec, reset):
            more(est)
    return alone, vec, reset


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "adam", "dropout": 0.2},
        {"solver": "adamw"},
        {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.1},
        {"solver": "rmsprop"},
    ],
)
def test_partial_fit_continues_member_optimizer(params, iris_std):
    # A member keeps its optimizer state (moments, step count, momentum, the
    # scheduled rate) and dropout stream: partial_fit continues as it would
    # from the same model fitted alone, not from a restarted optimizer.
    X, y = iris_std
    base = _classifier(random_state=0, **params)
    alone, vec, reset = _continued_alone_and_vectorised(
        base, X, y, lambda est: est.partial_fit(X, y)
    )
    _assert_same([alone], [vec])
    assert not np.allclose(reset.coefs_[0], alone.coefs_[0], rtol=1e-6)


def test_warm_start_continues_member_early_stopping(iris_std):
    # A warm-started fit with early stopping keeps the best weights seen so
    # far (the first fit's, here): the member publishes them as a model
    # fitted alone keeps them.
    X, y = iris_std
    base = _classifier(
        random_state=0,
        warm_start=True,
        early_stopping=True,
        n_iter_no_change=2,
        learning_rate_init=0.05,
        max_iter=8,
    )
    alone, vec, _ = _continued_alone_and_vectorised(
        base, X, y, lambda est: est.fit(X, y)
    )
    _assert_same([alone], [vec])
    assert vec.validation_scores_ == alone.validation_scores_
    # The continuation did not improve, so the first fit's best weights won.
    assert max(alone.validation_scores_[-alone.n_iter_ :]) <= max(
        alone.validation_scores_[: -alone.n_iter_]
    )


def test_verbose_lines_name_their_member(iris_std, capsys):
    # Stacked members print scikit-learn's verbose lines, prefixed with the
    # member they belong to, as many as each member's epochs.
    X, y = iris_std
    ests = [_classifier(max_iter=3, verbose=2, random_state=i) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_many(ests, X, y)
    out = capsys.readouterr().out.splitlines()
    for k in range(2):
        mine = [line for line in out if line.startswith(f"[member {k}] Iteration")]
        assert len(mine) == 3, out


def test_stacked_fit_shares_one_progress_bar(iris_std, capsys, monkeypatch):
    # verbose=1 in a terminal: one live bar for the whole stack, following the
    # leading member up to the longest run; no per-member iteration lines.
    from sknn_large import _progress

    monkeypatch.setattr(_progress, "interactive", lambda: True)
    X, y = iris_std
    ests = [_classifier(max_iter=m, verbose=1, random_state=0) for m in (2, 4, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = fit_many(ests, X, y)
    out = capsys.readouterr().out
    assert [m.n_iter_ for m in fitted] == [2, 4, 3]
    assert "epoch 4/4" in out and "epoch 5/4" not in out
    assert out.count("epoch 1/4") == 1
    assert "Iteration" not in out


def test_hand_derived_and_autograd_groups_share_one_feed(iris_std):
    # ReLU members train in inference mode, GELU members (autograd) outside it,
    # one after the other on the same data: each still equals its fit alone.
    X, y = iris_std
    grid = [
        {"activation": "relu", "random_state": 0},
        {"activation": "gelu", "random_state": 1},
        {"activation": "relu", "hidden_layer_sizes": (5,), "random_state": 2},
    ]
    alone, vec = _alone_and_vectorised(_classifier(), grid, X, y, [np.arange(150)] * 3)
    _assert_same(alone, vec)
