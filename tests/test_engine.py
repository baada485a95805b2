"""The one engine: every registered option at K = 1 and K > 1, both step paths."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._engine import _ACTIVATIONS, _LOSSES, _SOLVERS
from sknn_large._engine import _stack as _stack_module
from sknn_large._engine import _steps as _steps_module
from sknn_large._engine._cpu import narrow_grads_transposed, narrow_products_transposed
from sknn_large._engine._network import _HAND_ACTIVATIONS
from sknn_large._engine._stack import ParamStack
from sknn_large._estimator import _stacked

# Which estimator and targets exercise each engine loss.
_LOSS_CASES = {
    "log_loss": ("clf", 3),
    "binary_log_loss": ("clf", 2),
    "squared_error": ("reg", "squared_error"),
    "poisson": ("reg", "poisson"),
    "huber": ("reg", "huber"),
    "absolute_error": ("reg", "absolute_error"),
}

# Every entry of every registry once, the others at a common choice.
_CASES = (
    [(s, "relu", "log_loss") for s in sorted(_SOLVERS)]
    + [("adam", a, "squared_error") for a in sorted(_ACTIVATIONS)]
    + [("sgd", "tanh", loss) for loss in sorted(_LOSSES)]
)


def _problem(loss):
    rng = np.random.RandomState(0)
    X = rng.randn(120, 5)
    kind, what = _LOSS_CASES[loss]
    if kind == "clf":
        y = (X[:, 0] > 0).astype(int) + (what == 3) * (X[:, 1] > 0.5)
        return X, y, LargeMLPClassifier
    y = X @ rng.rand(5)
    if what == "poisson":
        y = np.exp(0.3 * y)
    return X, y, LargeMLPRegressor


@pytest.mark.parametrize(("solver", "activation", "loss"), _CASES)
def test_every_registered_option_trains_stacked_as_alone(solver, activation, loss):
    # Each solver, activation and loss trains in one stack of K = 3 members
    # (never falling back to fits one at a time), and each member ends where
    # the same estimator fitted alone (K = 1) ends, to float64 rounding.
    X, y, Est = _problem(loss)
    kw = dict(
        hidden_layer_sizes=(6,),
        solver=solver,
        activation=activation,
        max_iter=4,
        batch_size=32,
        precision="float64",
        random_state=0,
    )
    if Est is LargeMLPRegressor:
        kw["loss"] = _LOSS_CASES[loss][1]
    base = Est(**kw)
    ests = [clone(base).set_params(learning_rate_init=lr) for lr in (1e-3, 3e-3, 1e-2)]
    rows = [np.arange(120), np.arange(100), np.arange(20, 120)]
    stacks = []
    real = _stacked.fit_members

    def recording(members, feed):
        stacks.append(len(members))
        return real(members, feed)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(_stacked, "fit_members", recording)
        stacked = _stacked.fit_many([clone(e) for e in ests], X, y, rows)
        alone = [clone(e).fit(X[r], y[r]) for e, r in zip(ests, rows, strict=True)]
    assert stacks == [3]
    for a, b in zip(stacked, alone, strict=True):
        assert not isinstance(a, BaseException), a
        assert a.loss_ == pytest.approx(b.loss_, rel=1e-9)
        for u, v in zip(
            a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True
        ):
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)


def _step_problem(k, rows, widths, loss, seed, dtype):
    """A step's inputs, targets for ``loss`` and weighted row scales."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, rows, widths[0], generator=g, dtype=dtype)
    if _LOSSES[loss].index_targets:
        y = torch.randint(0, widths[-1], (k, rows), generator=g)
    else:
        y = torch.rand(k, rows, widths[-1], generator=g, dtype=dtype)
        y = y * 3 if loss == "poisson" else y
    w = torch.rand(k, rows, generator=g, dtype=dtype)
    return g, x, y, (w / w.sum(dim=1, keepdim=True)).unsqueeze(-1)


def _stack(k, widths, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))
    n += sum(widths[1:])
    theta = 0.5 * torch.randn(k, n, generator=g, dtype=torch.float64)
    return ParamStack(widths, theta)


