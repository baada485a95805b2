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
  iterations (``tol=0``), in alternating rounds after one warm-up fit each;
  medians. Both libraries run SciPy's L-BFGS-B on the same objective, so
  their iteration counts and scores agree and the time ratio is the cost of
  the loss and gradient evaluations plus each library's fixed cost.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from _common import fmt, format_table, median

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


def warm_rows(repeats: int, quick: bool) -> list[dict[str, Any]]:
    """Warm L-BFGS fits of both libraries for every shape.

    Parameters
    ----------
    repeats : int
        Rounds; each library goes first in every other one.
    quick : bool
        Smoke test: the two smallest shapes, 3 iterations.

    Returns
    -------
    list of dict
        Per shape: median seconds of each library, their ratio, iterations
        and training scores.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    from sknn_large import LargeMLPClassifier, LargeMLPRegressor

    libs = {
        "sknn_large": (LargeMLPClassifier, LargeMLPRegressor),
        "sklearn": (MLPClassifier, MLPRegressor),
    }
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

        def make(lib: str, params=params, classes=classes) -> Any:
            clf, reg = libs[lib]
            return (clf if classes else reg)(**params)

        times: dict[str, list[float]] = {lib: [] for lib in libs}
        fitted: dict[str, Any] = {}
        for lib in libs:  # warm-up: lazy imports, per-process checks
            _fit(make(lib).set_params(max_iter=2), X, y)
        for r in range(repeats):
            for lib in list(libs) if r % 2 == 0 else list(libs)[::-1]:
                seconds, fitted[lib] = _fit(make(lib), X, y)
                times[lib].append(seconds)
        row: dict[str, Any] = {"shape": label}
        for lib, est in fitted.items():
            row[lib] = {
                "s": median(times[lib]),
                "times": times[lib],
                "n_iter": int(est.n_iter_),
                "score": float(est.score(X, y)),
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
    warm = warm_rows(repeats, quick)
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
