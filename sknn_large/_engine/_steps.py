"""Which step fills a stack's gradient, and what bfloat16 costs on the CPU.

The stochastic loop and L-BFGS both get their gradients from
:func:`data_step`: the hand-derived step (:meth:`ParamStack.hand_step`)
where it covers the network, its bfloat16 variant on the CPU
(:func:`low_precision_step`), or autograd (:meth:`ParamStack.autograd_step`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable

import torch

from ._losses import _LOSSES, Loss
from ._network import _HAND_ACTIVATIONS
from ._stack import ParamStack


def uses_hand_step(
    activation: str, loss: Loss, autocast: torch.dtype | None, on_cpu: bool
) -> bool:
    """Whether the hand-derived step covers a fit, else autograd's.

    bfloat16 takes the hand-derived step on the CPU (see
    :func:`low_precision_step`); on a GPU, autocast through autograd.
    """
    return (
        activation in _HAND_ACTIVATIONS
        and loss.value_and_delta is not None
        and (autocast is None or on_cpu)
    )


def without_autograd(hand: bool, on_cpu: bool):
    """Inference mode around the hand-derived step's calls on the CPU.

    That step records nothing for autograd, and inference mode skips the
    per-call bookkeeping autograd does anyway: about 0.4 us of a call's 2-3 us
    (a hand-derived step of a tiny network, 33 calls: 52 us against 66 us).
    Not for the autograd path, which needs its graph, nor around CUDA graph
    capture. Buffers the step keeps between calls are made outside it (see
    ``ParamStack._hand_buffers``), so they stay usable outside.
    """
    if hand and on_cpu:
        return torch.inference_mode()
    return contextlib.nullcontext()


def data_step(
    stack: ParamStack,
    hand: bool,
    autocast: torch.dtype | None,
    x: torch.Tensor,
    y: torch.Tensor,
    scale,
    activation: str,
    loss: Loss,
    masks,
    smoothing: torch.Tensor | None,
) -> torch.Tensor:
    """The data loss's gradient into ``stack.grad`` by the step ``hand`` picks.

    ``hand`` is :func:`uses_hand_step`'s answer for the fit; the rest is
    :meth:`ParamStack.hand_step`'s contract. Returns each member's
    per-sample losses, ``(K, B)``.
    """
    if not hand:
        return stack.autograd_step(
            x, y, scale, activation, loss, masks, autocast, smoothing
        )
    if autocast is None:
        return stack.hand_step(x, y, scale, activation, loss, masks, smoothing)
    return low_precision_step(
        stack, x, y, scale, activation, loss, masks, autocast, smoothing
    )


@functools.cache
def _float_loss(loss: Loss, param_dtype: torch.dtype) -> Loss:
    """``loss`` computed in ``param_dtype`` from outputs of a lower precision.

    As under autocast, the loss and its delta are computed in the parameters'
    precision; the hand-derived step scales the delta there and rounds it
    once for the backward products. No state: one object per loss, shared.
    """
    vad = loss.value_and_delta

    def value_and_delta(raw, y, *extra, dim=-1):
        return vad(raw.to(param_dtype), y, *extra, dim=dim)

    return dataclasses.replace(loss, value_and_delta=value_and_delta)


def low_precision_step(
    stack: ParamStack,
    x: torch.Tensor,
    y: torch.Tensor,
    scale,
    activation: str,
    loss: Loss,
    masks,
    dtype: torch.dtype,
    smoothing: torch.Tensor | None = None,
) -> torch.Tensor:
    """:meth:`ParamStack.hand_step` with its products in ``dtype`` (bfloat16).

    The numbers autocast gives, without autograd: the inputs, weights and
    biases rounded to ``dtype`` (into a copy of the stack kept between
    steps); every product, activation and layer gradient in ``dtype``; the
    loss and its weighted delta in the parameters' precision, rounded once;
    the gradient written to ``stack.grad`` in the parameters' precision.
    Dropout masks stay in the parameters' precision (``1 / (1 - p)`` is not
    exact in bfloat16): a masked activation is their product rounded once,
    as under autocast.
    """
    low = stack._buffers.get(("low", dtype))
    if low is None:
        # Ordinary tensors even when the first step runs in inference mode.
        with torch.inference_mode(False):
            low = ParamStack(stack.widths, torch.empty_like(stack.theta, dtype=dtype))
        stack._buffers[("low", dtype)] = low
    low.theta.copy_(stack.theta)
    rounded = _float_loss(loss, stack.theta.dtype)
    value = low.hand_step(x.to(dtype), y, scale, activation, rounded, masks, smoothing)
    stack.grad.copy_(low.grad)
    return value


@functools.cache
def bf16_step_slowdown(widths: tuple[int, ...], batch_size: int) -> float:
    """Time of a bfloat16 training step of this network over a float32 one.

    The steps the fit would take, both through the hand-derived step (the
    bfloat16 one through :func:`low_precision_step`), on ``batch_size`` rows
    of ``widths[0]`` features, on the CPU's current threads. Native bfloat16
    instructions make the products faster, but the casts come on top, so
    whether the step gains depends on the network: measured once per process
    and shape, in about a tenth of a second for typical networks.

    Runs of consecutive steps in each precision alternate, and the median of
    the rounds' ratios is returned: the best of single steps timed one
    precision after the other read 0.80-1.01x on a network whose fits took
    1.08-1.10x in bfloat16 (Intel Xeon with AMX, 2026-12-08).
    """
    g = torch.Generator().manual_seed(0)
    n = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    theta = 0.1 * torch.randn(1, n + sum(widths[1:]), generator=g)
    stack = ParamStack(widths, theta)
    x = torch.randn(1, batch_size, widths[0], generator=g)
    y = torch.randn(1, batch_size, widths[-1], generator=g)
    loss, scale = _LOSSES["squared_error"], 1.0 / batch_size

    def fp32() -> None:
        stack.hand_step(x, y, scale, "relu", loss, None)

    def bf16() -> None:
        low_precision_step(stack, x, y, scale, "relu", loss, None, torch.bfloat16)

    def run(fn: Callable[[], None], steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return time.perf_counter() - start

    # Enough steps a run for about 10 ms, at least 2 and at most 10.
    step = max(run(fp32, 2), run(bf16, 2)) / 2
    steps = min(10, max(2, int(0.01 / max(step, 1e-9))))
    run(fp32, steps), run(bf16, steps)
    times: dict[Callable[[], None], list[float]] = {fp32: [], bf16: []}
    for r in range(6):  # each precision first in half the rounds
        for fn in (fp32, bf16) if r % 2 == 0 else (bf16, fp32):
            times[fn].append(run(fn, steps))
    ratios = [b / f for b, f in zip(times[bf16], times[fp32], strict=True)]
    return statistics.median(ratios)
