"""How many CPU threads a step gets."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

# Below this many multiply-adds per step, one CPU thread is faster: waking and
# spinning OpenMP workers costs more than they save, and idle spinners starve
# the main thread (measured 10-50x slowdowns for tiny networks on a busy
# 2-core machine).
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