# The CPU's layout choices for narrow layers (measured per process), forced:
# products as written, only weight gradients transposed, or all transposed.
LAYOUTS = {"written": (False, False), "grads_t": (False, True), "all_t": (True, True)}


def _force_layout(monkeypatch, layout):
    products, grads = LAYOUTS[layout]
    monkeypatch.setattr(
        _stack_module, "narrow_products_transposed", lambda *a: products
    )
    monkeypatch.setattr(_stack_module, "narrow_grads_transposed", lambda *a: grads)


@pytest.mark.parametrize("n_out", [3, 17])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("activation", sorted(_HAND_ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(_LOSSES))
@pytest.mark.parametrize("k", [1, 3])
def test_hand_derived_step_equals_autograd(
    activation, loss, k, layout, n_out, monkeypatch
):
    # The hand-derived forward/backward gives autograd's gradients and losses,
    # with sample weights and dropout masks, for one member and for a stack,
    # with the narrow layers (every one here) multiplied in each layout a CPU
    # may pick, and an output the loss takes transposed (3 columns) or as
    # written (17).
    _force_layout(monkeypatch, layout)
    widths = [4, 7, 5, n_out]
    g, x, y, scale = _step_problem(k, 16, widths, loss, 1, torch.float64)
    masks = [
        (torch.rand(k, 16, n, generator=g, dtype=torch.float64) > 0.3) / 0.7
        for n in widths[1:-1]
    ]
    hand, auto = _stack(k, widths), _stack(k, widths)
    v1 = hand.hand_step(x, y, scale, activation, _LOSSES[loss], masks)
    v2 = auto.autograd_step(x, y, scale, activation, _LOSSES[loss], masks, None)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hand.grad, auto.grad, rtol=1e-10, atol=1e-12)
    assert hand.grad.abs().sum() > 0


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("loss", sorted(_LOSSES))
@pytest.mark.parametrize("k", [1, 3])
def test_bfloat16_hand_step_equals_autocast(
    activation, loss, k, layout, dropout, monkeypatch
):
    # The hand-derived bfloat16 step rounds where autocast rounds (inputs,
    # weights, every product and activation; the loss, the row weights and
    # the dropout masks in float32), so it gives autocast's gradients up to
    # the order of bfloat16 sums, far closer than either is to float32; with
    # sample weights, label smoothing and dropout.
    _force_layout(monkeypatch, layout)
    widths, bf16 = [6, 24, 5, 3], torch.bfloat16
    g, x, y, scale = _step_problem(k, 32, widths, loss, 3, torch.float32)
    eps = torch.full((k, 1, 1), 0.1) if _LOSSES[loss].smoothable else None
    masks = [(torch.rand(k, 32, n, generator=g) > 0.3) / 0.7 for n in widths[1:-1]]
    masks = masks if dropout else None
    theta = 0.5 * _stack(k, widths).theta.float()
    hand, auto, exact = (ParamStack(widths, theta.clone()) for _ in range(3))
    v1 = _steps_module.low_precision_step(
        hand, x, y, scale, activation, _LOSSES[loss], masks, bf16, eps
    )
    v2 = auto.autograd_step(x, y, scale, activation, _LOSSES[loss], masks, bf16, eps)
    exact.hand_step(x, y, scale, activation, _LOSSES[loss], masks, eps)
    assert hand.theta.dtype == hand.grad.dtype == torch.float32
    torch.testing.assert_close(v1, v2, rtol=1e-2, atol=1e-3)
    top = auto.grad.abs().max()
    err_auto = (hand.grad - auto.grad).abs().max() / top
    err_exact = (exact.grad - auto.grad).abs().max() / top
    # bfloat16 keeps 8 bits (a relative step of 2**-8, 4e-3): float32's
    # gradients differ from autocast's by 1e-3 to 3e-2 of the largest here.
    # Without dropout the hand step's differ by at most 3e-5 (most are
    # bit-identical). The loss's delta (prediction - target) and autograd's
    # derivative of the log-softmax agree only to float32's last bits (58 of
    # 96 deltas of one batch, 5e-6 apart), so a delta at a rounding boundary
    # can round to the neighbouring bfloat16; with dropout's data this shows
    # (25 of 933 gradients in one case, 7.7e-4 of the largest): held there to
    # one bfloat16 step of the largest, and 4x closer than float32's.
    if dropout:
        assert err_auto < 2**-8 and err_auto < err_exact / 4
    else:
        assert err_auto < 2e-4 < err_exact


