"""Issue 3, CPU case: sknn_large against scikit-learn and skorch on one dataset.

50,000 x 50 rows (``make_classification``, 5 classes), an 80/20 split, the
network 50 -> 256 -> 256 -> 5 (ReLU), batch 256, 5 epochs of Adam at 1e-3 and
the same seed for everyone. Every fit is timed end to end (``fit`` call only)
and repeated; cases run round-robin so that load from other processes spreads
over all of them. The table gives the median, the ratio to sknn_large's
default, and the test accuracy. Then ``predict_proba`` on 1,000,000 rows runs
in a fresh subprocess per model, which reports rows/s and the increase of the
process's peak resident memory.

Run ``python benchmarks/bench_cpu.py`` (about 3-5 minutes on 2 idle cores),
``--quick`` for a seconds-long smoke version, ``--profile`` to add a
torch.profiler breakdown of one sknn_large epoch and per-step prototypes of
engine changes.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    environment,
    fmt,
    fmt_rate,
    format_table,
    median,
)


@dataclass(frozen=True)
class Sizes:
    """Problem and measurement sizes of one run."""

    n_samples: int = 50_000
    n_features: int = 50
    n_informative: int = 30
    n_classes: int = 5
    hidden: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    epochs: int = 5
    lr: float = 1e-3
    alpha: float = 1e-4
    test_size: float = 0.2
    seed: int = 0
    repeats: int = 3
    predict_rows: int = 1_000_000
    predict_repeats: int = 3


FULL = Sizes()
QUICK = replace(
    FULL, n_samples=1_500, epochs=1, repeats=1, predict_rows=5_000, predict_repeats=1
)


@dataclass
class Case:
    """One row of the training table."""

    name: str
    library: str
    data_dtype: str
    train_precision: str
    make: Callable[[], Any]
    times: list[float]
    cpu_times: list[float] = field(default_factory=list)
    accuracy: float | None = None


def make_data(sizes: Sizes) -> tuple[np.ndarray, ...]:
    """Return ``X_train, X_test, y_train, y_test`` in float64, fixed seed.

    Parameters
    ----------
    sizes : Sizes
        Rows, features, classes and seed.

    Returns
    -------
    tuple of ndarray
        The split, features in float64 as ``make_classification`` returns them.
    """
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(
        n_samples=sizes.n_samples,
        n_features=sizes.n_features,
        n_informative=sizes.n_informative,
        n_redundant=0,
        n_classes=sizes.n_classes,
        random_state=sizes.seed,
    )
    return tuple(
        train_test_split(
            X, y, test_size=sizes.test_size, random_state=sizes.seed, stratify=y
        )
    )


def _mlp_params(sizes: Sizes) -> dict[str, Any]:
    # Identical for sklearn and sknn_large: all epochs run (tol=0, patience off).
    return dict(
        hidden_layer_sizes=sizes.hidden,
        batch_size=sizes.batch_size,
        max_iter=sizes.epochs,
        learning_rate_init=sizes.lr,
        alpha=sizes.alpha,
        solver="adam",
        random_state=sizes.seed,
        tol=0.0,
        n_iter_no_change=10**6,
    )


def build_cases(sizes: Sizes, with_skorch: bool) -> list[Case]:
    """The estimators to compare, each with the dtype of the data it gets.

    Parameters
    ----------
    sizes : Sizes
        Shared settings.
    with_skorch : bool
        Include the skorch row (needs skorch installed).

    Returns
    -------
    list of Case
        sknn_large first: the ratios are relative to it.
    """
    from _reference import TorchLoopClassifier, make_skorch
    from sklearn.neural_network import MLPClassifier

    from sknn_large import LargeMLPClassifier

    p = _mlp_params(sizes)
    cases = [
        Case(
            "sknn_large",
            "sknn_large",
            "float32",
            "float32 (auto)",
            lambda: LargeMLPClassifier(device="cpu", **p),
            [],
        ),
        Case(
            "sknn_large bf16",
            "sknn_large",
            "float32",
            "bf16 autocast",
            lambda: LargeMLPClassifier(device="cpu", precision="bfloat16", **p),
            [],
        ),
        Case(
            "sknn_large",
            "sknn_large",
            "float64",
            "float32 (auto)",
            lambda: LargeMLPClassifier(device="cpu", **p),
            [],
        ),
        Case(
            "sklearn MLP",
            "sklearn",
            "float32",
            "float32",
            lambda: MLPClassifier(**p),
            [],
        ),
        Case(
            "sklearn MLP",
            "sklearn",
            "float64",
            "float64",
            lambda: MLPClassifier(**p),
            [],
        ),
    ]
    if with_skorch:
        cases.append(
            Case(
                "skorch default loading",
                "skorch",
                "float32",
                "float32",
                lambda: make_skorch(
                    sizes.n_features,
                    sizes.hidden,
                    sizes.n_classes,
                    batch_size=sizes.batch_size,
                    epochs=sizes.epochs,
                    lr=sizes.lr,
                    seed=sizes.seed,
                ),
                [],
            )
        )
    cases.append(
        Case(
            "plain torch loop (reference)",
            "torch",
            "float32",
            "float32",
            lambda: TorchLoopClassifier(
                sizes.hidden, sizes.batch_size, sizes.epochs, sizes.lr, 0.0, sizes.seed
            ),
            [],
        )
    )
    return cases


def _fit_once(
    case: Case, X: np.ndarray, y: np.ndarray, seed: int
) -> tuple[float, float, Any]:
    # Returns (wall s, CPU s of this process, all threads, estimator).
    est = case.make()
    # skorch shuffles with torch's global generator: seed it, then restore it.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        est.fit(X, y)
        return time.perf_counter() - start, time.process_time() - cpu, est


def run_training(
    cases: list[Case], data: tuple[np.ndarray, ...], sizes: Sizes
) -> dict[str, Any]:
    """Fit every case ``sizes.repeats`` times, round-robin; fill times/accuracy.

    Returns
    -------
    dict
        The last fitted estimator of each library/dtype (for prediction) and
        the load average seen before each round.
    """
    X_train, X_test, y_train, y_test = data
    arrays = {
        "float32": (X_train.astype(np.float32), X_test.astype(np.float32)),
        "float64": (X_train, X_test),
    }
    fitted: dict[str, Any] = {}
    loads = []
    # Untimed warm-up on a slice: lazy imports, thread pools, kernel dispatch.
    warm = slice(0, 4 * sizes.batch_size)
    for case in cases:
        _fit_once(case, arrays[case.data_dtype][0][warm], y_train[warm], sizes.seed)
    for _ in range(sizes.repeats):
        loads.append(os.getloadavg()[0])
        for case in cases:
            Xtr, Xte = arrays[case.data_dtype]
            seconds, cpu_seconds, est = _fit_once(case, Xtr, y_train, sizes.seed)
            case.times.append(seconds)
            case.cpu_times.append(cpu_seconds)
            case.accuracy = float(np.mean(est.predict(Xte) == y_test))
            fitted[f"{case.name}|{case.data_dtype}"] = est
    return {"fitted": fitted, "load_before_rounds": loads}


def training_rows(cases: list[Case], n_train: int, epochs: int) -> list[dict[str, Any]]:
    """Summarise each case: median and min time, ratio to sknn_large, accuracy."""
    base = median(cases[0].times)
    base_cpu = median(cases[0].cpu_times)
    rows = []
    for case in cases:
        med = median(case.times)
        rows.append(
            {
                "case": case.name,
                "library": case.library,
                "data_dtype": case.data_dtype,
                "train_precision": case.train_precision,
                "fit_s_median": med,
                "fit_s_min": min(case.times),
                "fit_s_all": case.times,
                "cpu_s_median": median(case.cpu_times),
                "cpu_ratio_vs_sknn_large": median(case.cpu_times) / base_cpu,
                "ratio_vs_sknn_large": med / base,
                "samples_per_s": n_train * epochs / med,
                "test_accuracy": case.accuracy,
            }
        )
    return rows


def training_table(rows: list[dict[str, Any]], repeats: int) -> str:
    """Markdown table of :func:`training_rows`."""
    headers = [
        "case",
        "data dtype",
        "trains in",
        f"fit s (median of {repeats})",
        "min s",
        "time / sknn_large",
        "CPU s (median)",
        "CPU s / sknn_large",
        "samples/s",
        "test acc",
    ]
    body = [
        [
            r["case"],
            r["data_dtype"],
            r["train_precision"],
            fmt(r["fit_s_median"]),
            fmt(r["fit_s_min"]),
            fmt(r["ratio_vs_sknn_large"]) + "x",
            fmt(r["cpu_s_median"]),
            fmt(r["cpu_ratio_vs_sknn_large"]) + "x",
            fmt_rate(r["samples_per_s"]),
            fmt(r["test_accuracy"], 4),
        ]
        for r in rows
    ]
    return format_table(headers, body)


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 3's targets: >= 3x sklearn and >= 2x skorch at equal accuracy.

    Judged for sknn_large's default row and, separately, for its bfloat16
    row; against sklearn's float32-data row (the data sknn_large gets) and
    its float64-data row; on median wall time and on median CPU time. Equal
    accuracy means within one percentage point.

    Returns
    -------
    dict
        ``"<sknn row> vs <reference>"`` -> speed-ups, the factor needed,
        the accuracy gap and whether the target is met (on wall time).
    """
    candidates = {
        "sknn_large": rows[0],
        "sknn_large bf16": next(r for r in rows if r["case"] == "sknn_large bf16"),
    }
    wanted = {
        "sklearn float32 data": ("sklearn", "float32", 3.0),
        "sklearn float64 data": ("sklearn", "float64", 3.0),
        "skorch": ("skorch", "float32", 2.0),
    }
    targets = {}
    for cand_name, cand in candidates.items():
        for key, (lib, dtype, factor) in wanted.items():
            match = [
                r for r in rows if r["library"] == lib and r["data_dtype"] == dtype
            ]
            if not match:
                continue
            r = match[0]
            speedup = r["fit_s_median"] / cand["fit_s_median"]
            acc_gap = abs(r["test_accuracy"] - cand["test_accuracy"])
            targets[f"{cand_name} vs {key}"] = {
                "speedup": speedup,
                "cpu_speedup": r["cpu_s_median"] / cand["cpu_s_median"],
                "needed": factor,
                "accuracy_gap_points": 100 * acc_gap,
                "met": bool(speedup >= factor and acc_gap <= 0.01),
            }
    return targets


