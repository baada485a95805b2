"""Vectorised searches and ensembles against scikit-learn's own searches."""

import warnings

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large.ensemble import LargeMLPEnsembleClassifier, LargeMLPEnsembleRegressor
from sknn_large.model_selection import (
    VectorizedGridSearchCV,
    VectorizedRandomizedSearchCV,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def _both(search_cls, vec_cls, *args, X, y, **kw):
    ref = search_cls(*args, **kw).fit(X, y)
    vec = vec_cls(*args, **kw).fit(X, y)
    return ref, vec


def _assert_same_results(ref, vec, metrics=("score",)):
    assert vec.best_params_ == ref.best_params_
    assert vec.best_index_ == ref.best_index_
    assert vec.n_splits_ == ref.n_splits_
    assert set(vec.cv_results_) == set(ref.cv_results_)
    for m in metrics:
        for key in (f"mean_test_{m}", f"rank_test_{m}", f"split0_test_{m}"):
            # float32 training: batched products round differently (~1e-7).
            np.testing.assert_allclose(
                vec.cv_results_[key], ref.cv_results_[key], rtol=1e-5
            )


def test_grid_search_matches_sklearn_pipeline_multimetric(iris):
    # Pipeline, preprocessing searched too, two metrics, refit by name.
    X, y = iris
    est = make_pipeline(
        StandardScaler(),
        LargeMLPClassifier(
            (8,), max_iter=15, device="cpu", random_state=0, batch_size=32
        ),
    )
    grid = {
        "largemlpclassifier__learning_rate_init": [1e-3, 3e-2],
        "largemlpclassifier__alpha": [1e-4, 1.0],
        "standardscaler__with_mean": [True, False],
    }
    kw = dict(
        cv=3,
        scoring=["accuracy", "f1_macro"],
        refit="accuracy",
        return_train_score=True,
    )
    ref, vec = _both(GridSearchCV, VectorizedGridSearchCV, est, grid, X=X, y=y, **kw)
    _assert_same_results(ref, vec, ("accuracy", "f1_macro"))
    np.testing.assert_allclose(
        vec.cv_results_["mean_train_accuracy"], ref.cv_results_["mean_train_accuracy"]
    )
    assert vec.best_score_ == pytest.approx(ref.best_score_)
    assert vec.best_estimator_.score(X, y) == ref.best_estimator_.score(X, y)
    assert set(vec.scorer_) == {"accuracy", "f1_macro"} and vec.refit_time_ > 0


def test_grid_search_matches_sklearn_binary_recall():
    # Binary targets (logistic output) with recall scoring and early stopping.
    X, y = load_digits(n_class=2, return_X_y=True)
    est = LargeMLPClassifier(
        (8,), max_iter=20, device="cpu", random_state=0, early_stopping=True
    )
    grid = {"learning_rate_init": [1e-4, 1e-2], "dropout": [0.0, 0.3]}
    ref, vec = _both(
        GridSearchCV,
        VectorizedGridSearchCV,
        est,
        grid,
        X=X / 16,
        y=y,
        cv=3,
        scoring="recall",
    )
    _assert_same_results(ref, vec)


def test_grid_search_matches_sklearn_regressor_r2():
    # Regressor with R^2, solver and penalty in the grid (several stacks).
    X, y = make_regression(150, 6, noise=5.0, random_state=0)
    est = LargeMLPRegressor(
        hidden_layer_sizes=(8,),
        max_iter=30,
        device="cpu",
        random_state=0,
        learning_rate_init=1e-2,
    )
    grid = {
        "solver": ["adam", "sgd"],
        "penalty": ["l2", "l1"],
        "alpha": [1e-2, 1.0],
        "learning_rate_init": [1e-3, 1e-2],
    }
    ref, vec = _both(
        GridSearchCV,
        VectorizedGridSearchCV,
        est,
        grid,
        X=X,
        y=y / 100,
        cv=3,
        scoring="r2",
    )
    _assert_same_results(ref, vec)


def test_randomized_search_matches_sklearn(iris):
    # Same sampled candidates (same random_state), same ranking.
    X, y = iris
    est = LargeMLPClassifier((8,), max_iter=15, device="cpu", random_state=0)
    dist = {"learning_rate_init": loguniform(1e-4, 1e-1), "alpha": [1e-4, 1e-1]}
    ref, vec = _both(
        RandomizedSearchCV,
        VectorizedRandomizedSearchCV,
        est,
        dist,
        X=X,
        y=y,
        n_iter=5,
        cv=3,
        random_state=0,
    )
    _assert_same_results(ref, vec)


def test_lbfgs_candidates_fall_back_and_match(iris):
    # lbfgs fits one at a time inside the same search.
    X, y = iris
    est = LargeMLPClassifier((5,), max_iter=30, device="cpu", random_state=0)
    grid = {"solver": ["lbfgs", "adam"]}
    ref, vec = _both(GridSearchCV, VectorizedGridSearchCV, est, grid, X=X, y=y, cv=3)
    _assert_same_results(ref, vec)


def test_failed_fits_get_error_score(iris):
    # An invalid candidate scores error_score and warns, as in GridSearchCV.
    X, y = iris
    est = LargeMLPClassifier((5,), max_iter=5, device="cpu", random_state=0)
    search = VectorizedGridSearchCV(est, {"batch_size": [0, 16]}, cv=3)
    search.fit(X, y)
    assert np.isnan(search.cv_results_["mean_test_score"][0])
    assert search.best_params_ == {"batch_size": 16}
    with pytest.raises(ValueError):
        VectorizedGridSearchCV(est, {"batch_size": [0]}, cv=3, error_score="raise").fit(
            X, y
        )


def _weighted_case(iris):
    # Standardised iris subsample with uneven weights; float64 members equal
    # their separate fits, so every score can be compared tightly.
    X, y = iris
    rows = np.random.RandomState(0).permutation(len(y))[:90]
    X, y = X[rows], y[rows]
    sw = np.random.RandomState(1).uniform(0.1, 3.0, len(y))
    est = LargeMLPClassifier(
        (6,),
        max_iter=4,
        batch_size=16,
        learning_rate_init=0.05,
        precision="float64",
        device="cpu",
        random_state=0,
    )
    return X, y, sw, est


def _assert_same_scores(ref, vec, metrics, n_splits):
    assert vec.vectorized_
    assert vec.best_params_ == ref.best_params_
    for m in metrics:
        keys = [f"mean_test_{m}"] + [f"split{i}_test_{m}" for i in range(n_splits)]
        for key in keys:
            np.testing.assert_allclose(
                vec.cv_results_[key], ref.cv_results_[key], rtol=1e-10, atol=1e-12
            )


def test_sample_weight_matches_sklearn_grid_search(iris):
    # sample_weight is split with the folds, reaches every stacked fit, the
    # scorer (as GridSearchCV routes it) and the refit, like GridSearchCV.
    X, y, sw, est = _weighted_case(iris)
    X = (X - X.mean(0)) / X.std(0)
    grid = {"alpha": [1e-4, 1.0], "learning_rate_init": [0.01, 0.1]}
    kw = dict(cv=3, scoring=["accuracy", "neg_log_loss"], refit="neg_log_loss")
    kw["return_train_score"] = True
    ref = GridSearchCV(est, grid, **kw).fit(X, y, sample_weight=sw)
    vec = VectorizedGridSearchCV(est, grid, **kw).fit(X, y, sample_weight=sw)
    _assert_same_scores(ref, vec, ("accuracy", "neg_log_loss"), 3)
    np.testing.assert_allclose(
        vec.cv_results_["mean_train_neg_log_loss"],
        ref.cv_results_["mean_train_neg_log_loss"],
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        vec.best_estimator_.coefs_[0], ref.best_estimator_.coefs_[0], rtol=1e-12
    )
    # The weights matter: the unweighted search scores differently.
    plain = VectorizedGridSearchCV(est, grid, **kw).fit(X, y)
    assert not np.allclose(
        plain.cv_results_["mean_test_neg_log_loss"],
        vec.cv_results_["mean_test_neg_log_loss"],
    )
    assert not np.allclose(
        plain.best_estimator_.coefs_[0], vec.best_estimator_.coefs_[0]
    )


def test_pipeline_step_sample_weight_matches_sklearn(iris):
    # est__sample_weight reaches the final step of each fold's pipeline,
    # standardscaler__sample_weight its preprocessing, as in GridSearchCV.
    X, y, sw, est = _weighted_case(iris)
    pipe = make_pipeline(StandardScaler(), est)
    grid = {
        "largemlpclassifier__alpha": [1e-4, 1.0],
        "standardscaler__with_mean": [True, False],
    }
    params = {
        "largemlpclassifier__sample_weight": sw,
        "standardscaler__sample_weight": sw[::-1].copy(),
    }
    ref = GridSearchCV(pipe, grid, cv=3).fit(X, y, **params)
    vec = VectorizedGridSearchCV(pipe, grid, cv=3).fit(X, y, **params)
    _assert_same_scores(ref, vec, ("score",), 3)
    np.testing.assert_allclose(
        vec.best_estimator_[-1].coefs_[0], ref.best_estimator_[-1].coefs_[0]
    )
    plain = VectorizedGridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert not np.array_equal(
        plain.cv_results_["split0_test_score"], vec.cv_results_["split0_test_score"]
    )


def test_metadata_routing_matches_sklearn(iris):
    # With metadata routing on, process_routing decides who gets the weights
    # (here the scaler, the network and the scorer) and groups reach the
    # splitter, exactly as for GridSearchCV.
    import sklearn
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import GroupKFold

    X, y, sw, est = _weighted_case(iris)
    groups = np.arange(len(y)) % 3
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(
            StandardScaler().set_fit_request(sample_weight=True),
            est.set_fit_request(sample_weight=True),
        )
        scorer = get_scorer("neg_log_loss").set_score_request(sample_weight=True)
        grid = {"largemlpclassifier__alpha": [1e-4, 1.0]}
        kw = dict(cv=GroupKFold(3), scoring=scorer)
        ref = GridSearchCV(pipe, grid, **kw).fit(X, y, sample_weight=sw, groups=groups)
        vec = VectorizedGridSearchCV(pipe, grid, **kw).fit(
            X, y, sample_weight=sw, groups=groups
        )
    _assert_same_scores(ref, vec, ("score",), 3)
    np.testing.assert_allclose(
        vec.best_estimator_[-1].coefs_[0], ref.best_estimator_[-1].coefs_[0]
    )


def test_fit_params_it_cannot_stack_run_as_sklearn(iris):
    # Parameters the stacked run cannot honour run sklearn's own search, which
    # then fails exactly as GridSearchCV does; a failing preprocessing fit
    # fails its jobs as in GridSearchCV.
    X, y, sw, est = _weighted_case(iris)
    pipe = make_pipeline(StandardScaler(), est)
    grid = {"largemlpclassifier__alpha": [1e-4]}
    vec = VectorizedGridSearchCV(pipe, grid, cv=2)
    with pytest.raises(ValueError, match="does not accept the sample_weight"):
        vec.fit(X, y, sample_weight=sw)  # a pipeline needs step__sample_weight
    assert not vec.vectorized_
    search = VectorizedGridSearchCV(pipe, grid, cv=2, error_score="raise")
    with pytest.raises(TypeError, match="bogus"):
        search.fit(X, y, standardscaler__bogus=1)
    assert search.vectorized_


def test_ensemble_beats_its_members_on_digits():
    # Measured on digits (half held out): averaging 8 seeds gains accuracy.
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X / 16, y, test_size=0.5, random_state=0, stratify=y
    )
    ens = LargeMLPEnsembleClassifier(
        n_estimators=8,
        hidden_layer_sizes=(32,),
        max_iter=20,
        device="cpu",
        random_state=0,
    ).fit(Xtr, ytr)
    members = [m.score(Xte, yte) for m in ens.estimators_]
    # Measured 2026-11-28: ensemble 0.890, members 0.823 on average, best 0.845.
    assert ens.score(Xte, yte) > max(members)
    assert ens.score(Xte, yte) > np.mean(members) + 0.03
    assert len({m.random_state for m in ens.estimators_}) == 8
    np.testing.assert_allclose(ens.predict_proba(Xte).sum(axis=1), 1.0)


