"""fit(X_val=, y_val=, sample_weight_val=): the caller's validation set."""

import inspect
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier, LargeMLPRegressor, _checkpoint
from sknn_large._estimator import _stacked
from sknn_large.ensemble import LargeMLPEnsembleClassifier
from sknn_large.model_selection import VectorizedGridSearchCV

KW = dict(hidden_layer_sizes=(8,), max_iter=12, random_state=0, precision="float64")


@pytest.fixture(scope="module")
def split():
    X, y = load_iris(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(y))
    X, y = (X[order] - X.mean(0)) / X.std(0), y[order]
    return X[:110], y[:110], X[110:], y[110:]


@pytest.fixture(scope="module")
def reg_split():
    X, y = make_regression(
        n_samples=150, n_features=6, n_targets=2, noise=3.0, random_state=0
    )
    y = (y - y.mean(0)) / y.std(0)
    return X[:110], y[:110], X[110:], y[110:]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_scores_and_losses_equal_scoring_by_hand(split):
    # Without early stopping every epoch is scored on X_val; after the last
    # epoch the recorded score and loss are those computed by hand on the
    # final model: accuracy (score) and the mean log-loss (validation loss).
    # Training itself is unchanged by the validation set.
    X, y, X_val, y_val = split
    sw_val = np.linspace(0.5, 2.0, len(y_val))
    clf = LargeMLPClassifier(**KW)
    _quiet(clf.fit, X, y, X_val=X_val, y_val=y_val, sample_weight_val=sw_val)
    assert len(clf.validation_scores_) == clf.n_iter_ == 12
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.validation_scores_[-1] == pytest.approx(
        clf.score(X_val, y_val, sample_weight=sw_val), abs=1e-12
    )
    proba = clf.predict_proba(X_val)
    want = log_loss(y_val, proba, sample_weight=sw_val)
    assert clf.validation_loss_curve_[-1] == pytest.approx(want, rel=1e-9)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    plain = _quiet(LargeMLPClassifier(**KW).fit, X, y)
    assert plain.validation_scores_ is None and plain.validation_loss_curve_ is None
    assert clf.loss_curve_ == plain.loss_curve_
    for a, b in zip(clf.coefs_, plain.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_regressor_validation_loss_is_its_training_loss(reg_split):
    # Two outputs: the score is R^2 and the loss is half the squared error
    # averaged over outputs, as loss_curve_ reports it.
    X, y, X_val, y_val = reg_split
    reg = _quiet(LargeMLPRegressor(**KW).fit, X, y, X_val=X_val, y_val=y_val)
    pred = reg.predict(X_val)
    assert reg.validation_scores_[-1] == pytest.approx(reg.score(X_val, y_val))
    want = 0.5 * ((pred - y_val) ** 2).mean()
    assert reg.validation_loss_curve_[-1] == pytest.approx(want, rel=1e-9)
    assert len(reg.validation_loss_curve_) == reg.n_iter_


def test_early_stopping_on_X_val_restores_the_best_epoch(split):
    # With early stopping X_val replaces the validation_fraction split: every
    # training row trains (t_ counts them all) and the weights of the
    # best-scoring epoch are restored.
    X, y, X_val, y_val = split
    clf = LargeMLPClassifier(
        hidden_layer_sizes=(8,),
        learning_rate_init=0.05,
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=200,
        random_state=1,
    )
    _quiet(clf.fit, X, y, X_val=X_val, y_val=y_val)
    assert clf.n_iter_ < 200
    assert clf.t_ == clf.n_iter_ * len(X)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.score(X_val, y_val) == clf.best_validation_score_
    best = int(np.argmax(clf.validation_scores_))
    assert best < clf.n_iter_ - 1
    assert len(clf.validation_loss_curve_) == clf.n_iter_


def test_early_stopping_split_records_its_loss_curve(split):
    # The internal early-stopping split has a validation loss curve too.
    X, y, _, _ = split
    clf = _quiet(LargeMLPClassifier(early_stopping=True, **KW).fit, X, y)
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_)
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert all(v > 0 for v in clf.validation_loss_curve_)


def test_class_weights_weigh_validation_rows_as_training_rows(split):
    # A validation row weighs what a training row of its class weighs
    # ('balanced' counts the training classes), in score and loss.
    X, y, X_val, y_val = split
    keep = (y != 2) | (np.arange(len(y)) % 3 == 0)  # make class 2 rare
    X, y = X[keep], y[keep]
    clf = LargeMLPClassifier(class_weight="balanced", **KW)
    _quiet(clf.fit, X, y, X_val=X_val, y_val=y_val)
    counts = np.bincount(y)
    per_class = len(y) / (3 * counts)
    sw = per_class[y_val]
    want = log_loss(y_val, clf.predict_proba(X_val), sample_weight=sw)
    assert clf.validation_loss_curve_[-1] == pytest.approx(want, rel=1e-9)
    assert clf.validation_scores_[-1] == pytest.approx(
        clf.score(X_val, y_val, sample_weight=sw), abs=1e-12
    )


