"""Issue 12, small problems: first fits in fresh processes, and the per-fit overhead.

Problems the size of scikit-learn's documentation examples are where fixed
costs show: lazy imports on the first fit, validation, thread start-up, the
engine's set-up. Each case here runs in a **fresh subprocess**; the clock
starts after ``import sknn_large, sklearn`` (and the submodules the case
uses, for both libraries alike) and stops when ``fit`` returns, so the first
fit in the process and everything it triggers lazily is inside it, while the
imports themselves are reported on their own.

Cases, with the same parameters for sknn_large and scikit-learn:

* ``readme`` — README.md's snippet: breast cancer, ``StandardScaler`` +
  ``MLPClassifier(hidden_layer_sizes=(32,), learning_rate_init=0.01,
  random_state=0)``, default split.
* ``digits`` — scikit-learn's default ``MLPClassifier(random_state=0)`` on
  ``load_digits``, default split.
* ``diabetes`` — ``StandardScaler`` + ``MLPRegressor(hidden_layer_sizes=(64,),
  learning_rate_init=0.01, max_iter=500, random_state=0)`` on ``load_diabetes``.
* ``userguide`` — scikit-learn's user-guide example for its MLP: two
  samples, ``MLPClassifier(solver="lbfgs", alpha=1e-5,
  hidden_layer_sizes=(5, 2), random_state=1)``, scored on the guide's two
  new points. Run by ``bench_cpu.py``'s ``lbfgs`` section; not one of issue
  12's target-2 cases.
* ``overhead`` — not a first fit: after warm-up, the median time of a fit
  that does one optimizer step on a tiny problem, and the intercept of a
  least-squares line of fit time against epochs (the part of a fit that
  does not grow with training). The fixed per-fit cost.

Run one process by hand with ``python benchmarks/_cold.py --lib sknn_large
--cases readme``; ``bench_cpu.py --cases cold,overhead`` runs them all,
round-robin, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

SMALL_CASES = ("readme", "digits", "diabetes")
LIBRARIES = ("sknn_large", "sklearn")


# --------------------------------------------------------------- the worker


def _estimators(lib: str) -> tuple[type, type]:
    # The import of the estimator classes is part of the excluded imports.
    if lib == "sknn_large":
        from sknn_large import LargeMLPClassifier, LargeMLPRegressor

        return LargeMLPClassifier, LargeMLPRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    return MLPClassifier, MLPRegressor


def _case_readme(clf: type, reg: type, max_iter: int | None) -> tuple[Any, ...]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    extra = {} if max_iter is None else {"max_iter": max_iter}
    model = make_pipeline(
        StandardScaler(),
        clf(hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0, **extra),
    )
    return model, X_train, X_test, y_train, y_test


def _case_digits(clf: type, reg: type, max_iter: int | None) -> tuple[Any, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    extra = {} if max_iter is None else {"max_iter": max_iter}
    return clf(random_state=0, **extra), X_train, X_test, y_train, y_test


def _case_diabetes(clf: type, reg: type, max_iter: int | None) -> tuple[Any, ...]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    model = make_pipeline(
        StandardScaler(),
        reg(
            hidden_layer_sizes=(64,),
            learning_rate_init=0.01,
            max_iter=500 if max_iter is None else max_iter,
            random_state=0,
        ),
    )
    return model, X_train, X_test, y_train, y_test


def _case_userguide(clf: type, reg: type, max_iter: int | None) -> tuple[Any, ...]:
    X, y = [[0.0, 0.0], [1.0, 1.0]], [0, 1]
    extra = {} if max_iter is None else {"max_iter": max_iter}
    model = clf(
        solver="lbfgs", alpha=1e-5, hidden_layer_sizes=(5, 2), random_state=1, **extra
    )
    return model, X, [[2.0, 2.0], [-1.0, -2.0]], y, [1, 0]


_CASES: dict[str, Callable[..., tuple[Any, ...]]] = {
    "readme": _case_readme,
    "digits": _case_digits,
    "diabetes": _case_diabetes,
    "userguide": _case_userguide,
}


def _n_iter(model: Any) -> int | None:
    last = model[-1] if hasattr(model, "steps") else model
    return getattr(last, "n_iter_", None)


def run_small(name: str, lib: str, max_iter: int | None) -> dict[str, Any]:
    """Time one small case from data loading to the end of ``fit``.

    Parameters
    ----------
    name : {"readme", "digits", "diabetes", "userguide"}
        The case.
    lib : {"sknn_large", "sklearn"}
        Whose estimator to fit.
    max_iter : int, optional
        Cap on the epochs (the smoke test's tiny mode); ``None`` keeps the
        case's own setting.

    Returns
    -------
    dict
        ``case_s`` (load, split, build, fit), ``fit_s`` (the ``fit`` call),
        the test score and the epochs run.
    """
    clf, reg = _estimators(lib)
    start = time.perf_counter()
    model, X_train, X_test, y_train, y_test = _CASES[name](clf, reg, max_iter)
    with warnings.catch_warnings():
        # Convergence warnings are expected at these budgets; not the subject.
        warnings.simplefilter("ignore")
        fit_start, cpu = time.perf_counter(), time.process_time()
        model.fit(X_train, y_train)
        end, cpu = time.perf_counter(), time.process_time() - cpu
    return {
        "case": name,
        "lib": lib,
        "case_s": end - start,
        "fit_s": end - fit_start,
        "fit_cpu_s": cpu,
        "score": float(model.score(X_test, y_test)),
        "n_iter": _n_iter(model),
    }


def _least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    # Intercept and slope of the least-squares line (no numpy: keep it plain).
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def run_overhead(lib: str, tiny: bool) -> dict[str, Any]:
    """The fixed cost of one fit, after warm-up, measured two ways.

    1. ``one_step``: median time of a fit on 64 x 4 rows, hidden (8,),
       ``batch_size=64`` and ``max_iter=1`` — one optimizer step, so nearly
       all of it is fixed cost (validation, set-up, result).
    2. ``intercept``: fits on the README snippet's training rows (scaled)
       with ``max_iter`` in (1, 10, 40) and no early stop; the intercept of
       fit time against epochs is the part that training length does not
       change, the slope the cost of one epoch.
    3. ``predict_row_s`` and ``partial_fit_s``: medians of ``predict`` on one
       (float64) row of the last of those fitted models, and of
       ``partial_fit`` on successive 32-row batches of the README rows
       (hidden (32,)): the fixed cost of the calls a service or an online
       learner makes.

    Parameters
    ----------
    lib : {"sknn_large", "sklearn"}
        Whose classifier.
    tiny : bool
        Fewer fits (the smoke test).

    Returns
    -------
    dict
        Seconds: ``one_step_s``, ``intercept_s``, ``per_epoch_s``,
        ``predict_row_s``, ``partial_fit_s``, and the raw points.
    """
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    clf, _ = _estimators(lib)
    rng = np.random.default_rng(0)
    X_tiny = rng.standard_normal((64, 4)).astype(np.float32)
    y_tiny = (X_tiny[:, 0] > 0).astype(np.int64)
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X[:426])
    y = y[:426]
    fixed = dict(tol=0.0, n_iter_no_change=10**6, random_state=0)
    reps = 3 if tiny else 15

    def fit_time(model: Any, X: Any, y: Any) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model.fit(X, y)
            return time.perf_counter() - start

    def one_step() -> float:
        model = clf(hidden_layer_sizes=(8,), batch_size=64, max_iter=1, **fixed)
        return fit_time(model, X_tiny, y_tiny)

    for _ in range(3):  # warm-up: lazy imports, thread pools, caches
        one_step()
    steps = sorted(one_step() for _ in range(reps))
    epochs = (1, 4) if tiny else (1, 10, 40)
    points = []
    for _ in range(1 if tiny else 3):
        for e in epochs:
            model = clf(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=e)
            points.append((e, fit_time(model.set_params(**fixed), X, y)))
    intercept, slope = _least_squares(
        [float(e) for e, _ in points], [t for _, t in points]
    )

    def median_call(call: Callable[[int], object], calls: int) -> float:
        times = []
        for i in range(calls + 5):  # the first five warm up
            start = time.perf_counter()
            call(i)
            times.append(time.perf_counter() - start)
        return sorted(times[5:])[calls // 2]

    calls = 10 if tiny else 200
    row = X[:1]
    online = clf(hidden_layer_sizes=(32,), random_state=0)
    online.partial_fit(X[:32], y[:32], classes=np.unique(y))

    def partial_fit(i: int) -> None:
        start = (32 * i) % (len(X) - 32)
        online.partial_fit(X[start : start + 32], y[start : start + 32])

    return {
        "case": "overhead",
        "lib": lib,
        "one_step_s": steps[len(steps) // 2],
        "one_step_min_s": steps[0],
        "intercept_s": intercept,
        "per_epoch_s": slope,
        "predict_row_s": median_call(lambda i: model.predict(row), calls),
        "partial_fit_s": median_call(partial_fit, calls),
        "points": points,
    }


def worker(
    libs: list[str], cases: list[str], max_iter: int | None, threads: int | None
) -> None:
    """Subprocess body: import, then run every case for every library, print JSON.

    Only the first (library, case) of the process is a first fit in a fresh
    process; the smoke test runs them all in one process to save start-ups.
    """
    start = time.perf_counter()
    import sklearn  # noqa: F401
    import sklearn.datasets  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401

    import sknn_large  # noqa: F401

    for lib in libs:
        _estimators(lib)
    import_s = time.perf_counter() - start
    if threads is not None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)
    out = []
    for lib in libs:
        for name in cases:
            if name == "overhead":
                res = run_overhead(lib, tiny=max_iter is not None)
            else:
                res = run_small(name, lib, max_iter)
            res["fresh_process"] = not out
            res["import_s"] = import_s
            out.append(res)
    print(json.dumps(out))


# ------------------------------------------------------------ the launcher


def spawn(
    libs: str | list[str],
    cases: list[str],
    *,
    max_iter: int | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Run :func:`worker` in a fresh interpreter and return its results.

    Parameters
    ----------
    libs : str or list of str
        Whose estimators ("sknn_large", "sklearn"), in this order.
    cases : list of str
        Case names, run in order in that one process.
    max_iter : int, optional
        Epoch cap for every case (tiny mode).
    threads : int, optional
        torch and BLAS thread limit inside the worker.

    Returns
    -------
    list of dict
        One result per library and case.
    """
    libs = [libs] if isinstance(libs, str) else libs
    cmd = [
        sys.executable,
        __file__,
        "--lib",
        ",".join(libs),
        "--cases",
        ",".join(cases),
    ]
    if max_iter is not None:
        cmd += ["--max-iter", str(max_iter)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cold(
    cases: list[str],
    repeats: int,
    *,
    tiny: bool = False,
    threads: int | None = None,
    libs: tuple[str, ...] = LIBRARIES,
) -> list[dict[str, Any]]:
    """Every case x library in its own fresh process, ``repeats`` rounds.

    Rounds are round-robin and alternate which library goes first, so that
    slow drifts in the machine's load fall on both alike. With ``tiny``, one
    process runs everything (a smoke test: only its first case is then a
    true first fit, and the table marks the others as warm).

    Returns
    -------
    list of dict
        Every process's results, flattened, each tagged with its round.
    """
    if tiny:
        return [
            {**res, "round": 0}
            for res in spawn(list(libs), cases, max_iter=2, threads=threads)
        ]
    results = []
    for r in range(repeats):
        order = libs if r % 2 == 0 else tuple(reversed(libs))
        for case in cases:
            for lib in order:
                for res in spawn(lib, [case], threads=threads):
                    results.append({**res, "round": r})
    return results


def _median(values: list[float]) -> float:
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else 0.5 * (v[mid - 1] + v[mid])


def small_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per small case: medians for both libraries and sknn_large's ratio.

    Returns
    -------
    list of dict
        ``case``, per-library ``case_s``/``fit_s``/``import_s`` medians, the
        score and epochs of the last run, and ``ratio`` = sknn_large's
        ``case_s`` over scikit-learn's (target: <= 1).
    """
    rows = []
    for name in dict.fromkeys(r["case"] for r in results if r["case"] != "overhead"):
        row: dict[str, Any] = {"case": name}
        for lib in LIBRARIES:
            mine = [r for r in results if r["case"] == name and r["lib"] == lib]
            if not mine:
                continue
            row[lib] = {
                "case_s": _median([r["case_s"] for r in mine]),
                "fit_s": _median([r["fit_s"] for r in mine]),
                "fit_cpu_s": _median([r["fit_cpu_s"] for r in mine]),
                "import_s": _median([r["import_s"] for r in mine]),
                "score": mine[-1]["score"],
                "n_iter": mine[-1]["n_iter"],
                "runs": len(mine),
                "fresh_process": all(r["fresh_process"] for r in mine),
            }
        if all(lib in row for lib in LIBRARIES):
            row["ratio"] = row["sknn_large"]["case_s"] / row["sklearn"]["case_s"]
        rows.append(row)
    return rows


def overhead_rows(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per library: medians of the overhead measurements over the rounds."""
    out = {}
    for lib in LIBRARIES:
        mine = [r for r in results if r["case"] == "overhead" and r["lib"] == lib]
        if mine:
            out[lib] = {
                key: _median([r[key] for r in mine])
                for key in (
                    "one_step_s",
                    "one_step_min_s",
                    "intercept_s",
                    "per_epoch_s",
                    "predict_row_s",
                    "partial_fit_s",
                )
            }
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of one worker process."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", required=True, help="sknn_large, sklearn or both, comma")
    ap.add_argument("--cases", default=",".join(SMALL_CASES))
    ap.add_argument("--max-iter", type=int, help="epoch cap (tiny mode)")
    ap.add_argument("--threads", type=int, help="torch and BLAS threads")
    return ap.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    worker(args.lib.split(","), args.cases.split(","), args.max_iter, args.threads)
