"""scikit-learn's callback API (sklearn >= 1.9): progress and monitoring."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sknn_large import LargeMLPClassifier, LargeMLPRegressor

callback = pytest.importorskip("sklearn.callback")


class _Recorder:
    """A minimal FitCallback that records the tasks it sees."""

    def __init__(self, stop_after=None):
        self.events = []
        self.stop_after = stop_after

    def setup(self, estimator, context):
        self.events.append(("setup", context.task_name))

    def on_fit_task_begin(self, estimator, context):
        self.events.append(("begin", context.task_name))

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
        self.events.append(("end", context.task_name))
        if context.task_name == "epoch" and fitted_estimator is not None:
            self.last_model = fitted_estimator
        epochs = sum(1 for e in self.events if e == ("end", "epoch"))
        return self.stop_after is not None and epochs >= self.stop_after

    def teardown(self, estimator, context):
        self.events.append(("teardown", context.task_name))


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_callbacks_see_every_epoch(Est, iris):
    # Each epoch is a subtask of fit; callbacks get begin/end and a fitted model.
    X, y = iris
    rec = _Recorder()
    est = Est(hidden_layer_sizes=(4,), max_iter=5).set_callbacks(rec).fit(X, y)
    assert rec.events.count(("end", "epoch")) == est.n_iter_ == 5
    assert rec.events[0] == ("setup", "fit") and rec.events[-1] == ("teardown", "fit")
    assert rec.last_model.predict(X).shape[0] == len(X)


def test_callback_can_stop_training(iris):
    # A callback returning True from on_fit_task_end stops after that epoch.
    X, y = iris
    clf = LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=50)
    clf.set_callbacks(_Recorder(stop_after=3)).fit(X, y)
    assert clf.n_iter_ == 3


def test_progress_bar_and_scoring_monitor_run(iris):
    # sklearn's own ProgressBar and ScoringMonitor work with our estimators.
    X, y = iris
    clf = LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3)
    clf.set_callbacks(
        callback.ProgressBar(), callback.ScoringMonitor(scoring="accuracy")
    )
    clf.fit(X, y)
    assert clf.n_iter_ == 3


def test_callbacks_propagate_from_grid_search(iris):
    # Auto-propagated callbacks set on GridSearchCV reach every inner fit.
    X, y = iris
    search = GridSearchCV(
        LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=2),
        {"alpha": [1e-4, 1e-2]},
        cv=2,
    )
    search.set_callbacks(callback.ProgressBar())
    search.fit(X, y)
    assert np.isfinite(search.best_score_)


def test_works_without_sklearn_callback_api(tmp_path):
    # With a scikit-learn that has no sklearn.callback (< 1.9) the estimators
    # import, fit and predict as before.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sklearn.callback, sklearn.model_selection, sklearn.pipeline
        import sklearn.linear_model, sklearn.metrics, sklearn.preprocessing
        # scikit-learn itself needs sklearn.callback from 1.9 on; hide only the
        # name sknn_large asks for, as on an older release that lacks it.
        del sklearn.callback.CallbackSupportMixin
        from sklearn.datasets import load_iris
        from sknn_large import LargeMLPClassifier
        X, y = load_iris(return_X_y=True)
        clf = LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3).fit(X, y)
        assert not hasattr(clf, "set_callbacks")
        print(clf.predict(X[:2]).shape)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "(2,)" in out.stdout


def test_callbacks_fire_for_every_member_of_a_stack(iris):
    # A stacked fit (K = 3) reports each member's epochs to that member's own
    # callbacks, and a callback can stop its member alone.
    from sknn_large._estimator import fit_many

    X, y = iris
    recs = [_Recorder(), _Recorder(stop_after=2), _Recorder()]
    ests = [
        LargeMLPClassifier(
            hidden_layer_sizes=(4,), max_iter=4, random_state=i
        ).set_callbacks(rec)
        for i, rec in enumerate(recs)
    ]
    fitted = fit_many(ests, X, y)
    assert [m.n_iter_ for m in fitted] == [4, 2, 4]
    for rec, m in zip(recs, fitted, strict=True):
        assert rec.events.count(("end", "epoch")) == m.n_iter_
        assert rec.events[0] == ("setup", "fit") and rec.events[-1][0] == "teardown"
