"""Helpers shared by the benchmark scripts: environment facts, timing, tables.

Nothing here imports scikit-learn or skorch, so that both scripts can report
their environment before the heavier imports happen.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_LIBRARIES = ("sknn_large", "torch", "scikit-learn", "numpy", "scipy", "skorch")
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def cpu_model() -> str:
    """Return the CPU model name as ``lscpu`` reports it.

    Returns
    -------
    str
        The model name, or :func:`platform.processor` when ``lscpu`` is absent.
    """
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def library_versions() -> dict[str, str]:
    """Return the installed version of every library the benchmarks touch.

    Returns
    -------
    dict of str to str
        Distribution name to version, ``"not installed"`` when missing.
    """
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state() -> dict[str, Any]:
    """Return the checkout's commit and the engine files with local changes.

    Returns
    -------
    dict
        ``commit`` (or ``None`` outside a git checkout) and ``modified``, the
        paths under ``sknn_large/`` that differ from the commit.
    """
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=True, cwd=root
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--", "sknn_large") or ""
    return {
        "commit": (git("rev-parse", "--short", "HEAD") or "").strip() or None,
        "modified": [line[3:] for line in status.splitlines()],
    }


def environment(device: torch.device) -> dict[str, Any]:
    """Describe the machine, the libraries and the command line of this run.

    Parameters
    ----------
    device : torch.device
        The device the run measures.

    Returns
    -------
    dict
        JSON-ready facts: date, CPU model and core count, load average, torch
        thread count, GPU name when ``device`` is CUDA, versions, command.
    """
    env: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ.get(k) for k in _THREAD_VARS if k in os.environ},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": library_versions(),
        "git": git_state(),
        "command": " ".join(["python", *sys.argv]),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def build_reference_mlp(
    n_in: int, hidden: Sequence[int], n_out: int, *, seed: int
) -> nn.Sequential:
    """Build ``Linear -> ReLU`` blocks and a linear head, torch's default init.

    Parameters
    ----------
    n_in, n_out : int
        Input features and output units.
    hidden : sequence of int
        Hidden layer widths.
    seed : int
        Seed of the (forked) global torch generator used by the default init.

    Returns
    -------
    torch.nn.Sequential
        The untrained network, on the CPU, in float32.
    """
    widths = [n_in, *hidden]
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], n_out))
    return nn.Sequential(*layers)


def mlp_parameters(widths: Sequence[int]) -> int:
    """Weights and biases of a fully connected network with these layer widths.

    Parameters
    ----------
    widths : sequence of int
        Input width, hidden widths, output width.

    Returns
    -------
    int
        ``sum((a + 1) * b)`` over consecutive widths ``a, b``.
    """
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:], strict=False))


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Run ``fn`` once and return (wall seconds, its result), device-synchronised.

    Parameters
    ----------
    fn : callable
        The work to time.
    device : torch.device
        Synchronised before the clock starts and before it stops.

    Returns
    -------
    seconds : float
        Elapsed wall-clock time.
    result : object
        What ``fn`` returned.
    """
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def median(values: Iterable[float]) -> float:
    """Median of ``values`` (the statistic every table reports)."""
    return float(statistics.median(list(values)))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as a GitHub-flavoured Markdown table.

    Parameters
    ----------
    headers : sequence of str
        Column titles.
    rows : sequence of sequences
        Cell values, converted with ``str``.

    Returns
    -------
    str
        The table, one line per row, without a trailing newline.
    """
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number for a table cell; ``None`` becomes an em dash."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def fmt_rate(value: float | None) -> str:
    """Format a rate (samples/s, rows/s) with k/M suffixes."""
    if value is None:
        return "—"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"