def test_bfloat16_copy_is_kept_per_stack():
    # Each stack (one fit) rounds its parameters into a bfloat16 copy of its
    # own, kept between its steps: two fits never share one, whatever thread
    # they run in.
    loss, bf16 = _LOSSES["log_loss"], torch.bfloat16
    g, x, y, scale = _step_problem(1, 8, [4, 6, 3], "log_loss", 4, torch.float32)
    stacks = [ParamStack([4, 6, 3], _stack(1, [4, 6, 3]).theta.float()) for _ in "ab"]
    copies = []
    for st in stacks:
        for _ in range(2):
            _steps_module.low_precision_step(st, x, y, scale, "relu", loss, None, bf16)
            copies.append(st._buffers[("low", bf16)])
    assert copies[0] is copies[1] and copies[2] is copies[3]
    assert copies[0] is not copies[2]
    assert copies[0].theta.dtype == bf16


def test_every_public_activation_has_a_hand_derived_step():
    # A new activation in the public registry must get its hand-derived form
    # (and so the comparison with autograd above), or every fit using it
    # falls off the fast path.
    assert set(_HAND_ACTIVATIONS) == set(_ACTIVATIONS)
    assert {n for n, a in _HAND_ACTIVATIONS.items() if a.from_input} == {
        "gelu",
        "silu",
    }


def test_training_uses_only_cores_no_other_process_is_busy_on(monkeypatch):
    # Spinning OpenMP workers collapse a fit when another process holds a
    # core: a training call takes the idle cores only (one thread for tiny
    # steps), and gives torch's thread count back afterwards.
    from sknn_large._engine import _threads

    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.setattr(_threads, "_runnable_others", lambda: 1)
    with _threads.TrainingThreads(1e9, cpu):
        pass
    monkeypatch.setattr(_threads, "_runnable_others", lambda: 0)
    with _threads.TrainingThreads(1e9, cpu):
        pass
    with _threads.TrainingThreads(1e3, cpu):
        pass
    monkeypatch.setattr(_threads, "_runnable_others", lambda: 9)
    with _threads.TrainingThreads(1e9, cpu):
        pass
    # busy core: 3 then back to 4; idle: untouched; tiny: 1; all busy: 1.
    assert seen == [3, 4, 1, 4, 1, 4]
    assert before >= 1


@pytest.mark.parametrize(
    "reads, expected, sleeps",
    [([0], 4, 0), ([2, 0], 4, 1), ([2, 1, 3], 3, 2), ([1, 1, 1], 3, 2)],
    ids=["idle-at-once", "idle-second", "least-busy", "busy"],
)
def test_core_probe_stops_at_the_first_read_without_other_work(
    reads, expected, sleeps, monkeypatch
):
    # The probe waits a millisecond between reads only while they show other
    # work: on an idle machine (the common case) a fit starts without waiting,
    # and the least busy read still decides when there is some.
    from sknn_large._engine import _threads

    it = iter(reads)
    monkeypatch.setattr(_threads, "_runnable_others", lambda: next(it))
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 4)
    slept = []
    monkeypatch.setattr(_threads.time, "sleep", slept.append)
    assert _threads.idle_cores(4) == expected
    assert len(slept) == sleeps


