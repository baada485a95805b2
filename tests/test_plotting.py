"""TrainingCurveDisplay: sklearn's Display API over a fitted network's history."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._plotting import TrainingCurveDisplay

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg", force=True)
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _fit(est, X, y, **params):
    kw = dict(hidden_layer_sizes=(8,), max_iter=15, device="cpu", random_state=0)
    kw.update(params)
    return est(**kw).fit(X, y)


def test_from_estimator_plots_loss_curve_and_attributes(iris):
    # The loss line holds loss_curve_ per 1-based epoch; ax_/figure_ are set.
    X, y = iris
    clf = _fit(LargeMLPClassifier, X, y)
    display = TrainingCurveDisplay.from_estimator(clf)
    x_data, y_data = display.line_.get_data()
    np.testing.assert_array_equal(x_data, np.arange(1, clf.n_iter_ + 1))
    np.testing.assert_allclose(y_data, clf.loss_curve_)
    assert display.ax_.figure is display.figure_
    assert display.ax_.get_xlabel() == "Epoch"
    assert display.line_.get_label() == "Training loss"
    # Without early stopping there is no validation axis.
    assert display.validation_line_ is None
    assert display.ax_validation_ is None
    assert display.best_epoch_ == int(np.argmin(clf.loss_curve_)) + 1


def test_validation_scores_go_on_a_secondary_axis(iris):
    # Early stopping's validation_scores_ are drawn on a twin y-axis, and the
    # best epoch marked is the one whose weights the estimator kept.
    X, y = iris
    clf = _fit(LargeMLPClassifier, X, y, early_stopping=True, max_iter=30)
    display = TrainingCurveDisplay.from_estimator(clf)
    assert display.ax_validation_ is not None
    assert display.ax_validation_ is not display.ax_
    np.testing.assert_allclose(
        display.validation_line_.get_ydata(), clf.validation_scores_
    )
    assert display.ax_validation_.get_ylabel() == "Validation accuracy"
    best = int(np.argmax(clf.validation_scores_)) + 1
    assert display.best_epoch_ == best
    assert clf.validation_scores_[best - 1] == clf.best_validation_score_
    np.testing.assert_array_equal(display.best_line_.get_xdata(), [best, best])
    labels = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert labels == ["Training loss", "Validation accuracy", f"Best epoch ({best})"]


def test_regressor_labels_validation_r2(regression):
    # A regressor's validation score is R², and the label says so.
    X, y = regression
    reg = _fit(LargeMLPRegressor, X, y, early_stopping=True, max_iter=12)
    display = TrainingCurveDisplay.from_estimator(reg)
    assert display.validation_line_.get_label() == "Validation R²"


def test_draws_on_given_axes_and_passes_style(iris):
    # `ax`, `name`, `loss_kw`, `validation_kw` and `mark_best` are honoured.
    X, y = iris
    clf = _fit(LargeMLPClassifier, X, y, early_stopping=True, max_iter=12)
    fig, ax = plt.subplots()
    display = TrainingCurveDisplay.from_estimator(
        clf,
        ax=ax,
        name="mine",
        loss_kw={"color": "black", "linewidth": 3},
        validation_kw={"linestyle": ":"},
        mark_best=False,
    )
    assert display.ax_ is ax and display.figure_ is fig
    assert display.line_.get_label() == "Training loss (mine)"
    assert display.validation_line_.get_label() == "Validation accuracy (mine)"
    assert display.line_.get_color() == "black"
    assert display.line_.get_linewidth() == 3
    assert display.validation_line_.get_linestyle() == ":"
    assert display.best_line_ is None
    # The best epoch is still computed when not drawn.
    assert display.best_epoch_ == int(np.argmax(clf.validation_scores_)) + 1


def test_pipeline_uses_its_final_step(iris):
    # A fitted Pipeline is accepted: the last step's history is plotted.
    X, y = iris
    pipe = make_pipeline(
        StandardScaler(),
        LargeMLPClassifier(
            hidden_layer_sizes=(8,), max_iter=10, device="cpu", random_state=0
        ),
    ).fit(X, y)
    display = TrainingCurveDisplay.from_estimator(pipe)
    np.testing.assert_allclose(display.line_.get_ydata(), pipe[-1].loss_curve_)


def test_works_with_sklearn_mlp(iris):
    # Any estimator with loss_curve_ works, scikit-learn's own MLP included.
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0)
    clf.fit(X, y)
    display = TrainingCurveDisplay.from_estimator(clf)
    np.testing.assert_allclose(display.line_.get_ydata(), clf.loss_curve_)


def test_unfitted_estimator_raises():
    # Plotting an unfitted model is sklearn's NotFittedError, not AttributeError.
    with pytest.raises(NotFittedError):
        TrainingCurveDisplay.from_estimator(LargeMLPClassifier())


def test_estimator_without_loss_curve_raises(iris):
    # sklearn's lbfgs MLP records no loss_curve_: a clear ValueError says so.
    X, y = iris
    clf = MLPClassifier(solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="no loss_curve_"):
        TrainingCurveDisplay.from_estimator(clf)


def test_direct_construction_and_plot():
    # Curves recorded elsewhere can be plotted by building the display directly.
    display = TrainingCurveDisplay(
        loss_curve=[1.0, 0.5, 0.4, 0.45],
        validation_scores=[0.5, 0.7, 0.7, 0.6],
        score_name="Val F1",
        name="run 3",
    )
    out = display.plot()
    assert out is display
    assert display.best_epoch_ == 2  # the first of the tied best scores
    assert display.line_.get_label() == "Training loss (run 3)"
    assert display.ax_validation_.get_ylabel() == "Val F1"


@pytest.mark.parametrize(
    "loss, scores, match",
    [
        ([], None, "non-empty"),
        ([1.0, 0.5], [0.1], "one value per epoch"),
    ],
)
def test_invalid_curves_raise(loss, scores, match):
    # Empty losses or mismatched score lengths are rejected before drawing.
    display = TrainingCurveDisplay(loss_curve=loss, validation_scores=scores)
    with pytest.raises(ValueError, match=match):
        display.plot()


def test_import_does_not_import_matplotlib():
    # matplotlib stays optional: importing the package and module never loads it.
    import subprocess
    import sys

    code = (
        "import sys, sknn_large, sknn_large._plotting; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
