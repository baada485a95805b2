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


# The instruction sets that decide how fast float32 and bfloat16 products can
# run: AVX2 / AVX-512 for float32, AVX512-BF16 or AMX for native bfloat16.
_REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> dict[str, bool]:
    """Return which of the instruction sets that matter here this CPU has.

    Returns
    -------
    dict of str to bool
        ``avx2``, ``avx512f``, ``avx512_bf16`` and every ``amx_*`` flag
        (reported even when absent), read from ``/proc/cpuinfo``; empty where
        that file is missing (not Linux).
    """
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.startswith("flags")), "")
    except OSError:
        return {}
    present = set(line.split(":", 1)[-1].split())
    names = list(_REPORTED_FLAGS)
    names += sorted(f for f in present if f.startswith("amx_") and f not in names)
    return {name: name in present for name in names}


def native_bf16(flags: dict[str, bool]) -> list[str]:
    """The flags among ``flags`` that give native bfloat16 arithmetic.

    Returns
    -------
    list of str
        Empty when the CPU would emulate bfloat16 (convert to float32 and
        back around every product), which makes bf16 training slower.
    """
    return [f for f in _NATIVE_BF16_FLAGS if flags.get(f)]


def cpu_line(env: dict[str, Any]) -> str:
    """One line that identifies the machine a run measured.

    Parameters
    ----------
    env : dict
        What :func:`environment` returned.

    Returns
    -------
    str
        CPU model, cores, flags, torch and sklearn versions, threads, date.
    """
    flags = " ".join(
        f"{name}={'yes' if has else 'no'}" for name, has in env["cpu_flags"].items()
    )
    v = env["versions"]
    return (
        f"CPU: {env['cpu']} ({env['cpu_cores']} cores) | flags: {flags} |"
        f" torch {v['torch']} (capability {env['torch_cpu_capability']},"
        f" {env['torch_threads']} threads) | scikit-learn {v['scikit-learn']} |"
        f" {env['date']} {env.get('time', '')}".rstrip()
    )


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
        JSON-ready facts: date, CPU model, core count and instruction-set
        flags, load average, torch thread count, GPU name when ``device`` is
        CUDA, versions, command.
    """
    env: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "time": _dt.datetime.now().strftime("%H:%M"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "load_average_start": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ.get(k) for k in _THREAD_VARS if k in os.environ},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": library_versions(),
        "git": git_state(),
        "command": " ".join(["python", *sys.argv]),
    }
    env["native_bf16"] = native_bf16(env["cpu_flags"])
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


# The competing process's body: it spins on one core and ends by itself at its
# deadline, so that a benchmark killed half-way leaves nothing running.
_SPIN = {
    "python": "import time\nend = time.monotonic() + {seconds}\n"
    "while time.monotonic() < end:\n    pass\n",
    "numpy": "import time\nimport numpy as np\na = np.ones((256, 256))\n"
    "end = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n"
    "    a @ a\n",
}


class CompetingProcess:
    """One busy process on one core for the length of a ``with`` block.

    Parameters
    ----------
    kind : {"python", "numpy"}
        A pure-Python spin loop, or a loop of small single-threaded matrix
        products (memory and vector units busy as well).
    seconds : float
        Upper bound on its life: it stops by itself after that long.
    """

    def __init__(self, kind: str = "python", seconds: float = 600.0) -> None:
        self.kind = kind
        self.seconds = seconds
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> CompetingProcess:
        # One BLAS thread: the competitor is meant to take one core, not all.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        code = _SPIN[self.kind].format(seconds=self.seconds)
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env)
        # Let it start spinning (numpy's import takes a moment) before timing.
        time.sleep(0.5 if self.kind == "numpy" else 0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


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
