"""Training from a memory-mapped file larger than one wants in RAM.

Creates a ``.npy`` file of random float32 features (``--size-gb``, default 8)
in a temporary directory, drops it from the page cache (so the first epoch
reads from disk), and trains ``LargeMLPRegressor`` for a few epochs in fresh
child processes:

* ``memmap``: from ``np.load(path, mmap_mode="r")``, the whole file;
* ``memmap-small``: from the first ``--ram-gb`` of the same file, memory-mapped;
* ``ram``: the same rows as ``memmap-small``, read into RAM first.

Each child reports its peak resident memory (``VmHWM``, reset after the
imports; the in-RAM data set counts for ``ram``), the peak of its anonymous
memory (sampled), and its throughput in samples per second: over the whole
``fit`` (validation included) and over the training epochs alone (the
comparison with RAM; the ``ram`` child reads its rows into memory before
``fit``, outside the timings). The file is deleted at the end.

Usage::

    python benchmarks/bench_memmap.py                 # 8 GB file, 2 GB in RAM
    python benchmarks/bench_memmap.py --size-gb 4 --ram-gb 1 --epochs 2

scikit-learn's input validation reads every page of a memory-mapped array at
once (its finite check sums the array); by default the children apply the
block-wise check proposed for ``sknn_large`` (see ``docs/scaling_out.rst``).
``--sklearn-validation`` measures the unpatched path instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

_GB = 1e9


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _evict(path: Path) -> None:
    """Drop a file's pages from the page cache (clean pages only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def make_file(directory: Path, size_gb: float, n_features: int, seed: int = 0):
    """Write ``X.npy`` (float32) and ``y.npy`` (a noisy linear target)."""
    n_rows = int(size_gb * _GB // (4 * n_features))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n_features).astype(np.float32) / np.sqrt(n_features)
    X = np.lib.format.open_memmap(
        directory / "X.npy", mode="w+", dtype=np.float32, shape=(n_rows, n_features)
    )
    y = np.empty(n_rows, dtype=np.float32)
    step = max(1, (64 * 2**20) // (4 * n_features))
    for s in range(0, n_rows, step):
        block = rng.standard_normal((min(step, n_rows - s), n_features), np.float32)
        X[s : s + len(block)] = block
        y[s : s + len(block)] = np.tanh(block @ w) + 0.1 * rng.standard_normal(
            len(block), np.float32
        )
    X.flush()
    del X
    np.save(directory / "y.npy", y)
    _evict(directory / "X.npy")
    return n_rows


class _Sampler(threading.Thread):
    """Samples the process's anonymous resident memory every few ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _status_mb("RssAnon"))
            time.sleep(0.01)


class _TimedFeed:
    """Wraps a data feed and records when each epoch starts and ends."""

    def __init__(self, feed, marks: list):
        self._feed, self._marks = feed, marks

    def __getattr__(self, name):
        return getattr(self._feed, name)

    def batches(self, generator, shuffle):
        start = time.perf_counter()
        yield from self._feed.batches(generator, shuffle)
        self._marks.append((start, time.perf_counter()))


def _time_epochs(marks: list) -> None:
    """Make the estimators' feeds report epoch times into ``marks``."""
    import sknn_large._estimator._plan as plan

    make_feed = plan.make_feed
    plan.make_feed = lambda *a, **k: _TimedFeed(make_feed(*a, **k), marks)


def child(args) -> None:
    """One measured fit, in a fresh process; prints one JSON line."""
    import torch

    from sknn_large import LargeMLPRegressor

    warnings.simplefilter("ignore")
    if not args.sklearn_validation:
        sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
        from test_scaling_memmap import install_validation_shim

        install_validation_shim()
    if args.threads:
        torch.set_num_threads(args.threads)
    directory = Path(args.dir)
    X = np.load(directory / "X.npy", mmap_mode="r")
    y = np.load(directory / "y.npy")
    rows = args.rows or X.shape[0]
    X, y = X[:rows], y[:rows]
    params = dict(
        hidden_layer_sizes=(args.hidden,),
        batch_size=args.batch_size,
        max_iter=args.epochs,
        tol=0.0,
        n_iter_no_change=args.epochs + 1,
        random_state=0,
    )
    LargeMLPRegressor(**{**params, "max_iter": 1}).fit(X[:2048], y[:2048])
    marks: list = []
    _time_epochs(marks)
    Path("/proc/self/clear_refs").write_text("5")  # restart VmHWM from here
    base = _status_mb("VmRSS")
    sampler = _Sampler()
    sampler.start()
    load_s = 0.0
    if args.mode == "ram":
        # The in-memory comparison: read the rows with plain file I/O, so that
        # only the array itself (no mapped pages) counts in resident memory.
        t = time.perf_counter()
        X = np.fromfile(
            directory / "X.npy", X.dtype, count=X.size, offset=X.offset
        ).reshape(X.shape)
        load_s = time.perf_counter() - t
    t = time.perf_counter()
    est = LargeMLPRegressor(**params).fit(X, y)
    fit_s = time.perf_counter() - t
    sampler.stop.set()
    sampler.join()
    epoch_s = [round(e - b, 2) for b, e in marks]
    result = dict(
        mode=args.mode,
        rows=rows,
        data_gb=round(X.nbytes / _GB, 2),
        epochs=est.n_iter_,
        fit_s=round(fit_s, 1),
        load_s=round(load_s, 1),
        before_first_epoch_s=round(marks[0][0] - t, 1),
        epoch_s=epoch_s,
        samples_per_s=round(rows * est.n_iter_ / fit_s),
        epoch_samples_per_s=round(rows * len(epoch_s) / sum(epoch_s)),
        rss_before_mb=round(base),
        peak_rss_mb=round(_status_mb("VmHWM")),
        peak_anon_mb=round(sampler.peak),
        final_loss=round(float(est.loss_), 4),
        torch_threads=torch.get_num_threads(),
    )
    print(json.dumps(result), flush=True)


def _run_child(args, mode: str, rows: int | None, directory: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--dir",
        str(directory),
        "--rows",
        str(rows or 0),
        "--epochs",
        str(args.epochs),
        "--hidden",
        str(args.hidden),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    if args.sklearn_validation:
        cmd.append("--sklearn-validation")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=8.0)
    parser.add_argument("--ram-gb", type=float, default=2.0)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: torch default")
    parser.add_argument("--tmp", default=None, help="directory for the file")
    parser.add_argument("--sklearn-validation", action="store_true")
    parser.add_argument("--child", dest="mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode is not None:
        child(args)
        return
    directory = Path(tempfile.mkdtemp(prefix="sknn_memmap_", dir=args.tmp))
    try:
        t = time.perf_counter()
        n_rows = make_file(directory, args.size_gb, args.features)
        print(
            f"# wrote {n_rows} x {args.features} float32 "
            f"({args.size_gb:g} GB) in {time.perf_counter() - t:.0f} s to {directory}",
            flush=True,
        )
        small = min(n_rows, int(args.ram_gb * _GB // (4 * args.features)))
        results = [_run_child(args, "memmap", None, directory)]
        print(json.dumps(results[-1]), flush=True)
        _evict(directory / "X.npy")
        for mode in ("memmap-small", "ram"):
            results.append(_run_child(args, mode, small, directory))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ram = results[-1]["epoch_samples_per_s"]
    print(
        "\nmode          data GB  peak RSS MB  peak anon MB  fit samples/s"
        "  epoch samples/s  vs RAM"
    )
    for r in results:
        print(
            f"{r['mode']:<13} {r['data_gb']:>7} {r['peak_rss_mb']:>12} "
            f"{r['peak_anon_mb']:>13} {r['samples_per_s']:>14} "
            f"{r['epoch_samples_per_s']:>16} {r['epoch_samples_per_s'] / ram:>7.0%}"
        )


if __name__ == "__main__":
    main()