@pytest.mark.parametrize(
    "every, expected", [(0.0, [1, 2, 2]), (1e9, [1, 1, 1])], ids=["due", "too-soon"]
)
def test_training_takes_back_cores_freed_between_epochs(every, expected, monkeypatch):
    # A process busy for a moment when a fit starts costs that fit one epoch
    # on fewer threads, not all of them: between epochs the call asks again
    # (at most every _RECHECK_S seconds) and takes back the idle cores.
    from sklearn.datasets import make_classification

    from sknn_large._engine import _threads

    X, y = make_classification(n_samples=400, n_features=20, random_state=0)
    # 20 -> 256 -> 256 -> 1 at 200 rows a step: well above one thread's work.
    est = LargeMLPClassifier(
        hidden_layer_sizes=(256, 256), batch_size=200, max_iter=3, random_state=0
    )
    est.set_params(device="cpu").fit(X, y)  # per-process probes, done once
    from sknn_large._engine import _loop

    monkeypatch.setattr(_threads, "_RECHECK_S", every)
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    threads = {"n": 2}
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads["n"])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: threads.update(n=n))
    busy = iter([1, 1, 1])  # the first probe's three samples see a busy core
    monkeypatch.setattr(_threads, "_runnable_others", lambda: next(busy, 0))
    per_epoch, run_epoch = [], _loop._run_epoch

    def counting(*args):
        per_epoch.append(threads["n"])
        return run_epoch(*args)

    monkeypatch.setattr(_loop, "_run_epoch", counting)
    est.fit(X, y)
    # One thread for the first epoch, both from the second on once a check is
    # due; torch's own count afterwards either way.
    assert per_epoch == expected
    assert threads["n"] == 2