def test_label_smoothing_applies_to_the_validation_loss(split):
    # The validation loss is the training loss: smoothed when training is.
    import torch
    import torch.nn.functional as F

    X, y, X_val, y_val = split
    clf = LargeMLPClassifier(label_smoothing=0.1, **KW)
    _quiet(clf.fit, X, y, X_val=X_val, y_val=y_val)
    raw = torch.from_numpy(np.log(clf.predict_proba(X_val)))
    want = F.cross_entropy(raw, torch.from_numpy(y_val), label_smoothing=0.1)
    assert clf.validation_loss_curve_[-1] == pytest.approx(want.item(), rel=1e-9)


def test_pipeline_search_routes_and_transforms_X_val(split):
    # Metadata routing: the final step requests X_val and y_val, the pipeline
    # transforms X_val through its fitted scaler (transform_input), and the
    # search passes it to every fit. The refitted model's scores are those of
    # the transformed validation set.
    X, y, X_val, y_val = split
    X, X_val = 10 * X + 50, 10 * X_val + 50  # scaling matters
    assert len(X_val) != len(X)  # else the search would split it with the folds
    with sklearn.config_context(enable_metadata_routing=True):
        mlp = LargeMLPClassifier(**KW).set_fit_request(X_val=True, y_val=True)
        pipe = Pipeline(
            [("scale", StandardScaler()), ("mlp", mlp)], transform_input=["X_val"]
        )
        for Search in (GridSearchCV, VectorizedGridSearchCV):
            search = Search(pipe, {"mlp__alpha": [1e-4, 1e-1]}, cv=2)
            _quiet(search.fit, X, y, X_val=X_val, y_val=y_val)
            best = search.best_estimator_
            final = best[-1]
            Xt = best[:-1].transform(X_val)
            assert len(final.validation_scores_) == final.n_iter_
            assert final.validation_scores_[-1] == final.score(Xt, y_val)
            want = log_loss(y_val, final.predict_proba(Xt))
            assert final.validation_loss_curve_[-1] == pytest.approx(want, rel=1e-9)


def test_set_fit_request_names_the_validation_parameters():
    # scikit-learn derives set_fit_request from fit's signature.
    for Est in (LargeMLPClassifier, LargeMLPRegressor):
        params = inspect.signature(Est.set_fit_request).parameters
        assert {"X_val", "y_val", "sample_weight_val", "sample_weight"} <= set(params)
        fit = inspect.signature(Est.fit).parameters
        assert all(
            fit[n].kind is inspect.Parameter.KEYWORD_ONLY and fit[n].default is None
            for n in ("X_val", "y_val", "sample_weight_val")
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"X_val": "X"}, "X_val is provided, but y_val was not provided"),
        ({"y_val": "y"}, "y_val is provided, but X_val was not provided"),
        ({"sample_weight_val": "w"}, "sample_weight_val is provided without"),
        ({"X_val": "X3", "y_val": "y"}, "features"),
        ({"X_val": "X", "y_val": "y_new"}, "y_val has classes not in the training"),
        ({"X_val": "X", "y_val": "Y_multilabel"}, "y_val must be of the training"),
    ],
)
def test_bad_validation_sets_are_refused(split, kwargs, message):
    # One of X_val and y_val alone, the wrong number of features or labels
    # the training data never had raise a clear ValueError before training.
    X, y, X_val, y_val = split
    values = {
        "X": X_val,
        "X3": X_val[:, :3],
        "y": y_val,
        "y_new": np.where(y_val == 2, 7, y_val),
        "Y_multilabel": np.eye(3, dtype=int)[y_val],
        "w": np.ones(len(y_val)),
    }
    with pytest.raises(ValueError, match=message):
        LargeMLPClassifier(**KW).fit(X, y, **{k: values[v] for k, v in kwargs.items()})


def test_lbfgs_refuses_a_validation_set(split):
    # L-BFGS has no epochs to score after.
    X, y, X_val, y_val = split
    with pytest.raises(ValueError, match="stochastic solver"):
        LargeMLPClassifier(solver="lbfgs").fit(X, y, X_val=X_val, y_val=y_val)


def test_partial_fit_is_unaffected(split):
    # partial_fit takes no validation set and reports none, even after a fit
    # that had one.
    X, y, X_val, y_val = split
    assert "X_val" not in inspect.signature(LargeMLPClassifier.partial_fit).parameters
    clf = _quiet(LargeMLPClassifier(**KW).fit, X, y, X_val=X_val, y_val=y_val)
    clf.partial_fit(X, y)
    assert clf.validation_scores_ is None and clf.validation_loss_curve_ is None
    fresh = LargeMLPClassifier(**KW).partial_fit(X, y, classes=np.unique(y))
    assert fresh.validation_scores_ is None and fresh.validation_loss_curve_ is None