# ------------------------------------------------------------ hardware floor


def matmul_floor(sizes: Sizes, n_train: int) -> dict[str, dict[str, float]]:
    """Seconds that the training's matrix products alone take, per dtype.

    Every trainer of this network does, per step, the forward product of each
    layer, the weight-gradient product of each layer and the input-gradient
    product of each layer but the first; the rest (activations, loss,
    optimizer, framework) comes on top. Timing exactly those products, at the
    step's shapes and for the run's number of steps, gives a floor that no
    float32 (or bfloat16) implementation on this CPU can beat: the limit the
    hardware puts on the speed-ups.

    Returns
    -------
    dict
        ``{"float32": {...}, "bfloat16": {...}}`` with the best of three
        ``seconds`` and the achieved ``gflops``.
    """
    widths = [sizes.n_features, *sizes.hidden, sizes.n_classes]
    b = sizes.batch_size
    steps = -(-n_train // b) * sizes.epochs
    flops_step = 0
    for i, (k, n) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        products = 2 if i == 0 else 3  # forward, weight grad (+ input grad)
        flops_step += products * 2 * b * k * n
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        gen = torch.Generator().manual_seed(0)
        acts = [torch.randn(b, w, generator=gen).to(dtype) for w in widths]
        weights = [
            torch.randn(k, n, generator=gen).to(dtype)
            for k, n in zip(widths[:-1], widths[1:], strict=True)
        ]

        def step(acts=acts, weights=weights) -> None:
            for i, w in enumerate(weights):
                torch.mm(acts[i], w)  # forward
                torch.mm(acts[i].T, acts[i + 1])  # weight gradient
                if i > 0:
                    torch.mm(acts[i + 1], w.T)  # input gradient

        for _ in range(20):
            step()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best = min(best, time.perf_counter() - t0)
        out[name] = {"seconds": best, "gflops": flops_step * steps / best / 1e9}
    return out


def floor_lines(floor: dict[str, dict[str, float]], rows: list[dict[str, Any]]):
    """Lines saying how fast the targets allow at most, given the floor."""
    lines = []
    for dtype, f in floor.items():
        lines.append(
            f"{dtype}: matrix products alone take {f['seconds']:.3f} s"
            f" ({f['gflops']:.0f} GFLOP/s)"
        )
    for r in rows:
        if r["library"] == "sknn_large":
            dtype = "bfloat16" if "bf16" in r["case"] else "float32"
            share = floor[dtype]["seconds"] / r["fit_s_median"]
            lines.append(
                f"{r['case']} ({r['data_dtype']} data): {100 * share:.0f}% of its"
                f" fit time is the {dtype} products' floor"
            )
            continue
        best = r["fit_s_median"] / floor["float32"]["seconds"]
        lines.append(
            f"any float32 trainer vs {r['case']} ({r['data_dtype']} data):"
            f" at most {best:.2f}x faster (zero overhead above the products)"
        )
    return lines


# ------------------------------------------------------------------ predicting


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak resident memory of this process over a ``with`` block (Linux).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``) where
    allowed and reads ``VmHWM`` afterwards; otherwise samples the resident
    size every millisecond from a background thread.
    """

    def __enter__(self) -> PeakRss:
        self.before = _rss_bytes()
        self.peak = self.before
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self._hwm:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.peak = int(line.split()[1]) * 1024
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.method = "VmHWM" if self._hwm else "sampled RSS"

    @property
    def increase_mb(self) -> float:
        """Peak minus resident size at entry, in MiB."""
        return (self.peak - self.before) / 2**20


def predict_worker(model_path: str, rows: int, n_features: int, repeats: int) -> None:
    """Subprocess body: load a model, time ``predict_proba``, print JSON.

    Parameters
    ----------
    model_path : str
        A pickled fitted estimator.
    rows, n_features : int
        Shape of the float32 input drawn from a standard normal.
    repeats : int
        Timed calls; the first one also measures peak memory.
    """
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    X = np.random.default_rng(1).standard_normal((rows, n_features), dtype=np.float32)
    model.predict_proba(X[:1000])  # warm-up: thread pools, lazy imports
    times, cpu_times = [], []
    for i in range(repeats):
        with PeakRss() as mem:
            start, cpu = time.perf_counter(), time.process_time()
            model.predict_proba(X)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
        if i == 0:
            peak = mem.increase_mb
    out = {
        "rows": rows,
        "seconds_all": times,
        "rows_per_s": rows / median(times),
        "rows_per_cpu_s": rows / median(cpu_times),
        "peak_rss_increase_mb": peak,
        "input_mb": X.nbytes / 2**20,
        "memory_method": mem.method,
    }
    print(json.dumps(out))


def run_prediction(
    fitted: dict[str, Any], sizes: Sizes, threads: int | None
) -> list[dict[str, Any]]:
    """``predict_proba`` on ``sizes.predict_rows`` rows, one subprocess per model.

    Parameters
    ----------
    fitted : dict
        Fitted estimators by ``"case|dtype"``; the float32-data sknn_large and
        sklearn models are used.
    sizes : Sizes
        Rows, features and timed repeats.
    threads : int, optional
        Thread limit handed to the subprocesses.

    Returns
    -------
    list of dict
        One entry per model: rows/s, seconds, peak RSS increase.
    """
    chosen = {
        "sknn_large": fitted["sknn_large|float32"],
        "sklearn MLP": fitted["sklearn MLP|float32"],
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in chosen.items():
            path = os.path.join(tmp, "model.pkl")
            with open(path, "wb") as f:
                pickle.dump(model, f)
            cmd = [
                sys.executable,
                __file__,
                "--predict-worker",
                path,
                "--rows",
                str(sizes.predict_rows),
                "--features",
                str(sizes.n_features),
                "--predict-repeats",
                str(sizes.predict_repeats),
            ]
            if threads is not None:
                cmd += ["--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results.append({"case": name, **res})
    return results


def prediction_table(results: list[dict[str, Any]], repeats: int) -> str:
    """Markdown table of :func:`run_prediction`."""
    headers = [
        "model (float32 input)",
        "rows",
        f"rows/s (median of {repeats})",
        "rows per CPU s",
        "peak RSS increase MiB",
        "input MiB",
    ]
    body = [
        [
            r["case"],
            f"{r['rows']:,}",
            fmt_rate(r["rows_per_s"]),
            fmt_rate(r["rows_per_cpu_s"]),
            fmt(r["peak_rss_increase_mb"], 0),
            fmt(r["input_mb"], 0),
        ]
        for r in results
    ]
    return format_table(headers, body)


# ------------------------------------------------------------------- profiling


def profile_sknn(data: tuple[np.ndarray, ...], sizes: Sizes) -> dict[str, Any]:
    """torch.profiler over one epoch of sknn_large's default fit.

    Returns
    -------
    dict
        The top operators by self CPU time and the per-step wall time.
    """
    from torch.profiler import ProfilerActivity, profile

    from sknn_large import LargeMLPClassifier

    X = data[0].astype(np.float32)
    est = LargeMLPClassifier(device="cpu", **{**_mlp_params(sizes), "max_iter": 1})
    with profile(activities=[ProfilerActivity.CPU]) as prof, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        est.fit(X, data[2])
        seconds = time.perf_counter() - start
    steps = -(-X.shape[0] // sizes.batch_size)
    events = sorted(
        prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True
    )
    total = sum(e.self_cpu_time_total for e in events)
    top = [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "us_per_step": e.self_cpu_time_total / steps,
        }
        for e in events[:12]
    ]
    return {"epoch_s_profiled": seconds, "steps": steps, "top_ops": top}


def _step_prototypes(sizes: Sizes) -> dict[str, Callable[[int], tuple[float, float]]]:
    """Per-step loops that isolate the costs of candidate engine changes."""
    from _reference import train_eager

    from sknn_large._engine._network import build_mlp

    rng = np.random.default_rng(0)
    n = 40 * sizes.batch_size
    X = torch.from_numpy(rng.standard_normal((n, sizes.n_features), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, sizes.n_classes, n))

    def variant(**kw: Any) -> Callable[[int], tuple[float, float]]:
        def go(epochs: int) -> tuple[float, float]:
            net = build_mlp(
                sizes.n_features,
                sizes.hidden,
                sizes.n_classes,
                activation="relu",
                dropout=0.0,
            )
            start, cpu = time.perf_counter(), time.process_time()
            train_eager(
                net,
                X,
                y,
                batch_size=sizes.batch_size,
                epochs=epochs,
                lr=sizes.lr,
                seed=0,
                **kw,
            )
            steps = epochs * 40
            wall = (time.perf_counter() - start) / steps
            return wall, (time.process_time() - cpu) / steps

        return go

    bf16 = torch.bfloat16
    return {
        "plain loop, no penalty": variant(),
        "plain loop, L2 penalty through autograd (as sknn_large)": variant(
            alpha=sizes.alpha
        ),
        "plain loop, L2 as Adam weight_decay + no-grad value": variant(
            alpha=sizes.alpha, l2_in_optimizer=True
        ),
        "plain loop, bf16 autocast, L2 through autograd": variant(
            alpha=sizes.alpha, autocast_dtype=bf16
        ),
        "plain loop, bf16 autocast, L2 as weight_decay": variant(
            alpha=sizes.alpha, autocast_dtype=bf16, l2_in_optimizer=True
        ),
    }


def sknn_step_ms(
    data: tuple[np.ndarray, ...], sizes: Sizes, precision: str
) -> tuple[float, float]:
    """Wall and CPU milliseconds per step of a 1-epoch sknn_large fit."""
    from sknn_large import LargeMLPClassifier

    X = data[0].astype(np.float32)
    params = {**_mlp_params(sizes), "max_iter": 1}
    est = LargeMLPClassifier(device="cpu", precision=precision, **params)
    steps = -(-X.shape[0] // sizes.batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        est.fit(X, data[2])
    wall = time.perf_counter() - start
    return 1e3 * wall / steps, 1e3 * (time.process_time() - cpu) / steps


def prototype_steps(data: tuple[np.ndarray, ...], sizes: Sizes) -> list[dict[str, Any]]:
    """Milliseconds per training step of sknn_large and of each prototype.

    Runs with one torch thread and with the current count; each entry is the
    median of 3 runs (wall and process CPU time per step).

    Returns
    -------
    list of dict
        One entry per (variant, thread count).
    """
    results = []
    before = torch.get_num_threads()
    for threads in sorted({1, before}):
        torch.set_num_threads(threads)
        variants = {
            f"sknn_large fit, precision={p!r}": (
                lambda p=p: sknn_step_ms(data, sizes, p)
            )
            for p in ("auto", "bfloat16")
        }
        for name, go in _step_prototypes(sizes).items():
            variants[name] = lambda go=go: tuple(1e3 * v for v in go(2))
        for name, run in variants.items():
            run()  # warm-up
            walls, cpus = zip(*(run() for _ in range(3)), strict=True)
            results.append(
                {
                    "variant": name,
                    "threads": threads,
                    "wall_ms_per_step": median(walls),
                    "cpu_ms_per_step": median(cpus),
                }
            )
    torch.set_num_threads(before)
    return results


def predict_block_prototype(sizes: Sizes) -> list[dict[str, Any]]:
    """CPU seconds of the network's forward pass over the prediction rows by block.

    sknn_large predicts in blocks of 65536 rows; this times the bare module
    (no validation, no softmax) with several block sizes and with an
    in-place ReLU, one torch thread, to size the engine's block on the CPU.

    Returns
    -------
    list of dict
        ``block_rows``, ``inplace_relu`` and the best CPU seconds of 3 runs.
    """
    from sknn_large._engine._network import build_mlp

    net = build_mlp(
        sizes.n_features, sizes.hidden, sizes.n_classes, activation="relu", dropout=0
    ).eval()
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((sizes.predict_rows, sizes.n_features), dtype=np.float32)

    def inplace(x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(linear):
            x = torch.addmm(layer.bias, x, layer.weight.t())
            if i < len(linear) - 1:
                x.relu_()
        return x

    def cpu_seconds(forward: Callable, rows: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            with torch.inference_mode():
                torch.cat(
                    [
                        forward(torch.from_numpy(X[s : s + rows]))
                        for s in range(0, len(X), rows)
                    ]
                )
            best = min(best, time.process_time() - start)
        return best

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    for rows in (65536, 16384, 8192):
        for name, forward in (("module", net), ("in-place ReLU", inplace)):
            secs = cpu_seconds(forward, rows)
            out.append({"block_rows": rows, "forward": name, "cpu_s": secs})
    torch.set_num_threads(before)
    return out


# ------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    ap.add_argument("--repeats", type=int, help="fits per case (default 3)")
    ap.add_argument("--threads", type=int, help="torch and BLAS threads")
    ap.add_argument("--no-skorch", action="store_true", help="skip the skorch row")
    ap.add_argument("--no-predict", action="store_true", help="skip prediction")
    ap.add_argument("--profile", action="store_true", help="add profiling")
    ap.add_argument(
        "--steps-only",
        action="store_true",
        help="only the profile and per-step prototypes (no comparison table)",
    )
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--predict-worker", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--features", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--predict-repeats", type=int, default=3, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _limit_threads(threads: int | None):
    # Load every native thread pool first: limits apply to loaded ones only.
    import scipy.linalg  # noqa: F401
    import sklearn.neural_network  # noqa: F401

    import sknn_large  # noqa: F401

    if threads is None:
        return None
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    return threadpool_limits(threads)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, optionally write JSON.

    Returns
    -------
    dict
        Everything printed, plus the raw timings and the environment.
    """
    args = parse_args(argv)
    if args.quick and args.threads is None:
        # A smoke test, not a measurement: one thread avoids the OpenMP
        # spin-wait slowdown on a shared, oversubscribed machine.
        args.threads = 1
    if args.predict_worker:
        _limit_threads(args.threads)
        predict_worker(
            args.predict_worker, args.rows, args.features, args.predict_repeats
        )
        return {}
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    limits = _limit_threads(args.threads)
    with_skorch = not args.no_skorch
    if with_skorch:
        try:
            import skorch  # noqa: F401
        except ImportError:
            print("skorch not installed: its row is skipped")
            with_skorch = False
    from threadpoolctl import threadpool_info

    result: dict[str, Any] = {
        "environment": {
            **environment(torch.device("cpu")),
            "threadpools": [
                {k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                for p in threadpool_info()
            ],
        },
        "sizes": asdict(sizes),
    }
    data = make_data(sizes)
    if not args.steps_only:
        _compare(args, sizes, data, with_skorch, result)
    if args.profile or args.steps_only:
        _profile(sizes, data, result)
    _footer(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    if limits is not None:
        limits.restore_original_limits()
    return result


def _compare(
    args: argparse.Namespace,
    sizes: Sizes,
    data: tuple[np.ndarray, ...],
    with_skorch: bool,
    result: dict[str, Any],
) -> None:
    """The comparison table, the targets and the prediction table."""
    cases = build_cases(sizes, with_skorch)
    trained = run_training(cases, data, sizes)
    rows = training_rows(cases, data[0].shape[0], sizes.epochs)
    result["training"] = rows
    result["load_before_rounds"] = trained["load_before_rounds"]
    result["targets"] = check_targets(rows)
    print(f"## Training: {data[0].shape[0]:,} x {sizes.n_features} rows, ", end="")
    print(f"{sizes.epochs} epochs, batch {sizes.batch_size}")
    print(training_table(rows, sizes.repeats))
    for key, t in result["targets"].items():
        verdict = "MET" if t["met"] else "NOT MET"
        print(
            f"{key}: {t['speedup']:.2f}x faster in wall time,"
            f" {t['cpu_speedup']:.2f}x in CPU time (need {t['needed']:.0f}x),"
            f" accuracy gap {t['accuracy_gap_points']:.2f} points: {verdict}"
        )
    result["matmul_floor"] = matmul_floor(sizes, data[0].shape[0])
    print("\n## Hardware floor: the step's matrix products alone, same step count")
    for line in floor_lines(result["matmul_floor"], rows):
        print(line)
    if not args.no_predict:
        preds = run_prediction(trained["fitted"], sizes, args.threads)
        result["prediction"] = preds
        print(f"\n## predict_proba, {sizes.predict_rows:,} rows, subprocess per model")
        print(prediction_table(preds, sizes.predict_repeats))


def _profile(
    sizes: Sizes, data: tuple[np.ndarray, ...], result: dict[str, Any]
) -> None:
    """Profile of one epoch, per-step prototypes, prediction block sizes."""
    result["profile"] = profile_sknn(data, sizes)
    result["prototypes"] = prototype_steps(data, sizes)
    result["predict_blocks"] = predict_block_prototype(sizes)
    print("\n## Profile of one sknn_large epoch (top ops by self CPU time)")
    prof_rows = [
        [o["op"], o["calls"], fmt(o["us_per_step"], 1), fmt(100 * o["share"], 1)]
        for o in result["profile"]["top_ops"]
    ]
    print(format_table(["op", "calls", "us/step", "% self"], prof_rows))
    print("\n## Per-step cost of sknn_large and of prototypes (median of 3)")
    proto_rows = [
        [
            p["variant"],
            p["threads"],
            fmt(p["wall_ms_per_step"], 3),
            fmt(p["cpu_ms_per_step"], 3),
        ]
        for p in result["prototypes"]
    ]
    headers = ["variant", "threads", "wall ms/step", "CPU ms/step"]
    print(format_table(headers, proto_rows))
    print(f"\n## Forward pass over {sizes.predict_rows:,} rows by block, 1 thread")
    block_rows = [
        [f"{b['block_rows']:,}", b["forward"], fmt(b["cpu_s"], 3)]
        for b in result["predict_blocks"]
    ]
    print(format_table(["block rows", "forward", "CPU s (best of 3)"], block_rows))


def _footer(result: dict[str, Any]) -> None:
    """Date, hardware, load, threads, checkout and versions of the run."""
    result["environment"]["load_average_end"] = list(os.getloadavg())
    env = result["environment"]
    print(
        f"\n{env['date']}, {env['cpu']} ({env['cpu_cores']} cores), torch threads"
        f" {env['torch_threads']}, load average start {env['load_average_start']},"
        f" end {env['load_average_end']}"
    )
    print(f"thread settings: {env['thread_env']}, pools {env['threadpools']}")
    print(
        f"checkout: {env['git']['commit']}, locally modified: {env['git']['modified']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))


if __name__ == "__main__":
    main()
