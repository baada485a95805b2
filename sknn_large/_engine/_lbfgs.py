"""Full-batch L-BFGS through SciPy, as scikit-learn's MLP trains with it.

The one stochastic loop (``_loop.train``) does not fit a solver that asks for
the loss and gradient of the whole data set at SciPy's chosen points; this
module is that solver's ``train``. The engine runs it member by member, and
each loss and gradient comes from the same step as the stochastic loop's
(:func:`~._steps.data_step` on a one-member :class:`~._stack.ParamStack`),
over the parameters in scikit-learn's packing order: every weight matrix,
then every bias.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import ThreadpoolController
from torch import nn

from ._config import TrainConfig, TrainState
from ._losses import _LOSSES
from ._solvers import l1_strength, l2_strength
from ._stack import ParamStack, flat_to_module
from ._steps import data_step, uses_hand_step, without_autograd
from ._threads import idle_cores, threads_for


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Finding the loaded BLAS libraries takes 2-14 ms: once per process, not
    # once per fit (SciPy's and NumPy's are loaded by the imports above).
    return ThreadpoolController()


def _scipy_blas_threads():
    """SciPy's BLAS on one thread, unless nothing else would want its cores.

    L-BFGS-B works on one parameter vector per call, and its BLAS threads
    only spin between calls, on cores that torch's threads or another
    process need: a 5000 x 20 fit with 100 hidden units on two torch threads
    took 1.4-2.1 s against 0.05-0.06 s with them held to one, and with
    another process busy on a 2-core machine a 40-row fit took 3.5 s against
    0.54 s (2026-12-02). Only a fit on one torch thread on a quiet machine
    leaves them be: there they cost nothing measurable (five 40-row fits
    0.032-0.035 s against 0.031-0.033 s, 2026-12-08), and a first small fit
    is spared finding the BLAS libraries (14 ms). Called inside the fit's
    torch thread setting.
    """
    cores = os.cpu_count() or 1
    if torch.get_num_threads() == 1 and idle_cores(cores) >= cores:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


def _loss_and_grad(stack: ParamStack, feed, cfg: TrainConfig):
    """``fun(theta) -> (loss, gradient)`` over the whole data set, for SciPy.

    The value and gradient of one function, the reported loss: the data loss
    averaged over the sample weights (and, for the regression losses, over
    the outputs), plus the penalty over the same total. SciPy calls it a
    few dozen times in a small fit, so what does not change between calls
    (views, scales, a data set held whole) is prepared here once.
    """
    theta, grad = stack.theta[0], stack.grad[0]
    on_cpu = theta.device.type == "cpu"
    loss = _LOSSES[cfg.loss]
    hand = uses_hand_step(cfg.activation, loss, cfg.autocast_dtype, on_cpu)
    weight_total = feed.n_samples if feed.w is None else float(feed.w.sum())
    per_output = 1.0 / stack.widths[-1] if loss.divide_by_outputs else 1.0
    per_row = per_output / weight_total
    smoothing = None
    if cfg.label_smoothing:
        smoothing = torch.full(
            (1, 1, 1), cfg.label_smoothing, device=theta.device, dtype=theta.dtype
        )
    l2, l1 = l2_strength(cfg) / weight_total, l1_strength(cfg) / weight_total
    weights = theta[: stack.n_weights]

    def prepared(chunks):
        for x, y, w in chunks:
            scale = per_row if w is None else (w * per_row).view(1, -1, 1)
            yield x.unsqueeze(0), y.unsqueeze(0), scale, w

    # A data set read in one chunk (held whole) is prepared once; streamed
    # chunks are read anew at every call, their gradients summed in ``total``.
    whole = list(prepared(feed.chunks())) if feed.n_chunks == 1 else None
    total = grad if whole is not None else torch.empty_like(grad)
    total_weights = total[: stack.n_weights]

    def fun(flat: np.ndarray):
        theta.copy_(torch.from_numpy(flat))
        value = 0.0
        with without_autograd(hand, on_cpu):
            parts = whole if whole is not None else prepared(feed.chunks())
            for i, (x, y, scale, w) in enumerate(parts):
                per_sample = data_step(
                    stack,
                    hand,
                    cfg.autocast_dtype,
                    x,
                    y,
                    scale,
                    cfg.activation,
                    loss,
                    None,
                    smoothing,
                )
                value += float(per_sample.sum() if w is None else per_sample[0].dot(w))
                if total is not grad:
                    if i == 0:
                        total.copy_(grad)
                    else:
                        total.add_(grad)
            value *= per_row
            if l2:
                value += 0.5 * l2 * float(weights.dot(weights))
                total_weights.add_(weights, alpha=l2)
            if l1:
                value += l1 * float(weights.abs().sum())
                total_weights.add_(weights.sign(), alpha=l1)
            # A copy: SciPy keeps it, and ``total`` is rewritten by the next call.
            return value, total.cpu().numpy().astype(np.float64)

    return fun


def train_lbfgs(module: nn.Module, feed, cfg: TrainConfig, state: TrainState):
    """Full-batch L-BFGS through SciPy's L-BFGS-B, as scikit-learn's MLP does.

    Gradients come from torch on the module's device; SciPy only sees the
    flat parameter vector. ``max_iter`` bounds iterations, ``max_fun`` loss
    evaluations and ``tol`` is the projected-gradient tolerance.
    """
    module.train()
    start = next(module.parameters())
    stack = ParamStack.from_modules([module], start.device, start.dtype)
    theta0 = stack.theta[0].cpu().double().numpy()
    fun = _loss_and_grad(stack, feed, cfg)
    curve: list[float] = []

    def callback(intermediate_result):
        curve.append(float(intermediate_result.fun))
        if cfg.verbose:
            print("Iteration %d, loss = %.8f" % (len(curve), curve[-1]))

    try:
        with threads_for(module, feed.n_samples), _scipy_blas_threads():
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
    flat_to_module(torch.from_numpy(theta).to(stack.theta), module)
    state.n_iter = min(int(nit), cfg.max_iter)
    state.loss = float(value)
    state.loss_curve.extend(curve)
    state.converged = status == 0
    if status != 0:
        state.messages.append(str(message))
    state.diverged = not all(torch.isfinite(p).all() for p in module.parameters())
    return state
