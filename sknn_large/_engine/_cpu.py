"""What this CPU does well: native bfloat16, narrow products; measured once."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Instruction-set flags (Linux /proc/cpuinfo names) that compute bf16 natively.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty if unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 arithmetic instructions."""
    return any(flag in cpu_flags() for flag in _BF16_FLAGS)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``fn``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _flipped_wins(plain: Callable[[], object], flipped: Callable[[], object]) -> bool:
    """Whether ``flipped`` beats ``plain`` by 20 %, best of 5 each on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for fn in (plain, flipped):
            best_of(fn, 2)  # warm-up
            times.append(best_of(fn, 5))
    finally:
        torch.set_num_threads(before)
    return times[1] < 0.8 * times[0]


def _operand(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    """A tensor to time products on: values in [0.5, 1.5], no zero or denormal.

    BLAS speed does not depend on the values; drawing them at random cost a
    process's first fit about 1 ms per 256 x 256 float64 matrix.
    """
    return torch.linspace(0.5, 1.5, math.prod(shape), dtype=dtype).view(*shape)


# Output widths whose products :func:`narrow_products_transposed` checks: a
# single member's products (mm, where one column is a fast matrix-vector
# product), and a stack's (bmm, slow for a single column too).
NARROW = range(2, 16)
NARROW_BATCHED = range(1, 16)


@functools.cache
def narrow_products_transposed(
    dtype: torch.dtype = torch.float32, batched: bool = False
) -> bool:
    """Whether ``A @ B`` for a narrow ``B`` (2-15 columns) runs faster transposed.

    Some BLAS builds take a slow path for a product whose result has a handful
    of columns, the shape of every output layer of a classifier with a few
    classes, yet are fast for the same product transposed, ``(B.T @ A.T).T``
    (MKL on an AMD EPYC: 3-5x, measured; for a stack of 4 members, ``bmm``,
    also with one column: 4-10x). Timed once per process, dtype and rank, on
    one thread, in about a millisecond: the choice follows the machine, not a
    rule.
    """
    lead, cols = ((4,), 1) if batched else ((), 5)
    a = _operand(*lead, 256, 256, dtype=dtype)
    b = _operand(*lead, 256, cols, dtype=dtype)
    bt, at = b.transpose(-1, -2), a.transpose(-1, -2)
    return _flipped_wins(lambda: torch.matmul(a, b), lambda: torch.matmul(bt, at))


@functools.cache
def narrow_grads_transposed(dtype: torch.dtype = torch.float32) -> bool:
    """Whether a narrow layer's weight gradient is faster computed transposed.

    The gradient ``X.T @ D`` of a layer with a handful of outputs (``D`` is
    ``(B, 2-15)``, ``X`` the layer's ``(B, fan_in)`` input) has the narrow
    result shape too, but reads ``X`` transposed, and BLAS builds that are
    fast for the forward product can still be slow here (MKL on an Intel
    Xeon: 29 us for 256 x 256 x 5 where ``D.T @ X`` and a copy back into
    ``(fan_in, 5)`` take 11 us). Timed once per process and dtype, on one
    thread, for one member's products, like :func:`narrow_products_transposed`.
    """
    x = _operand(256, 256, dtype=dtype)
    d_t = _operand(5, 256, dtype=dtype)
    out = torch.empty(256, 5, dtype=dtype)
    out_t = torch.empty(5, 256, dtype=dtype)

    def plain() -> None:
        torch.mm(x.T, d_t.T, out=out)

    def flipped() -> None:
        torch.mm(d_t, x, out=out_t)
        out.copy_(out_t.T)

    return _flipped_wins(plain, flipped)
