"""The training loops: mini-batch epochs for stochastic solvers, and L-BFGS.

``train`` -> ``_run_epoch`` -> ``_train_step`` -> ``_batch_loss``. The hot
path does device work only: the epoch's loss is accumulated on the device and
read once per epoch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import scipy.optimize
import torch
from torch import nn

from ._capture import CudaGraphs, GraphedStep
from ._config import TrainConfig, TrainState
from ._losses import _LOSSES, weighted_mean
from ._network import linear_layers
from ._optim import (
    coupled_l2,
    current_learning_rate,
    learning_rate_after_epoch,
    make_optimizer,
    penalty,
    set_capturable,
    set_coupled_decay,
    set_learning_rate,
)

EpochHook = Callable[[nn.Module, TrainState], "bool | None"]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    # No weight cache: each weight is cast once per forward anyway, and a CUDA
    # graph must not capture casts that a cache would skip on replay.
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def _batch_loss(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    w,
    cfg: TrainConfig,
    decay: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (objective to differentiate, value to report) for one batch.

    ``decay`` > 0 means the optimizer applies the L2 term as coupled weight
    decay: it is left out of the objective and only added to the report.
    """
    loss = _LOSSES[cfg.loss]
    with _autocast(x.device, cfg.autocast_dtype):
        raw = module(x)
    per_sample = loss.per_sample(raw.to(x.dtype), y)
    data = weighted_mean(per_sample, w)
    n = x.shape[0] if w is None else w.sum()
    weights = [layer.weight for layer in linear_layers(module)]
    pen = penalty(weights, cfg, l2_in_loss=decay == 0.0)
    objective = data if pen is None else data + pen / n
    report = objective
    if loss.divide_by_outputs and raw.shape[1] > 1:
        report = objective - data + data / raw.shape[1]
    if decay:
        with torch.no_grad():
            norms = torch._foreach_norm(weights)
            report = report + 0.5 * decay * torch.stack(norms).square().sum() / n
    return objective, report


def _train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch,
    cfg: TrainConfig,
    decay: float = 0.0,
) -> torch.Tensor:
    """One optimizer step; returns the reported batch loss times its size."""
    x, y, w = batch
    if decay:
        set_coupled_decay(optimizer, decay / x.shape[0])
    optimizer.zero_grad(set_to_none=True)
    objective, report = _batch_loss(module, x, y, w, cfg, decay)
    objective.backward()
    optimizer.step()
    return report.detach() * x.shape[0]


def _step_function(module, optimizer, feed, cfg: TrainConfig):
    """``batch -> reported loss x batch size``: plain, or replayed from a graph."""
    decay = coupled_l2(cfg, weighted=feed.w is not None)

    def step(batch):
        return _train_step(module, optimizer, batch, cfg, decay)

    backend = (
        _graph_backend(next(module.parameters()).device) if cfg.cuda_graphs else None
    )
    if backend is None:
        return step
    return GraphedStep(step, optimizer, cfg, backend)


def _graph_backend(device: torch.device):
    """What captures the step on ``device`` (None: it runs uncaptured)."""
    return CudaGraphs(device) if device.type == "cuda" else None


def _run_epoch(module, step, feed, cfg: TrainConfig, state: TrainState) -> float:
    """One pass over the data; the only host synchronisation is at the end."""
    module.train()
    total = None
    for batch in feed.batches(state.generator, cfg.shuffle):
        loss = step(batch)
        # In place after the first: a graphed step rewrites its output tensor.
        total = loss.clone() if total is None else total.add_(loss)
    return float(total) / feed.n_samples


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@torch.no_grad()
def restore(module: nn.Module, params: list[torch.Tensor]) -> None:
    """Copy a snapshot back into the module's parameters."""
    for p, saved in zip(module.parameters(), params, strict=False):
        p.copy_(saved)


def _update_no_improvement(
    module: nn.Module,
    cfg: TrainConfig,
    state: TrainState,
    validate: Callable[[nn.Module], float] | None,
) -> None:
    """scikit-learn's rule: improvement means beating the best by more than tol."""
    if validate is not None:
        module.eval()
        score = float(validate(module))
        state.validation_scores.append(score)
        if cfg.verbose:
            print("Validation score: %f" % score)
        if score < state.best_validation_score + cfg.tol:
            state.no_improvement_count += 1
        else:
            state.no_improvement_count = 0
        if score > state.best_validation_score:
            state.best_validation_score = score
            state.best_params = _snapshot(module)
        return
    last = state.loss_curve[-1]
    if last > state.best_loss - cfg.tol:
        state.no_improvement_count += 1
    else:
        state.no_improvement_count = 0
    if last < state.best_loss:
        state.best_loss = last


