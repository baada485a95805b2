"""Full-batch L-BFGS (``solver="lbfgs"``) against scikit-learn, by problem size.

``bench_cpu.py --cases lbfgs`` runs it. Two parts, sknn_large and
scikit-learn with the same parameters and data:

* **First fit in a fresh process:** scikit-learn's user-guide example
  (``_cold.py``'s ``userguide`` case: two samples, ``(5, 2)`` hidden units),
  imports excluded, medians over processes that alternate which library goes
  first.
* **Warm fits by size:** synthetic float64 tables (a linear teacher, seeded)
  from 300 x 10 to 20,000 x 20 and 5,000 x 500, classification with 2 to 100
  classes and a regression, each trained for exactly ``max_iter`` L-BFGS
  iterations (``tol=0``) after one warm-up fit; medians over rounds. Both
  libraries run SciPy's L-BFGS-B on the same objective, so their iteration
  counts and scores agree and the time ratio is the cost of the loss and
  gradient evaluations plus each library's fixed cost.

Each round runs each library in a process of its own (alternating which
goes first): in one process the other library's idle thread pools still spin
for a while after its fits and slow the next one (sknn_large's 2,000-row fit
right after scikit-learn's: 0.053-0.128 s against 0.035-0.036 s alone,
2026-12-08).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, format_table, median  # noqa: E402

# (label, rows, features, hidden layers, classes; 0 for a regression)
SHAPES = (
    ("300 x 10, (10,), 2 classes", 300, 10, (10,), 2),
    ("2,000 x 20, (100,), 2 classes", 2000, 20, (100,), 2),
    ("20,000 x 20, (100,), 10 classes", 20_000, 20, (100,), 10),
    ("5,000 x 500, (100,), 10 classes", 5000, 500, (100,), 10),
    ("5,000 x 20, (64,), 100 classes", 5000, 20, (64,), 100),
    ("5,000 x 20, (100,), regression", 5000, 20, (100,), 0),
)
MAX_ITER = 30


def _table(rows: int, features: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, features))
    z = X @ rng.standard_normal((features, max(classes, 1)))
    return X, (z.argmax(1) if classes > 1 else z[:, 0])


def _fit(estimator: Any, X: np.ndarray, y: np.ndarray) -> tuple[float, Any]:
    with warnings.catch_warnings():
        # Reaching max_iter is the point here, not a problem.
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - start, estimator


def _worker(lib: str, quick: bool) -> list[dict[str, Any]]:
    """One library's timed fit of every shape, each after a warm-up fit."""
    if lib == "sknn_large":
        from sknn_large import LargeMLPClassifier as clf
        from sknn_large import LargeMLPRegressor as reg
    else:
        from sklearn.neural_network import MLPClassifier as clf
        from sklearn.neural_network import MLPRegressor as reg
    shapes, max_iter = (SHAPES[:2], 3) if quick else (SHAPES, MAX_ITER)
    out = []
    for label, rows, features, hidden, classes in shapes:
        X, y = _table(rows, features, classes)
        params = dict(
            hidden_layer_sizes=hidden,
            solver="lbfgs",
            max_iter=max_iter,
            tol=0.0,
            random_state=0,
        )
        make = clf if classes else reg
        _fit(make(**{**params, "max_iter": 2}), X, y)  # lazy imports, checks
        seconds, est = _fit(make(**params), X, y)
        out.append(
            {
                "shape": label,
                "s": seconds,
                "n_iter": int(est.n_iter_),
                "score": float(est.score(X, y)),
            }
        )
    return out


def warm_rows(repeats: int, quick: bool, threads: int | None) -> list[dict[str, Any]]:
    """Warm L-BFGS fits of both libraries for every shape.

    Parameters
    ----------
    repeats : int
        Rounds: a fresh process per library, each first in every other one.
    quick : bool
        Smoke test: the two smallest shapes, 3 iterations.
    threads : int, optional
        torch and BLAS thread limit inside the processes.

    Returns
    -------
    list of dict
        Per shape: median seconds of each library, their ratio, iterations
        and training scores.
    """
    libs = ("sknn_large", "sklearn")
    runs: dict[str, list[list[dict[str, Any]]]] = {lib: [] for lib in libs}
    for r in range(repeats):
        for lib in libs if r % 2 == 0 else libs[::-1]:
            cmd = [sys.executable, __file__, "--lib", lib]
            cmd += ["--quick"] if quick else []
            cmd += [] if threads is None else ["--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            runs[lib].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = []
    for i, first in enumerate(runs["sknn_large"][0]):
        row: dict[str, Any] = {"shape": first["shape"]}
        for lib in libs:
            fits = [run[i] for run in runs[lib]]
            row[lib] = {
                "s": median(f["s"] for f in fits),
                "times": [f["s"] for f in fits],
                "n_iter": fits[-1]["n_iter"],
                "score": fits[-1]["score"],
            }
        row["ratio"] = row["sknn_large"]["s"] / row["sklearn"]["s"]
        out.append(row)
    return out


def lbfgs_section(repeats: int, quick: bool, threads: int | None) -> dict[str, Any]:
    """Print and return both parts (see the module docstring).

    Parameters
    ----------
    repeats : int
        Fresh processes per library (first fit), rounds (warm fits).
    quick : bool
        Smoke-test sizes.
    threads : int, optional
        Thread limit for the fresh processes.

    Returns
    -------
    dict
        ``cold`` (``_cold.small_rows`` of the user-guide case), ``warm`` rows.
    """
    from _cold import run_cold, small_rows

    cold = small_rows(run_cold(["userguide"], repeats, tiny=quick, threads=threads))
    print("\n## L-BFGS: scikit-learn's user-guide example, first fit, fresh process")
    body = [
        [
            r["case"],
            fmt(r["sknn_large"]["fit_s"] * 1e3, 1),
            fmt(r["sklearn"]["fit_s"] * 1e3, 1),
            fmt(r["sknn_large"]["fit_s"] / r["sklearn"]["fit_s"]) + "x",
            f"{r['sknn_large']['n_iter']} / {r['sklearn']['n_iter']}",
        ]
        for r in cold
    ]
    headers = ["case", "sknn_large fit ms", "sklearn fit ms", "ratio", "iterations"]
    print(format_table(headers, body))
    print(f"(medians of {repeats} processes a library; imports excluded)")
    warm = warm_rows(repeats, quick, threads)
    print("\n## L-BFGS: warm fits by size, float64 data, a fixed number of iterations")
    body = [
        [
            r["shape"],
            fmt(r["sknn_large"]["s"], 3),
            fmt(r["sklearn"]["s"], 3),
            fmt(r["ratio"]) + "x",
            f"{r['sknn_large']['n_iter']} / {r['sklearn']['n_iter']}",
            f"{fmt(r['sknn_large']['score'], 4)} / {fmt(r['sklearn']['score'], 4)}",
        ]
        for r in warm
    ]
    headers = [
        "shape",
        f"sknn_large s (median of {repeats})",
        "sklearn s",
        "sknn_large / sklearn",
        "iterations",
        "training score",
    ]
    print(format_table(headers, body))
    return {"cold": cold, "warm": warm}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="One library's warm L-BFGS fits.")
    ap.add_argument("--lib", choices=("sknn_large", "sklearn"), required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.threads is not None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    print(json.dumps(_worker(args.lib, args.quick)))
