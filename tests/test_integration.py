"""Pipelines, model selection, cloning and pickling: the sklearn ecosystem."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier, LargeMLPRegressor

SMALL = dict(
    hidden_layer_sizes=(8,), max_iter=30, learning_rate_init=0.01, random_state=0
)


@pytest.mark.parametrize("scoring", ["accuracy", "recall_macro", "f1_macro"])
def test_grid_search_in_pipeline_parallel(scoring, iris):
    # GridSearchCV with n_jobs>1 over a pipeline, with classification scorers.
    X, y = iris
    pipe = make_pipeline(StandardScaler(), LargeMLPClassifier(**SMALL))
    grid = GridSearchCV(
        pipe,
        {
            "largemlpclassifier__alpha": [1e-4, 1e-1],
            "largemlpclassifier__dropout": [0.0, 0.2],
        },
        scoring=scoring,
        cv=3,
        n_jobs=2,
    ).fit(X, y)
    assert grid.best_score_ > 0.8
    assert len(grid.cv_results_["params"]) == 4


def test_binary_recall_and_f1(digits_binary):
    # Binary scorers 'recall' and 'f1' work with the classifier's labels.
    X, y = digits_binary
    for scoring in ["recall", "f1", "accuracy"]:
        scores = cross_val_score(
            LargeMLPClassifier(**SMALL), X, y, cv=3, scoring=scoring
        )
        assert scores.mean() > 0.9


def test_randomized_search_matches_serial(iris):
    # Parallel and serial searches find the same scores (fits are reproducible).
    X, y = iris
    dist = {"alpha": [1e-4, 1e-2, 1.0], "solver": ["adam", "rmsprop", "sgd"]}
    kw = dict(n_iter=4, cv=3, random_state=0)
    par = RandomizedSearchCV(LargeMLPClassifier(**SMALL), dist, n_jobs=2, **kw).fit(
        X, y
    )
    ser = RandomizedSearchCV(LargeMLPClassifier(**SMALL), dist, n_jobs=1, **kw).fit(
        X, y
    )
    np.testing.assert_allclose(
        par.cv_results_["mean_test_score"], ser.cv_results_["mean_test_score"]
    )


def test_cross_validate_regressor(regression):
    # cross_validate with r2 and neg_mean_squared_error on the regressor.
    X, y = regression
    res = cross_validate(
        LargeMLPRegressor(**SMALL),
        X,
        y,
        cv=3,
        scoring=["r2", "neg_mean_squared_error"],
    )
    assert res["test_r2"].mean() > 0.3
    assert np.all(res["test_neg_mean_squared_error"] < 0)


def test_clone_get_set_params():
    # clone/get_params/set_params round-trip every parameter, extras included.
    est = LargeMLPClassifier(
        penalty="l1", dropout=0.1, device="cpu", class_weight="balanced"
    )
    params = est.get_params()
    assert params["penalty"] == "l1" and params["dropout"] == 0.1
    twin = clone(est)
    assert twin.get_params() == params
    twin.set_params(alpha=0.5, penalty="elasticnet")
    assert twin.alpha == 0.5 and est.alpha == 1e-4


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_pickle_and_joblib_round_trip(Est, iris, tmp_path):
    # Pickled and joblib-dumped models predict identically and keep training.
    X, y = iris
    est = Est(**SMALL).fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    for other in (restored, loaded):
        np.testing.assert_array_equal(est.predict(X), other.predict(X))
    loaded.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_array_equal(est.coefs_[0], loaded.coefs_[0])
