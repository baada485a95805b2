"""Issue 3, GPU cases on one card, in one script that fits in four minutes.

(a) matmul ceilings: bf16 and tf32 TFLOP/s of large square matmuls;
(b) small network 50 -> 256 -> 256 -> 5, batch 256, 200,000 rows: training
    samples/s of sknn_large (default) against skorch's default loading, a
    plain eager loop and the same loop captured in a CUDA graph;
(c) large network 256 -> 4096 x4 -> 10, batch 4096, 1,000,000 rows: achieved
    TFLOP/s (6 x parameters x samples) of sknn_large in bfloat16 and in
    float32 with TF32 matmuls, against the ceilings of (a);
(d) ``predict_proba`` rows/s on 1,000,000 rows;
(e) correctness: the same small fit on the GPU and on the CPU agree.

Training rates are steady-state: every trainer runs the whole fit (data from
host arrays to a trained model) for a short and a long number of epochs, and
the rate is the extra samples over the extra time, so start-up costs (CUDA
context, copies, graph capture) cancel. End-to-end rates of the long run are
reported too.

``--dry-run`` runs every section at tiny sizes on the CPU (CUDA-only rows are
marked skipped) so the script can be checked on a machine without a GPU.
``--out results.json`` writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    build_reference_mlp,
    environment,
    fmt,
    fmt_rate,
    format_table,
    median,
    mlp_parameters,
    synchronize,
    timed,
)
from _reference import (  # noqa: E402
    make_skorch,
    train_eager,
    train_graphed,
)


@dataclass(frozen=True)
class Sizes:
    """Sizes of every section; ``DRY`` shrinks them for a CPU check."""

    matmul_n: tuple[int, ...] = (8192, 16384)
    matmul_iters: int = 20
    small_rows: int = 200_000
    small_features: int = 50
    small_hidden: tuple[int, ...] = (256, 256)
    small_classes: int = 5
    small_batch: int = 256
    small_epochs: tuple[int, int] = (1, 3)
    large_rows: int = 1_000_000
    large_features: int = 256
    large_hidden: tuple[int, ...] = (4096, 4096, 4096, 4096)
    large_classes: int = 10
    large_batch: int = 4096
    large_epochs: tuple[int, int] = (1, 3)
    predict_rows: int = 1_000_000
    check_rows: int = 20_000
    check_epochs: int = 5
    repeats: int = 2
    lr: float = 1e-3
    seed: int = 0


FULL = Sizes()
DRY = replace(
    FULL,
    matmul_n=(256,),
    matmul_iters=3,
    small_rows=512,
    small_epochs=(1, 2),
    large_rows=512,
    large_features=32,
    large_hidden=(64, 64, 64, 64),
    large_batch=256,
    large_epochs=(1, 2),
    predict_rows=2_000,
    check_rows=400,
    check_epochs=2,
    repeats=1,
)

# Issue 3's targets: share of the matching matmul ceiling reached in (c).
_TARGET_SHARE = {"bfloat16": 0.60, "float32": 0.65}


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 tensor-core matmuls for float32 tensors."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def synthetic(
    rows: int, features: int, classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable float32 classification data drawn quickly at any size.

    Labels are the arg-max of a fixed random linear map of the features plus
    noise, so a network reaches well above chance accuracy.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    W = rng.standard_normal((features, classes), dtype=np.float32)
    noise = rng.standard_normal((rows, classes), dtype=np.float32)
    return X, (X @ W + 0.5 * noise).argmax(axis=1).astype(np.int64)


# ------------------------------------------------------------------ (a) matmul


def matmul_tflops(
    n: int, dtype: torch.dtype, iters: int, device: torch.device
) -> float:
    """TFLOP/s of ``iters`` back-to-back ``n x n`` matmuls (2 n^3 flops each).

    Timed with CUDA events on a GPU, with ``perf_counter`` on the CPU.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    if device.type == "cuda":
        start, stop = (
            torch.cuda.Event(enable_timing=True),
            torch.cuda.Event(enable_timing=True),
        )
        start.record()
        for _ in range(iters):
            a @ b
        stop.record()
        stop.synchronize()
        seconds = start.elapsed_time(stop) / 1e3
    else:
        seconds, _ = timed(lambda: [a @ b for _ in range(iters)], device)
    return 2 * n**3 * iters / seconds / 1e12