def _should_stop(optimizer, cfg: TrainConfig, state: TrainState) -> bool:
    """Called once patience runs out: stop, or (adaptive SGD) cut the rate by 5."""
    what = "Validation score" if cfg.early_stopping else "Training loss"
    msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
        what,
        cfg.tol,
        cfg.n_iter_no_change,
    )
    lr = current_learning_rate(optimizer)
    if cfg.solver != "sgd" or cfg.learning_rate != "adaptive":
        msg += " Stopping."
    elif lr <= 1e-6:
        msg += " Learning rate too small. Stopping."
    else:
        set_learning_rate(optimizer, lr / 5.0)
        state.no_improvement_count = 0
        msg += " Setting learning rate to %f" % (lr / 5.0)
        _say(cfg, state, msg)
        return False
    _say(cfg, state, msg)
    return True


def _say(cfg: TrainConfig, state: TrainState, msg: str) -> None:
    state.messages.append(msg)
    if cfg.verbose:
        print(msg)


def _prepare_optimizer(module, cfg: TrainConfig, state: TrainState):
    optimizer = make_optimizer(module, cfg)
    if (cfg.incremental or cfg.resume) and state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    device = next(module.parameters()).device
    # Set after loading: a saved state carries the flag of the call that saved it.
    set_capturable(optimizer, cfg.cuda_graphs and device.type == "cuda")
    return optimizer


def train(
    module: nn.Module,
    feed,
    cfg: TrainConfig,
    state: TrainState,
    *,
    validate: Callable[[nn.Module], float] | None = None,
    on_epoch_begin: EpochHook | None = None,
    on_epoch_end: EpochHook | None = None,
) -> TrainState:
    """Train with a stochastic solver for ``cfg.max_iter`` epochs at most.

    Parameters
    ----------
    module : torch.nn.Module
        The network, already on its device.
    feed : ResidentFeed or StreamFeed
        The training data.
    cfg : TrainConfig
        The call's settings.
    state : TrainState
        Carried across calls; updated in place and returned.
    validate : callable, optional
        ``module -> score`` on held-out data (early stopping), higher is better.
    on_epoch_begin : callable, optional
        Called before each epoch with ``(module, state)``.
    on_epoch_end : callable, optional
        Called after each completed epoch with ``(module, state)``, once the
        stopping rule has run; ``state.optimizer_state`` is current then. A
        truthy return value stops training.

    Returns
    -------
    TrainState
        The updated state. On a non-finite loss the weights of the last finite
        epoch are restored and ``state.diverged`` is set; on Ctrl-C, the weights
        of the last completed epoch are kept and ``state.interrupted`` is set.
    """
    optimizer = _prepare_optimizer(module, cfg, state)
    step = _step_function(module, optimizer, feed, cfg)
    if not cfg.resume:
        state.n_iter = 0
    state.converged = False
    iterations = 1 if cfg.incremental else cfg.max_iter
    last_good = _snapshot(module)
    try:
        with threads_for(module, feed.batch_size):
            for _ in range(state.n_iter, iterations):
                if on_epoch_begin is not None:
                    on_epoch_begin(module, state)
                epoch_loss = _run_epoch(module, step, feed, cfg, state)
                if not math.isfinite(epoch_loss):
                    state.diverged = True
                    _record_divergence(module, cfg, state, validate, last_good)
                    break
                state.t += feed.n_samples
                stop = _end_epoch(module, optimizer, cfg, state, validate, epoch_loss)
                last_good = _snapshot(module)
                if on_epoch_end is not None:
                    # Everything the next epoch depends on is settled here, so a
                    # checkpoint taken now resumes exactly.
                    state.optimizer_state = optimizer.state_dict()
                    if on_epoch_end(module, state) and not stop:
                        _say(cfg, state, "Stopped by a callback.")
                        stop = True
                if stop:
                    state.converged = True
                    break
            else:
                state.converged = cfg.incremental
    except KeyboardInterrupt:
        state.interrupted = True
        restore(module, last_good)
    state.optimizer_state = optimizer.state_dict()
    if cfg.early_stopping and state.best_params is not None:
        restore(module, state.best_params)
    return state


def _end_epoch(module, optimizer, cfg, state: TrainState, validate, loss) -> bool:
    """Record a finished epoch, apply the schedules; True if training should stop."""
    state.n_iter += 1
    state.loss = loss
    state.loss_curve.append(loss)
    if cfg.verbose:
        print("Iteration %d, loss = %.8f" % (state.n_iter, loss))
    _update_no_improvement(module, cfg, state, validate)
    lr = learning_rate_after_epoch(cfg, current_learning_rate(optimizer), state.t)
    set_learning_rate(optimizer, lr)
    return state.no_improvement_count > cfg.n_iter_no_change and _should_stop(
        optimizer, cfg, state
    )


