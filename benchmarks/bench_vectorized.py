"""Vectorised search and ensembles against scikit-learn's GridSearchCV.

Two measurements:

1. **Search**: 5-fold x 20 candidates on ``n`` rows of 50 features, network
   50 -> 256 -> 256 -> k, with :class:`~sknn_large.model_selection.
   VectorizedGridSearchCV` and with scikit-learn's ``GridSearchCV(n_jobs=-1)``
   over the same :class:`~sknn_large.LargeMLPClassifier`; wall time and
   whether both pick the same best candidate.
2. **Engine throughput** in model-samples per second (members x rows per
   second of training) for 16, 64 and 256 members.

Usage::

    python benchmarks/bench_vectorized.py            # full sizes, CPU
    python benchmarks/bench_vectorized.py --quick    # seconds, smaller sizes
    python benchmarks/bench_vectorized.py --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV

from sknn_large import LargeMLPClassifier
from sknn_large._estimator import fit_many
from sknn_large.model_selection import VectorizedGridSearchCV


def _data(n_rows: int, n_classes: int = 5):
    X, y = make_classification(
        n_rows, 50, n_informative=20, n_classes=n_classes, random_state=0
    )
    return X.astype(np.float32), y


_HIDDEN = [(256, 256)]


def _estimator(device: str, epochs: int) -> LargeMLPClassifier:
    return LargeMLPClassifier(
        _HIDDEN[0],
        batch_size=256,
        max_iter=epochs,
        device=device,
        random_state=0,
        n_iter_no_change=epochs,
    )


def _grid() -> dict:
    # 20 candidates, one architecture: every fit shares one stack.
    return {
        "learning_rate_init": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
        "alpha": [1e-5, 1e-4, 1e-3, 1e-2],
    }


def bench_search(
    n_rows: int, epochs: int, device: str, with_sklearn: bool, repeats: int = 1
) -> None:
    """Time the vectorised search, and sklearn's on the same estimator.

    With ``repeats`` > 1 the searches run round-robin, in alternating order
    so that neither always goes first, and the median time is reported.
    """
    X, y = _data(n_rows)
    # Both get n_jobs=-1: the vectorised search uses it when it runs one fit
    # per job (CPU networks too large to gain from stacking).
    searches = [("VectorizedGridSearchCV", VectorizedGridSearchCV, {"n_jobs": -1})]
    if with_sklearn:
        searches.append(("GridSearchCV(n_jobs=-1)", GridSearchCV, {"n_jobs": -1}))
    # Start joblib's worker pool (and torch in it) before timing anything.
    GridSearchCV(_estimator(device, 1), {"alpha": [1e-4, 1e-3]}, cv=2, n_jobs=-1).fit(
        X[:200], y[:200]
    )
    times: dict[str, list[float]] = {name: [] for name, _, _ in searches}
    fitted = {}
    for r in range(repeats):
        for name, cls, kw in searches[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            search = cls(_estimator(device, epochs), _grid(), cv=5, refit=False, **kw)
            search.fit(X, y)
            times[name].append(time.perf_counter() - start)
            fitted[name] = search
    print(
        f"\nSearch: 5 folds x 20 candidates, {n_rows} rows, {epochs} epochs, "
        f"network 50 -> {_HIDDEN[0]} -> 5 on {device}, median of {repeats}"
    )
    rows = []
    for name, _, _ in searches:
        search = fitted[name]
        stacked = getattr(search, "vectorized_", None)
        label = name
        if stacked is not None:
            label += " [stacked]" if stacked else " [one fit per job]"
        seconds = float(np.median(times[name]))
        rows.append((seconds, search.best_params_))
        print(
            f"  {label:44s} {seconds:8.1f} s (min {min(times[name]):.1f})"
            f"  best={search.best_params_}  score={search.best_score_:.4f}"
        )
    if len(rows) == 2:
        same = rows[0][1] == rows[1][1]
        print(f"  speed-up {rows[1][0] / rows[0][0]:.2f}x, same best candidate: {same}")


def bench_throughput(n_rows: int, epochs: int, device: str, counts) -> None:
    """Model-samples per second of the engine for several member counts."""
    X, y = _data(n_rows)
    print(f"\nEngine throughput, {n_rows} rows, {epochs} epochs, batch 256, {device}")
    for k in counts:
        ests = [_estimator(device, epochs).set_params(random_state=i) for i in range(k)]
        start = time.perf_counter()
        fit_many(ests, X, y)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rate = k * n_rows * epochs / seconds
        print(
            f"  {k:4d} members  {seconds:8.2f} s  {rate / 1e6:8.3f} M model-samples/s"
        )


def main(argv=None) -> None:
    """Run the benchmarks; ``--help`` lists the options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="small sizes, seconds")
    p.add_argument("--rows", type=int, default=None, help="rows for the search")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--no-sklearn", action="store_true", help="skip GridSearchCV")
    p.add_argument("--members", type=int, nargs="*", default=None)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--repeats", type=int, default=1, help="round-robin searches")
    args = p.parse_args(argv)
    _HIDDEN[0] = tuple(args.hidden)
    rows = args.rows or (2000 if args.quick else 50_000)
    epochs = args.epochs or (2 if args.quick else 5)
    counts = args.members or ([4, 16] if args.quick else [16, 64, 256])
    print(
        f"{datetime.date.today()} {platform.node()} {platform.processor()} "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    warnings.simplefilter("ignore")
    bench_search(rows, epochs, args.device, not args.no_sklearn, args.repeats)
    bench_throughput(min(rows, 10_000), epochs, args.device, counts)


if __name__ == "__main__":
    main()