def section_matmul(sizes: Sizes, device: torch.device) -> dict[str, float]:
    """The best TFLOP/s over ``sizes.matmul_n`` for bf16 and for tf32."""
    out = {}
    set_tf32(True)
    for label, dtype in (("bfloat16", torch.bfloat16), ("tf32", torch.float32)):
        out[label] = max(
            matmul_tflops(n, dtype, sizes.matmul_iters, device) for n in sizes.matmul_n
        )
    set_tf32(False)
    return out


# ------------------------------------------------------------- rate measuring


def steady_rate(
    run: Callable[[int], Any],
    epochs: tuple[int, int],
    rows: int,
    repeats: int,
    device: torch.device,
) -> dict[str, float]:
    """Samples/s from timing whole fits of a short and a long number of epochs.

    Parameters
    ----------
    run : callable
        ``epochs -> anything``: one complete fit from host arrays.
    epochs : (int, int)
        Short and long epoch counts.
    rows : int
        Samples per epoch.
    repeats : int
        Timed pairs after one untimed warm-up of the short fit.
    device : torch.device
        Synchronised around every fit.

    Returns
    -------
    dict
        ``steady`` samples/s (extra samples over extra time, medians),
        ``end_to_end`` samples/s of the long fit, and the raw seconds.
    """
    short, long = epochs
    run(short)  # warm-up: CUDA context, cuBLAS handles, autotuning
    t_short = [timed(lambda: run(short), device)[0] for _ in range(repeats)]
    t_long = [timed(lambda: run(long), device)[0] for _ in range(repeats)]
    extra = median(t_long) - median(t_short)
    return {
        "steady": (long - short) * rows / extra if extra > 0 else float("nan"),
        "end_to_end": long * rows / median(t_long),
        "seconds_short": t_short,
        "seconds_long": t_long,
    }


def _sknn(
    sizes_kw: dict[str, Any],
    device: torch.device,
    precision: str,
    alpha: float = 1e-4,
    cuda_graphs: bool = False,
):
    # alpha=1e-4 is the default L2 penalty (as in scikit-learn); tol=0 and a
    # huge patience make every epoch run.
    from sknn_large import LargeMLPClassifier

    return LargeMLPClassifier(
        solver="adam",
        alpha=alpha,
        tol=0.0,
        n_iter_no_change=10**6,
        device=str(device),
        precision=precision,
        cuda_graphs=cuda_graphs,
        random_state=0,
        **sizes_kw,
    )


