"""How many CPU threads a step gets.

OpenMP workers that wait at a barrier spin. While every core is ours that is
the fastest way to wait; when another busy process holds a core, a spinning
worker and the thread it waits for take turns on the remaining ones and a fit
slows 4-60x (measured on 2 cores, for sknn_large and for sklearn's OpenBLAS
alike). So a training call asks, once at its start, how many cores are busy
with other work and uses only the idle ones, and tiny steps use one thread.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch
from torch import nn

# Below this many multiply-adds per step, one CPU thread is faster: waking and
# spinning OpenMP workers costs more than they save, and idle spinners starve
# the main thread (measured 10-50x slowdowns for tiny networks on a busy
# 2-core machine).
_SMALL_WORK = 1e7
# Reads of the run queue, a millisecond apart; the least busy one counts, so
# a process that only blinked does not cost us a thread.
_SAMPLES = 3


def _own_runnable() -> int:
    """Runnable threads of this process (its OpenMP workers spin runnable)."""
    count = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            # The state follows the parenthesised command name.
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(1, count)


def _runnable_others() -> int | None:
    """Runnable tasks on the machine outside this process (None if unknown)."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
    except OSError:
        return None
    running = int(fields[3].split("/")[0])
    return max(0, running - _own_runnable())


def idle_cores(limit: int) -> int:
    """How many of ``limit`` threads' cores no other process is using now."""
    busy = []
    for i in range(_SAMPLES):
        others = _runnable_others()
        if others is None:
            return limit
        busy.append(others)
        if i + 1 < _SAMPLES:
            time.sleep(0.001)
    cores = os.cpu_count() or limit
    return max(1, min(limit, cores - min(busy)))


@contextlib.contextmanager
def _num_threads(n: int):
    before = torch.get_num_threads()
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def training_threads(work: float, device: torch.device, limit: float = _SMALL_WORK):
    """Threads for a training call whose steps take ``work`` multiply-adds.

    One thread below ``limit``; otherwise as many of torch's threads as there
    are cores no other process is busy on. Not for accelerators.
    """
    if device.type != "cpu":
        return contextlib.nullcontext()
    if work <= limit:
        return _num_threads(1)
    return _num_threads(idle_cores(torch.get_num_threads()))


def single_threaded_below(
    work: float, device: torch.device, limit: float = _SMALL_WORK
):
    """Run torch on one CPU thread while ``work`` multiply-adds is under ``limit``."""
    if device.type != "cpu" or work > limit:
        return contextlib.nullcontext()
    return _num_threads(1)


def threads_for(module: nn.Module, rows: int):
    """:func:`single_threaded_below` for ``rows`` through ``module``."""
    n_params = sum(p.numel() for p in module.parameters())
    device = next(module.parameters()).device
    return single_threaded_below(rows * n_params, device)
