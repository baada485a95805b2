"""How many CPU threads a step gets.

OpenMP workers that wait at a barrier spin. While every core is ours that is
the fastest way to wait; when another busy process holds a core, a spinning
worker and the thread it waits for take turns on the remaining ones and a fit
slows 4-60x (measured on 2 cores, for sknn_large and for sklearn's OpenBLAS
alike). So a training call asks at its start how many cores are busy with
other work and uses only the idle ones (asking again between epochs while it
leaves any out), and tiny steps use one thread.
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
# a process that only blinked does not cost us a thread. A read that sees no
# other task ends the probe: no later one can count for less.
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
        if others == 0:
            break
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


# While a call runs on fewer threads than torch's because other work was busy,
# it asks again between epochs, at most this often (seconds): a process that
# was runnable for a few milliseconds at the start costs an epoch, not a fit.
_RECHECK_S = 0.25


class TrainingThreads:
    """The threads of one training call; a context manager.

    On entry: one thread below ``limit`` multiply-adds per step, otherwise
    as many of torch's threads as there are cores no other process is busy
    on. On exit, torch's own count comes back.

    Parameters
    ----------
    work : float
        Multiply-adds per training step.
    device : torch.device
        Where the call trains; accelerators are left alone.
    limit : float, default=_SMALL_WORK
        Work under which one thread is faster.
    """

    def __init__(self, work: float, device: torch.device, limit: float = _SMALL_WORK):
        self.on_cpu = device.type == "cpu"
        self.small = work <= limit
        # torch's count before the call, and the one the call runs on.
        self.before = self.threads = 0
        self.asked = 0.0

    def _use(self, n: int) -> None:
        if n != self.threads:
            torch.set_num_threads(n)
            self.threads = n

    def __enter__(self) -> TrainingThreads:
        if self.on_cpu:
            self.before = self.threads = torch.get_num_threads()
            self.asked = time.monotonic()
            self._use(1 if self.small else idle_cores(self.before))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.on_cpu and self.threads != self.before:
            torch.set_num_threads(self.before)

    def recheck(self) -> None:
        """Between epochs: while cores were left out as busy, ask again."""
        if self.small or self.threads >= self.before:
            return
        now = time.monotonic()
        if now - self.asked >= _RECHECK_S:
            self.asked = now
            self._use(idle_cores(self.before))


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