@pytest.mark.parametrize("task", ["regression", "binary"])
@pytest.mark.parametrize("stacked", [False, True])
def test_early_stopping_keeps_the_best_epochs_weights(task, stacked):
    # The restored weights are exactly those of the best validation epoch, for
    # every layer: a fit run for that many epochs ends on the same weights.
    # (A one-unit output layer once came back as a view of the live weights.)
    from sklearn.datasets import make_classification, make_regression

    from sknn_large.ensemble import (
        LargeMLPEnsembleClassifier,
        LargeMLPEnsembleRegressor,
    )

    if task == "regression":
        X, y = make_regression(300, 6, noise=60, random_state=0)
        y = (y - y.mean()) / y.std()
        Est, Ens = LargeMLPRegressor, LargeMLPEnsembleRegressor
    else:
        X, y = make_classification(300, 6, flip_y=0.2, random_state=0)
        Est, Ens = LargeMLPClassifier, LargeMLPEnsembleClassifier
    X_val, y_val, X, y = X[200:], y[200:], X[:200], y[:200]
    kw = dict(
        hidden_layer_sizes=(64,),
        max_iter=60,
        learning_rate_init=0.02,
        precision="float64",
    )
    if stacked:
        ens = Ens(
            n_estimators=2,
            early_stopping=True,
            n_iter_no_change=60,
            random_state=0,
            **kw,
        )
        members = ens.fit(X, y, X_val=X_val, y_val=y_val).estimators_
    else:
        members = [
            Est(early_stopping=True, n_iter_no_change=60, random_state=0, **kw).fit(
                X, y, X_val=X_val, y_val=y_val
            )
        ]
    for m in members:
        best = int(np.argmax(m.validation_scores_)) + 1
        assert best < m.n_iter_, "the test needs a best epoch before the last"
        alone = Est(**{**kw, "max_iter": best}, random_state=m.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter reached
            alone.fit(X, y)
        for a, b in zip(
            m.coefs_ + m.intercepts_, alone.coefs_ + alone.intercepts_, strict=True
        ):
            # Bit for bit alone; a stack orders its sums differently.
            np.testing.assert_allclose(a, b, rtol=1e-10 if stacked else 0, atol=0)


def test_narrow_layout_is_measured_per_dtype_and_rank():
    # The choice is this CPU's measurement (a bool per dtype and rank), cached.
    for dtype in (torch.float32, torch.float64):
        for batched in (False, True):
            first = narrow_products_transposed(dtype, batched)
            assert isinstance(first, bool)
            assert narrow_products_transposed(dtype, batched) is first
        first = narrow_grads_transposed(dtype)
        assert isinstance(first, bool) and narrow_grads_transposed(dtype) is first


@pytest.mark.parametrize("n_out", [2, 5, 15])
def test_transposed_weight_gradient_matches_as_written(n_out, monkeypatch):
    # A narrow layer's weight gradient computed as (D.T @ X).T and copied back
    # gives X.T @ D's numbers up to float32's summation order (bit for bit
    # with MKL on the Intel Xeon of 2026-12-08): the layout changes speed.
    grads = []
    for layout in ("written", "grads_t"):
        _force_layout(monkeypatch, layout)
        widths = [9, 12, n_out]
        stack = ParamStack(widths, _stack(1, widths).theta.float())
        _, x, y, _ = _step_problem(1, 64, widths, "log_loss", 4, torch.float32)
        stack.hand_step(x, y, 1.0 / 64, "relu", _LOSSES["log_loss"], None)
        grads.append(stack.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("widths", [[4, 1], [4, 6, 1], [4, 1, 6, 2]])
def test_one_column_layers_step_as_autograd(widths, k, transposed, monkeypatch):
    # One-unit layers (every binary classifier's and single-output regressor's
    # output) multiplied as written or transposed, and their input gradient
    # as an outer product, give autograd's gradients.
    monkeypatch.setattr(
        _stack_module, "narrow_products_transposed", lambda *a: transposed
    )
    g = torch.Generator().manual_seed(2)
    x = torch.randn(k, 16, widths[0], generator=g, dtype=torch.float64)
    y = torch.rand(k, 16, widths[-1], generator=g, dtype=torch.float64)
    hand, auto = _stack(k, widths), _stack(k, widths)
    loss = _LOSSES["squared_error"]
    v1 = hand.hand_step(x, y, 1.0 / 16, "tanh", loss, None)
    v2 = auto.autograd_step(x, y, 1.0 / 16, "tanh", loss, None, None)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hand.grad, auto.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "adam"},
        {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True},
        {"solver": "sgd", "momentum": 0.0},
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_l2_gradient_in_the_fused_kernel_trains_as_added_before(
    params, weighted, monkeypatch
):
    # A pure L2 penalty's gradient is added by the fused kernel on the CPU;
    # the fit equals the one that adds it to the gradient first (bit for bit
    # but for a few float32 ulps, where the kernel rounds otherwise), and the
    # kernel is indeed handed it.
    import dataclasses

    from sknn_large._engine import _loop

    rng = np.random.RandomState(0)
    X = rng.randn(203, 7).astype(np.float32)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 0)
    sw = rng.uniform(0.5, 2.0, len(y)) if weighted else None
    kw = dict(hidden_layer_sizes=(33, 17), alpha=0.05, batch_size=40, max_iter=4)
    est = LargeMLPClassifier(random_state=0, device="cpu", **kw, **params)

    record = _SOLVERS[params["solver"]]
    handed = []

    def spy(*args, **kwargs):
        handed.append(kwargs.get("l2") is not None)
        return record.fused(*args, **kwargs)

    monkeypatch.setitem(
        _loop._SOLVERS, params["solver"], dataclasses.replace(record, fused=spy)
    )
    folded = clone(est).fit(X, y, sample_weight=sw)
    assert handed and all(handed)

    monkeypatch.setitem(
        _loop._SOLVERS,
        params["solver"],
        dataclasses.replace(record, fused_l2=False),
    )
    added = clone(est).fit(X, y, sample_weight=sw)
    for a, b in zip(
        folded.coefs_ + folded.intercepts_,
        added.coefs_ + added.intercepts_,
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(folded.loss_curve_, added.loss_curve_, rtol=1e-6)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"activation": "relu"}, True),
        ({"activation": "gelu"}, True),
        ({"precision": "bfloat16", "dropout": 0.2}, True),
    ],
)
def test_hand_derived_step_runs_in_inference_mode_on_the_cpu(
    params, expected, monkeypatch
):
    # The hand-derived step needs no autograd and skips its bookkeeping; the
    # autograd path keeps it. Either way the fitted model is ordinary: it
    # trains on (partial_fit) and takes gradients afterwards.
    from sknn_large._engine import _loop

    seen = []
    step = _loop._Trainer.step

    def spy(self, batch):
        seen.append(torch.is_inference_mode_enabled())
        return step(self, batch)

    monkeypatch.setattr(_loop._Trainer, "step", spy)
    X, y, _ = _problem("log_loss")
    est = LargeMLPClassifier((6,), max_iter=3, device="cpu", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
        est.partial_fit(X, y)
    assert seen and all(s is expected for s in seen)
    assert not torch.is_inference_mode_enabled()
    module = est.module_
    out = module(torch.as_tensor(X[:4], dtype=next(module.parameters()).dtype))
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())