def test_ensemble_members_equal_single_models(iris):
    # Each member is the LargeMLPClassifier its seed gives when fitted alone.
    X, y = iris
    ens = LargeMLPEnsembleClassifier(
        n_estimators=3,
        hidden_layer_sizes=(8,),
        max_iter=10,
        device="cpu",
        precision="float64",
        random_state=0,
    ).fit(X, y)
    for m in ens.estimators_:
        alone = LargeMLPClassifier(**m.get_params()).fit(X, y)
        np.testing.assert_allclose(m.coefs_[0], alone.coefs_[0], rtol=1e-9)
        # Each member carries its optimizer state, so training continues alike.
        m.partial_fit(X, y)
        alone.partial_fit(X, y)
        np.testing.assert_allclose(m.coefs_[0], alone.coefs_[0], rtol=1e-9)
    assert list(ens.classes_) == [0, 1, 2]


def test_ensemble_regressor_averages_members():
    # The regressor's prediction is the members' mean; score is R^2.
    X, y = make_regression(200, 5, noise=1.0, random_state=0)
    ens = LargeMLPEnsembleRegressor(
        n_estimators=4,
        hidden_layer_sizes=(16,),
        max_iter=100,
        device="cpu",
        learning_rate_init=1e-2,
        random_state=0,
    ).fit(X, y / 100)
    mean = np.mean([m.predict(X) for m in ens.estimators_], axis=0)
    np.testing.assert_allclose(ens.predict(X), mean)
    assert ens.score(X, y / 100) > 0.9
    with pytest.raises(ValueError, match="n_estimators"):
        LargeMLPEnsembleRegressor(n_estimators=0).fit(X, y)


def test_large_cpu_networks_run_as_sklearn_search():
    # On the CPU, networks too big to gain from stacking run as GridSearchCV
    # does (same results), so the vectorised search is never slower than it.
    from sklearn.datasets import make_classification
    from sklearn.model_selection import GridSearchCV

    from sknn_large import LargeMLPClassifier
    from sknn_large.model_selection import VectorizedGridSearchCV

    X, y = make_classification(n_samples=300, n_features=50, random_state=0)
    est = LargeMLPClassifier(
        hidden_layer_sizes=(256, 256), max_iter=2, device="cpu", random_state=0
    )
    grid = {"alpha": [1e-4, 1e-2]}
    ours = VectorizedGridSearchCV(est, grid, cv=2).fit(X, y)
    theirs = GridSearchCV(est, grid, cv=2).fit(X, y)
    assert not ours.vectorized_
    np.testing.assert_array_equal(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )
    small = VectorizedGridSearchCV(est.set_params(hidden_layer_sizes=(8,)), grid, cv=2)
    assert small.fit(X, y).vectorized_
