"""What this CPU does well: native bfloat16, narrow products; measured once."""

from __future__ import annotations

import functools
import time
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


def _best_time(a: torch.Tensor, b: torch.Tensor, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


# Output widths of the products checked by :func:`narrow_products_transposed`.
NARROW = range(2, 16)


@functools.cache
def narrow_products_transposed(dtype: torch.dtype = torch.float32) -> bool:
    """Whether ``A @ B`` for a narrow ``B`` (2-15 columns) runs faster transposed.

    Some BLAS builds take a slow path for a product whose result has a handful
    of columns, the shape of every output layer of a classifier with a few
    classes, yet are fast for the same product transposed, ``(B.T @ A.T).T``
    (MKL on an AMD EPYC: 3-5x, measured). Timed once per process and dtype,
    on one thread, in about a millisecond: the choice follows the machine,
    not a rule.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=g, dtype=dtype)
    b = torch.randn(256, 5, generator=g, dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _best_time(a, b, 2)
        plain = _best_time(a, b)
        bt, at = b.T, a.T
        _best_time(bt, at, 2)
        flipped = _best_time(bt, at)
    finally:
        torch.set_num_threads(before)
    return flipped < 0.8 * plain
