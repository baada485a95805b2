"""TabularMLPClassifier / TabularMLPRegressor: tables in, an ensemble out."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sknn_large import TabularMLPClassifier, TabularMLPRegressor
from sknn_large.ensemble import LargeMLPEnsembleClassifier
from sknn_large.tabular import TabularPreprocessor, auto_batch_size

# Small networks, few members and a higher rate keep each fit well under a second.
FAST = {
    "n_estimators": 3,
    "hidden_layer_sizes": (32,),
    "max_iter": 40,
    "learning_rate_init": 0.01,
}


def _table(n=300, seed=0):
    """A mixed table with missing values and a target that needs every column."""
    rng = np.random.RandomState(seed)
    age = rng.uniform(18, 80, n)
    income = np.exp(rng.normal(10, 1, n))  # heavy right tail
    city = rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], n)
    member = rng.rand(n) < 0.5
    age_missing = age.copy()
    age_missing[rng.rand(n) < 0.1] = np.nan
    X = pd.DataFrame(
        {
            "age": age_missing,
            "income": income,
            "city": pd.Categorical(city),
            "member": member,
            "note": np.where(rng.rand(n) < 0.5, "x", None),
        }
    )
    score = (
        (age - 50) / 15
        + np.log(income)
        - 10
        + np.select([city == "Oslo", city == "Lima"], [1.5, -1.5], 0.0)
        + member
    )
    return X, score


def test_classifier_takes_a_mixed_dataframe_as_it_is():
    X, score = _table()
    y = np.where(score > np.median(score), "high", "low")
    clf = TabularMLPClassifier(random_state=0, **FAST).fit(X, y)
    assert clf.classes_.tolist() == ["high", "low"]
    assert clf.n_features_in_ == 5
    assert clf.feature_names_in_.tolist() == list(X.columns)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert clf.score(X, y) > 0.85
    # Unseen categories and missing values at predict time are handled.
    new = X.head(3).copy()
    new["city"] = pd.Categorical(["Rome", "Oslo", None])
    assert clf.predict(new).shape == (3,)


def test_regressor_predicts_on_the_targets_scale():
    X, score = _table()
    y = 1e6 + 1e5 * score  # far from unit scale
    reg = TabularMLPRegressor(random_state=0, **FAST).fit(X, y)
    assert reg.target_mean_ == pytest.approx([y.mean()])
    assert reg.target_scale_ == pytest.approx([y.std()])
    pred = reg.predict(X)
    assert abs(pred.mean() - y.mean()) < 0.1 * y.std()
    assert r2_score(y, pred) > 0.8
    # The networks themselves fit the standardised target.
    inner = reg.ensemble_.predict(reg.preprocessor_.transform(X))
    np.testing.assert_allclose(inner * y.std() + y.mean(), pred, rtol=1e-9)


def test_regressor_multi_output():
    X, score = _table()
    Y = np.column_stack([score, -3 * score + 100])
    reg = TabularMLPRegressor(random_state=0, **FAST).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (len(X), 2)
    assert r2_score(Y, pred, multioutput="raw_values").min() > 0.7


def test_members_are_trained_together_and_differ():
    X, score = _table()
    y = score > 0
    clf = TabularMLPClassifier(random_state=0, **FAST).fit(X, y)
    members = clf.ensemble_.estimators_
    assert len(members) == FAST["n_estimators"]
    first = [m.coefs_[0] for m in members]
    assert not np.allclose(first[0], first[1])
    Z = clf.preprocessor_.transform(X)
    mean = np.mean([m.predict_proba(Z) for m in members], axis=0)
    np.testing.assert_allclose(clf.predict_proba(X), mean, rtol=1e-6)


def test_best_epoch_is_selected_on_held_out_rows():
    X, score = _table(n=400)
    y = score > 0
    clf = TabularMLPClassifier(random_state=0, **{**FAST, "max_iter": 40}).fit(X, y)
    for m in clf.ensemble_.estimators_:
        assert m.early_stopping
        assert len(m.validation_scores_) == m.n_iter_
        # The kept weights are those of the best validation epoch.
        assert m.best_validation_score_ == max(m.validation_scores_)
    assert clf.n_iter_ == max(m.n_iter_ for m in clf.ensemble_.estimators_)


def test_members_use_the_defaults_schedule_and_smoothing():
    X, score = _table()
    clf = TabularMLPClassifier(random_state=0, **FAST).fit(X, score > 0)
    member = clf.ensemble_.estimators_[0]
    assert member.learning_rate == "cosine"
    assert member.label_smoothing == clf.label_smoothing == 0.1
    # The classifier's rule: at least 8 batches an epoch.
    assert member.batch_size == auto_batch_size(270, 8) == 33


def test_tiny_training_sets_train_without_a_hold_out():
    X, score = _table(n=12)
    clf = TabularMLPClassifier(random_state=0, **FAST).fit(X, score > 0)
    assert not clf.ensemble_.estimators_[0].early_stopping
    assert clf.n_iter_ == FAST["max_iter"]


@pytest.mark.parametrize(
    ("n_train", "expected"),
    [(10, 10), (100, 32), (1000, 250), (4000, 512), (100_000, 512)],
)
def test_auto_batch_size(n_train, expected):
    assert auto_batch_size(n_train) == expected


@pytest.mark.parametrize(
    ("n_train", "expected"),
    [(10, 10), (100, 32), (1000, 125), (4000, 500), (5000, 512)],
)
def test_auto_batch_size_with_eight_batches_an_epoch(n_train, expected):
    assert auto_batch_size(n_train, 8) == expected


def test_preprocessing_is_fitted_on_training_rows_only():
    X, score = _table()
    clf = TabularMLPClassifier(random_state=0, **FAST).fit(
        X.iloc[:150], score[:150] > 0
    )
    alone = TabularPreprocessor(max_onehot_categories=1000).fit(X.iloc[:150])
    np.testing.assert_array_equal(clf.preprocessor_.center_, alone.center_)
    np.testing.assert_array_equal(clf.preprocessor_.scale_, alone.scale_)


def test_same_seed_same_model():
    X, score = _table()
    a = TabularMLPRegressor(random_state=3, **FAST).fit(X, score).predict(X)
    b = TabularMLPRegressor(random_state=3, **FAST).fit(X, score).predict(X)
    np.testing.assert_array_equal(a, b)


def test_in_a_pipeline_search_with_f1_scoring():
    X, score = _table()
    y = (score > 0).astype(int)
    # A pipeline step before it sees the DataFrame too.
    pipe = make_pipeline(FunctionTransformer(lambda t: t), TabularMLPClassifier(**FAST))
    search = GridSearchCV(
        pipe,
        {"tabularmlpclassifier__alpha": [1e-4, 1e-2]},
        cv=3,
        scoring="f1",
    ).fit(X, y)
    assert search.best_score_ > 0.7
    scores = cross_val_score(TabularMLPClassifier(**FAST), X, y, cv=3, scoring="recall")
    assert scores.min() > 0.6


def test_pickle_round_trip():
    X, score = _table()
    reg = TabularMLPRegressor(random_state=0, **FAST).fit(X, score)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))


def test_clear_errors():
    X, score = _table()
    with pytest.raises(ValueError, match="requires y"):
        TabularMLPClassifier().fit(X, None)
    reg = TabularMLPRegressor(random_state=0, **FAST).fit(X, score)
    with pytest.raises(ValueError, match="features"):
        reg.predict(X.iloc[:, :3].to_numpy())
    with pytest.raises(ValueError, match="NaN"):
        TabularMLPRegressor(**FAST).fit(X, np.where(score > 0, np.nan, score))
    with pytest.raises(ValueError, match="label_smoothing"):
        TabularMLPClassifier(label_smoothing=1.0).fit(X, score > 0)


@pytest.mark.parametrize("Est", [TabularMLPClassifier, LargeMLPEnsembleClassifier])
def test_one_class_predicts_that_class(Est):
    # Trained on a single label, the ensemble predicts it for every row, even
    # where a barely trained logistic output is above one half.
    rng = np.random.RandomState(0)
    X, y = rng.uniform(size=(10, 3)), np.full(10, "only")
    est = Est(n_estimators=2, max_iter=1, random_state=0).fit(X, y)
    assert est.predict(rng.uniform(-50, 50, size=(20, 3))).tolist() == ["only"] * 20


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_own_validation_table_chooses_the_best_epoch(task):
    # X_val goes through the fitted preprocessing (and y_val through the
    # target scaling); every network keeps the weights of its best epoch on it.
    X, score = _table(n=400)
    X_val, score_val = _table(n=150, seed=1)
    if task == "classification":
        Est, y, y_val = TabularMLPClassifier, score > 0, score_val > 0
        per_epoch = 8
    else:
        Est, y, y_val = TabularMLPRegressor, score, score_val
        per_epoch = 4
    est = Est(random_state=0, **FAST).fit(X, y, X_val=X_val, y_val=y_val)
    Z_val = est.preprocessor_.transform(X_val)
    if task == "regression":
        y_val = (y_val - est.target_mean_[0]) / est.target_scale_[0]
    for m in est.ensemble_.estimators_:
        assert m.early_stopping
        assert len(m.validation_scores_) == m.n_iter_
        assert max(m.validation_scores_) == pytest.approx(m.score(Z_val, y_val))
        # Every training row trained: no rows were held out of X.
        assert m.batch_size == auto_batch_size(len(X), per_epoch)


def test_validation_table_is_routed_through_a_search():
    import sklearn

    X, score = _table(n=300)
    X_val, score_val = _table(n=100, seed=1)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = TabularMLPClassifier(random_state=0, **FAST).set_fit_request(
            X_val=True, y_val=True
        )
        search = GridSearchCV(clf, {"alpha": [1e-4, 1e-2]}, cv=2).fit(
            X, score > 0, X_val=X_val, y_val=score_val > 0
        )
    best = search.best_estimator_
    Z_val = best.preprocessor_.transform(X_val)
    member = best.ensemble_.estimators_[0]
    assert max(member.validation_scores_) == pytest.approx(
        member.score(Z_val, score_val > 0)
    )