@pytest.mark.parametrize("early_stopping", [False, True])
def test_stacked_members_score_X_val_as_alone(split, early_stopping):
    # fit_many scores every member on the one validation set exactly as each
    # estimator's own fit(X_val=...) does, in one stack.
    X, y, X_val, y_val = split
    base = LargeMLPClassifier(early_stopping=early_stopping, n_iter_no_change=2, **KW)
    ests = [clone(base).set_params(learning_rate_init=lr) for lr in (1e-3, 1e-2)]
    stacks = []
    real = _stacked.fit_members

    def recording(members, feed):
        stacks.append(len(members))
        return real(members, feed)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(_stacked, "fit_members", recording)
        stacked = _stacked.fit_many(
            [clone(e) for e in ests], X, y, validation=(X_val, y_val, None)
        )
        alone = [clone(e).fit(X, y, X_val=X_val, y_val=y_val) for e in ests]
    assert stacks == [2]
    for a, b in zip(stacked, alone, strict=True):
        assert not isinstance(a, BaseException), a
        assert a.validation_scores_ == b.validation_scores_
        assert a.validation_loss_curve_ == pytest.approx(
            b.validation_loss_curve_, rel=1e-9
        )
        np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-9, atol=1e-12)


def test_ensemble_members_are_scored_on_X_val(split):
    # The ensembles forward the validation set to every member.
    X, y, X_val, y_val = split
    ens = LargeMLPEnsembleClassifier(
        n_estimators=2, hidden_layer_sizes=(6,), max_iter=5, random_state=0
    )
    _quiet(ens.fit, X, y, X_val=X_val, y_val=y_val)
    for m in ens.estimators_:
        assert len(m.validation_scores_) == m.n_iter_ == 5
        assert m.validation_scores_[-1] == m.score(X_val, y_val)


def test_checkpoints_fingerprint_the_validation_set(split):
    # A checkpoint of a fit with one validation set does not resume a fit
    # with another; fits without one keep their fingerprints.
    X, y, X_val, y_val = split
    params = LargeMLPClassifier().get_params()
    plain = _checkpoint.fingerprint(params, X, y, None, None)
    assert plain == _checkpoint.fingerprint(params, X, y, None, None, None)
    one = _checkpoint.fingerprint(params, X, y, None, None, (X_val, y_val, None))
    other = _checkpoint.fingerprint(params, X, y, None, None, (X_val + 1, y_val, None))
    assert len({plain, one, other}) == 3


def test_checkpoint_resumes_a_fit_with_a_validation_set(split, tmp_path, monkeypatch):
    # A crashed fit with X_val resumes from its checkpoint and ends with the
    # weights and both validation curves of an uninterrupted run.
    from sknn_large._engine import _loop

    X, y, X_val, y_val = split
    kw = dict(KW, early_stopping=True, n_iter_no_change=50, max_iter=6, dropout=0.1)
    path = tmp_path / "run.ckpt"
    whole = _quiet(LargeMLPClassifier(**kw).fit, X, y, X_val=X_val, y_val=y_val)
    real, calls = _loop._run_epoch, {"n": 0}

    def crashing(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(_loop, "_run_epoch", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        LargeMLPClassifier(checkpoint=path, **kw).fit(X, y, X_val=X_val, y_val=y_val)
    monkeypatch.undo()
    with pytest.raises(_checkpoint.CheckpointError, match="other"):
        LargeMLPClassifier(checkpoint=path, **kw).fit(
            X, y, X_val=X_val, y_val=y_val[::-1]
        )
    resumed = LargeMLPClassifier(checkpoint=path, **kw)
    _quiet(resumed.fit, X, y, X_val=X_val, y_val=y_val)
    assert resumed.validation_scores_ == whole.validation_scores_
    assert resumed.validation_loss_curve_ == whole.validation_loss_curve_
    for a, b in zip(resumed.coefs_, whole.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_validation_set_survives_saving(split, tmp_path):
    # validation_loss_curve_ is part of the model file and the pickle.
    import pickle

    from sknn_large._persist import from_bytes, to_bytes

    X, y, X_val, y_val = split
    clf = _quiet(LargeMLPClassifier(**KW).fit, X, y, X_val=X_val, y_val=y_val)
    for loaded in (from_bytes(to_bytes(clf)), pickle.loads(pickle.dumps(clf))):
        assert loaded.validation_loss_curve_ == clf.validation_loss_curve_
        assert loaded.validation_scores_ == clf.validation_scores_


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("weighted", [False, True])
def test_epoch_scores_are_accuracy_score_of_the_labels(split, kind, weighted):
    # The per-epoch score is computed on the encoded targets; it must equal
    # sklearn's accuracy_score of the decoded labels for every target kind.
    X, y, X_val, y_val = split
    names = np.array(["setosa", "versicolor", "virginica"])
    targets = {
        "multiclass": lambda t: names[t],
        "binary": lambda t: names[(t > 0).astype(int)],
        "multilabel": lambda t: np.column_stack([t > 0, t == 1, t < 2]).astype(int),
    }[kind]
    sw_val = np.linspace(0.5, 2.0, len(y_val)) if weighted else None
    clf = LargeMLPClassifier(**KW)
    _quiet(
        clf.fit,
        X,
        targets(y),
        X_val=X_val,
        y_val=targets(y_val),
        sample_weight_val=sw_val,
    )
    assert clf.validation_scores_[-1] == pytest.approx(
        clf.score(X_val, targets(y_val), sample_weight=sw_val), abs=1e-12
    )