def _fit_quiet(est, X: np.ndarray, y: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _loop_runner(
    X: np.ndarray,
    y: np.ndarray,
    hidden: tuple[int, ...],
    n_out: int,
    batch: int,
    lr: float,
    device: torch.device,
    *,
    graphed: bool,
    autocast: torch.dtype | None = None,
) -> Callable[[int], list[float]]:
    def run(epochs: int) -> list[float]:
        net = build_reference_mlp(X.shape[1], hidden, n_out, seed=0).to(device)
        xt = torch.as_tensor(X, device=device)
        yt = torch.as_tensor(y, device=device)
        train = train_graphed if graphed else train_eager
        return train(
            net,
            xt,
            yt,
            batch_size=batch,
            epochs=epochs,
            lr=lr,
            seed=0,
            autocast_dtype=autocast,
        )

    return run


# ------------------------------------------------------------ (b) small network


def section_small(
    sizes: Sizes, device: torch.device, X: np.ndarray, y: np.ndarray
) -> tuple[list[dict[str, Any]], Any]:
    """Training samples/s on the small network; returns rows and sknn's model."""
    kw = dict(
        hidden_layer_sizes=sizes.small_hidden,
        batch_size=sizes.small_batch,
        learning_rate_init=sizes.lr,
    )
    fitted = {}

    def sknn_run(epochs: int, alpha: float = 1e-4, cuda_graphs: bool = False):
        est = _sknn({**kw, "max_iter": epochs}, device, "auto", alpha, cuda_graphs)
        fitted["model"] = _fit_quiet(est, X, y)

    def skorch_run(epochs: int):
        net = make_skorch(
            X.shape[1],
            sizes.small_hidden,
            sizes.small_classes,
            batch_size=sizes.small_batch,
            epochs=epochs,
            lr=sizes.lr,
            seed=sizes.seed,
            device=str(device),
        )
        return net.fit(X, y)

    loop_args = (X, y, sizes.small_hidden, sizes.small_classes, sizes.small_batch)
    runners: list[tuple[str, Callable[[int], Any] | None]] = [
        ("sknn_large (default: float32, alpha=1e-4)", sknn_run),
        (
            "sknn_large, alpha=0 (no penalty, as the loops)",
            partial(sknn_run, alpha=0.0),
        ),
        (
            "sknn_large cuda_graphs=True (float32, alpha=1e-4)",
            partial(sknn_run, cuda_graphs=True) if device.type == "cuda" else None,
        ),
        ("skorch, default loading", skorch_run),
        (
            "plain eager torch loop",
            _loop_runner(*loop_args, sizes.lr, device, graphed=False),
        ),
        (
            "torch loop in a CUDA graph",
            _loop_runner(*loop_args, sizes.lr, device, graphed=True)
            if device.type == "cuda"
            else None,
        ),
    ]
    rows = []
    for name, run in runners:
        rows.append(
            _rate_row(name, run, sizes.small_epochs, X.shape[0], sizes.repeats, device)
        )
    return rows, fitted.get("model")


def _rate_row(name, run, epochs, n, repeats, device) -> dict[str, Any]:
    if run is None:
        return {"case": name, "skipped": "needs CUDA"}
    try:
        return {"case": name, **steady_rate(run, epochs, n, repeats, device)}
    except Exception as exc:  # one failing reference must not sink the rest
        traceback.print_exc()
        return {"case": name, "error": repr(exc)}


# ------------------------------------------------------------ (c) large network


def section_large(
    sizes: Sizes, device: torch.device, ceilings: dict[str, float]
) -> list[dict[str, Any]]:
    """Achieved TFLOP/s of the large network, bf16 and float32 (TF32 on)."""
    X, y = synthetic(sizes.large_rows, sizes.large_features, sizes.large_classes, 1)
    widths = [sizes.large_features, *sizes.large_hidden, sizes.large_classes]
    params = mlp_parameters(widths)
    flops_per_sample = 6 * params
    kw = dict(
        hidden_layer_sizes=sizes.large_hidden,
        batch_size=sizes.large_batch,
        learning_rate_init=sizes.lr,
    )
    loop_args = (X, y, sizes.large_hidden, sizes.large_classes, sizes.large_batch)
    cases = [
        ("sknn_large precision='bfloat16'", "bfloat16", "sknn", torch.bfloat16),
        ("sknn_large precision='float32', TF32 on", "float32", "sknn", None),
        ("plain eager loop, bf16 autocast", "bfloat16", "loop", torch.bfloat16),
        ("plain eager loop, float32, TF32 on", "float32", "loop", None),
    ]
    set_tf32(True)
    rows = []
    for name, precision, kind, autocast in cases:
        if kind == "sknn":

            def run(epochs: int, precision: str = precision):
                est = _sknn({**kw, "max_iter": epochs}, device, precision)
                _fit_quiet(est, X, y)

        else:
            run = _loop_runner(
                *loop_args, sizes.lr, device, graphed=False, autocast=autocast
            )
        row = _rate_row(name, run, sizes.large_epochs, X.shape[0], 1, device)
        if "steady" in row:
            ceiling = ceilings["bfloat16" if precision == "bfloat16" else "tf32"]
            row["tflops"] = row["steady"] * flops_per_sample / 1e12
            row["tflops_end_to_end"] = row["end_to_end"] * flops_per_sample / 1e12
            row["share_of_ceiling"] = row["tflops"] / ceiling
            row["target_share"] = _TARGET_SHARE[precision]
            row["met"] = bool(row["share_of_ceiling"] >= _TARGET_SHARE[precision])
        row["parameters"] = params
        rows.append(row)
    set_tf32(False)
    return rows


# ------------------------------------------------------------- (d) prediction


def section_predict(
    sizes: Sizes, device: torch.device, model, n_features: int
) -> dict[str, Any]:
    """``predict_proba`` rows/s of a fitted model on host float32 rows."""
    X = np.random.default_rng(2).standard_normal(
        (sizes.predict_rows, n_features), dtype=np.float32
    )
    model.predict_proba(X[:1000])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [timed(lambda: model.predict_proba(X), device)[0] for _ in range(3)]
    out: dict[str, Any] = {"rows": sizes.predict_rows, "seconds": times}
    out["rows_per_s"] = sizes.predict_rows / median(times)
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# ------------------------------------------------------------ (e) correctness


def section_check(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Fit the same small problem on ``device`` and on the CPU; compare.

    Passing means test accuracies within one point and every epoch's loss
    within 5 % (relative) of the CPU curve.
    """
    X, y = synthetic(sizes.check_rows, sizes.small_features, sizes.small_classes, 3)
    n_train = int(0.8 * len(X))
    kw = dict(
        hidden_layer_sizes=sizes.small_hidden,
        batch_size=sizes.small_batch,
        learning_rate_init=sizes.lr,
        max_iter=sizes.check_epochs,
    )
    res = {}
    runs = [("cpu", "cpu", False), ("device", str(device), False)]
    if device.type == "cuda":
        runs.append(("graphed", str(device), True))
    for name, where, graphs in runs:
        est = _sknn(kw, torch.device(where), "auto", cuda_graphs=graphs)
        est = _fit_quiet(est, X[:n_train], y[:n_train])
        acc = float(np.mean(est.predict(X[n_train:]) == y[n_train:]))
        res[name] = {"accuracy": acc, "loss_curve": list(est.loss_curve_)}
    out = {"cpu": res["cpu"], "device": res["device"]}
    passed = True
    for name in res:
        if name == "cpu":
            continue
        rel = np.abs(
            np.subtract(res[name]["loss_curve"], res["cpu"]["loss_curve"])
        ) / np.abs(res["cpu"]["loss_curve"])
        gap = abs(res[name]["accuracy"] - res["cpu"]["accuracy"])
        suffix = "" if name == "device" else "_" + name
        out["accuracy_gap_points" + suffix] = 100 * gap
        out["max_loss_rel_diff" + suffix] = float(rel.max())
        passed = passed and bool(gap <= 0.01 and rel.max() <= 0.05)
    out["graphed"] = res.get("graphed")
    out["passed"] = passed
    return out


# ------------------------------------------------------------------ reporting


def report(result: dict[str, Any]) -> str:
    """All sections as Markdown tables."""
    parts = []
    mm = result.get("matmul")
    if mm:
        parts.append("## (a) matmul ceilings")
        parts.append(
            format_table(
                ["dtype", "TFLOP/s"],
                [["bf16", fmt(mm["bfloat16"], 1)], ["tf32", fmt(mm["tf32"], 1)]],
            )
        )
    if "small" in result:
        parts.append("## (b) small network, training samples/s")
        parts.append(format_table(*_rate_table(result["small"], tflops=False)))
    if "large" in result:
        parts.append("## (c) large network, achieved TFLOP/s (6 x params x samples)")
        parts.append(format_table(*_rate_table(result["large"], tflops=True)))
    if "predict" in result:
        p = result["predict"]
        parts.append("## (d) predict_proba")
        parts.append(
            format_table(
                ["model", "rows", "rows/s", "peak GPU MiB"],
                [
                    [
                        m,
                        f"{v['rows']:,}",
                        fmt_rate(v.get("rows_per_s")),
                        fmt(v.get("peak_gpu_mb"), 0),
                    ]
                    for m, v in p.items()
                ],
            )
        )
    if "check" in result:
        c = result["check"]
        parts.append("## (e) GPU vs CPU agreement")
        rows = [
            [
                "device",
                fmt(c["cpu"]["accuracy"], 4),
                fmt(c["device"]["accuracy"], 4),
                fmt(c["accuracy_gap_points"]),
                fmt(c["max_loss_rel_diff"], 4),
            ]
        ]
        if c.get("graphed"):
            rows.append(
                [
                    "device, cuda_graphs=True",
                    fmt(c["cpu"]["accuracy"], 4),
                    fmt(c["graphed"]["accuracy"], 4),
                    fmt(c["accuracy_gap_points_graphed"]),
                    fmt(c["max_loss_rel_diff_graphed"], 4),
                ]
            )
        parts.append(
            format_table(
                ["run", "cpu acc", "run acc", "gap (points)", "max loss rel diff"],
                rows,
            )
        )
        parts.append(f"all within 1 point and 5 %: {c['passed']}")
    for name, err in result.get("errors", {}).items():
        parts.append(f"section {name} failed: {err}")
    return "\n\n".join(parts)


def _rate_table(rows: list[dict[str, Any]], tflops: bool):
    headers = ["case", "steady samples/s", "end-to-end samples/s"]
    if tflops:
        headers += ["TFLOP/s", "share of ceiling", "target", "met"]
    body = []
    for r in rows:
        if "steady" not in r:
            body.append([r["case"], r.get("skipped") or r.get("error"), ""])
            continue
        line = [r["case"], fmt_rate(r["steady"]), fmt_rate(r["end_to_end"])]
        if tflops:
            line += [
                f"{r['tflops']:.3g}",
                fmt(100 * r["share_of_ceiling"], 1) + "%",
                fmt(100 * r["target_share"], 0) + "%",
                r["met"],
            ]
        body.append(line)
    return headers, body


# ----------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=230.0,
        help="skip remaining sections once this many seconds have passed",
    )
    return ap.parse_args(argv)


def _run_section(result, name, fn, started, budget) -> Any:
    if time.perf_counter() - started > budget:
        result.setdefault("errors", {})[name] = "skipped: time budget spent"
        return None
    try:
        t0 = time.perf_counter()
        out = fn()
        result.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
        return out
    except Exception as exc:
        traceback.print_exc()
        result.setdefault("errors", {})[name] = repr(exc)
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every section, print the tables, write JSON when asked.

    Returns
    -------
    dict
        The results, as written to ``--out``.
    """
    args = parse_args(argv)
    started = time.perf_counter()
    if args.dry_run:
        sizes, device = DRY, torch.device("cpu")
        # Tiny sizes: one thread is the fast choice, and it keeps the smoke
        # test's reference loops from spinning against other processes.
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        sizes, device = FULL, torch.device("cuda")
    else:
        sys.exit("bench_gpu.py needs a CUDA GPU; use --dry-run to check it on a CPU")
    set_tf32(False)
    result: dict[str, Any] = {
        "environment": environment(device),
        "dry_run": args.dry_run,
        "device": str(device),
        "sizes": asdict(sizes),
    }
    go = lambda name, fn: _run_section(result, name, fn, started, args.budget_s)
    check = go("check", lambda: section_check(sizes, device))
    if check is not None:
        result["check"] = check
    mm = go("matmul", lambda: section_matmul(sizes, device))
    if mm is not None:
        result["matmul"] = mm
    Xs, ys = synthetic(sizes.small_rows, sizes.small_features, sizes.small_classes, 0)
    small = go("small", lambda: section_small(sizes, device, Xs, ys))
    if small is not None:
        result["small"], model = small
        pred = go("predict", lambda: section_predict(sizes, device, model, Xs.shape[1]))
        if pred is not None:
            result["predict"] = {"sknn_large, small network": pred}
    if mm is not None:
        large = go("large", lambda: section_large(sizes, device, mm))
        if large is not None:
            result["large"] = large
    result["total_seconds"] = time.perf_counter() - started
    print(report(result))
    env = result["environment"]
    where = env.get("gpu", env["cpu"])
    print(f"\ntotal {result['total_seconds']:.1f} s on {device} ({where})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    print(
        f"checkout: {env['git']['commit']}, locally modified: {env['git']['modified']}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