def _record_divergence(module, cfg, state: TrainState, validate, last_good) -> None:
    # Keep the epoch count and curves honest, then put finite weights back.
    state.n_iter += 1
    state.loss = float("nan")
    state.loss_curve.append(float("nan"))
    if validate is not None:
        state.validation_scores.append(float("nan"))
    restore(module, last_good)


# ---------------------------------------------------------------- L-BFGS


def _flat_params(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters())


def _full_batch_loss_grad(module: nn.Module, feed, cfg: TrainConfig):
    """Loss and gradient over the whole data set, accumulated chunk by chunk."""
    module.zero_grad(set_to_none=False)
    params = _flat_params(module)
    weight_total = feed.n_samples if feed.w is None else float(feed.w.sum())
    loss = _LOSSES[cfg.loss]
    total = 0.0
    for x, y, w in feed.chunks():
        with _autocast(x.device, cfg.autocast_dtype):
            raw = module(x)
        per_sample = loss.per_sample(raw.to(x.dtype), y)
        if loss.divide_by_outputs:
            # L-BFGS needs the value and gradient of one function: the reported one.
            per_sample = per_sample / raw.shape[1]
        summed = per_sample.sum() if w is None else (per_sample * w).sum()
        part = summed / weight_total
        part.backward()
        total += float(part.detach())
    pen = penalty([layer.weight for layer in linear_layers(module)], cfg)
    if pen is not None:
        (pen / weight_total).backward()
        total += float(pen.detach()) / weight_total
    grad = torch.cat([p.grad.reshape(-1) for p in params])
    return total, grad.detach().cpu().double().numpy()


@torch.no_grad()
def _load_flat(module: nn.Module, theta: np.ndarray) -> None:
    offset = 0
    for p in _flat_params(module):
        n = p.numel()
        chunk = torch.from_numpy(theta[offset : offset + n]).reshape(p.shape)
        p.copy_(chunk)
        offset += n


# Below this many multiply-adds per step (one batch, or one full-batch loss
# evaluation for L-BFGS), one CPU thread is faster: waking and spinning OpenMP
# workers costs more than they save, and idle spinners starve the main thread
# (measured 10-50x slowdowns for tiny networks on a busy 2-core machine).
_SMALL_WORK = 1e7


@contextlib.contextmanager
def single_threaded_below(
    work: float, device: torch.device, limit: float = _SMALL_WORK
):
    """Run torch on one CPU thread while ``work`` multiply-adds is under ``limit``."""
    if device.type != "cpu" or work > limit:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(module: nn.Module, rows: int):
    """:func:`single_threaded_below` for ``rows`` through ``module``."""
    n_params = sum(p.numel() for p in module.parameters())
    device = next(module.parameters()).device
    return single_threaded_below(rows * n_params, device)


def train_lbfgs(module: nn.Module, feed, cfg: TrainConfig, state: TrainState):
    """Full-batch L-BFGS through SciPy's L-BFGS-B, as scikit-learn's MLP does.

    Gradients come from torch on the module's device; SciPy only sees the
    flat parameter vector. ``max_iter`` bounds iterations, ``max_fun`` loss
    evaluations and ``tol`` is the projected-gradient tolerance.
    """
    module.train()
    theta0 = torch.cat([p.detach().reshape(-1) for p in _flat_params(module)])
    theta0 = theta0.cpu().double().numpy()
    curve: list[float] = []

    def fun(theta):
        _load_flat(module, theta)
        return _full_batch_loss_grad(module, feed, cfg)

    def callback(intermediate_result):
        curve.append(float(intermediate_result.fun))
        if cfg.verbose:
            print("Iteration %d, loss = %.8f" % (len(curve), curve[-1]))

    try:
        with threads_for(module, feed.n_samples):
            res = scipy.optimize.minimize(
                fun,
                theta0,
                method="L-BFGS-B",
                jac=True,
                callback=callback,
                options={
                    "maxfun": cfg.max_fun,
                    "maxiter": cfg.max_iter,
                    "gtol": cfg.tol,
                },
            )
        theta, value, status, message = res.x, res.fun, res.status, res.message
        nit = res.nit
    except KeyboardInterrupt:
        state.interrupted = True
        theta, value, status, message, nit = theta0, float("nan"), 0, "", len(curve)
    _load_flat(module, theta)
    state.n_iter = min(int(nit), cfg.max_iter)
    state.loss = float(value)
    state.loss_curve.extend(curve)
    state.converged = status == 0
    if status != 0:
        state.messages.append(str(message))
    state.diverged = not all(torch.isfinite(p).all() for p in module.parameters())
    return state
