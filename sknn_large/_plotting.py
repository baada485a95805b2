"""Plots of a fitted network's training history.

matplotlib is optional: it is imported only when a plot is drawn, so
``import sknn_large`` never needs it.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted


def _require_matplotlib(caller: str) -> None:
    """Raise an ``ImportError`` that says how to install matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{caller} requires matplotlib. Install it with `pip install matplotlib`."
        ) from exc


def _final_estimator(estimator):
    """The last step of a pipeline, or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return steps[-1][1]
    return estimator


def _best_epoch(loss_curve, validation_scores) -> int:
    """1-based epoch of the best validation score, else of the lowest loss.

    The first of tied epochs wins, which is the one whose weights the
    estimators keep when early stopping restores the best model.
    """
    if validation_scores is not None and len(validation_scores) > 0:
        return int(np.argmax(validation_scores)) + 1
    return int(np.argmin(loss_curve)) + 1


class TrainingCurveDisplay:
    """Training-loss curve and validation scores of a fitted network.

    Draws ``loss_curve_`` against the epoch on the left axis and, when the
    model was trained with ``early_stopping=True``, ``validation_scores_`` on a
    second y-axis on the right. A dashed vertical line marks the best epoch:
    the one with the best validation score (whose weights early stopping
    keeps) or, without validation, the one with the lowest training loss.

    Build it with :meth:`from_estimator`; create it directly only to plot
    curves recorded elsewhere. Works with any estimator that exposes
    ``loss_curve_`` (scikit-learn's own ``MLPClassifier`` and ``MLPRegressor``
    included).

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Training loss at the end of each epoch.
    validation_scores : array-like of shape (n_epochs,), default=None
        Score on the held-out validation set after each epoch, or None.
    score_name : str, default='Validation score'
        Label of the validation-score axis and line.
    name : str, default=None
        Name of the model, added to the legend labels as ``'Training loss
        (name)'``; None shows the plain labels.

    Attributes
    ----------
    line_ : matplotlib.lines.Line2D
        The training-loss line.
    validation_line_ : matplotlib.lines.Line2D or None
        The validation-score line, or None without validation scores.
    best_line_ : matplotlib.lines.Line2D or None
        The vertical line at the best epoch, or None when not drawn.
    best_epoch_ : int
        The 1-based epoch marked as the best.
    ax_ : matplotlib.axes.Axes
        Axes of the loss curve.
    ax_validation_ : matplotlib.axes.Axes or None
        The twin axes of the validation scores, or None without them.
    figure_ : matplotlib.figure.Figure
        The figure holding the axes.

    See Also
    --------
    TrainingCurveDisplay.from_estimator : Plot the curves of a fitted model.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large import LargeMLPClassifier
    >>> from sknn_large import TrainingCurveDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LargeMLPClassifier(hidden_layer_sizes=(16,), max_iter=50,
    ...                          early_stopping=True, device="cpu",
    ...                          random_state=0).fit(X, y)
    >>> display = TrainingCurveDisplay.from_estimator(clf)
    >>> display.validation_line_ is not None
    True
    """

    def __init__(
        self,
        *,
        loss_curve,
        validation_scores=None,
        score_name="Validation score",
        name=None,
    ):
        self.loss_curve = loss_curve
        self.validation_scores = validation_scores
        self.score_name = score_name
        self.name = name

    def plot(
        self,
        ax=None,
        *,
        name=None,
        loss_kw=None,
        validation_kw=None,
        mark_best=True,
    ):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        name : str, default=None
            Name of the model for the legend; overrides the ``name`` given at
            construction.
        loss_kw : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the loss line.
        validation_kw : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the validation line.
        mark_best : bool, default=True
            Whether to draw a vertical line at the best epoch.

        Returns
        -------
        display : TrainingCurveDisplay
            The display, with the matplotlib objects stored as attributes.
        """
        _require_matplotlib(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        loss = np.asarray(self.loss_curve, dtype=float)
        if loss.ndim != 1 or loss.size == 0:
            raise ValueError("loss_curve must be a non-empty 1-D sequence of losses.")
        scores = self._checked_scores(loss.size)
        if ax is None:
            _, ax = plt.subplots()
        name = self.name if name is None else name
        suffix = "" if name is None else f" ({name})"
        epochs = np.arange(1, loss.size + 1)
        style = {"color": "tab:blue", "label": "Training loss" + suffix}
        style.update(loss_kw or {})
        (self.line_,) = ax.plot(epochs, loss, **style)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Training loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        self.ax_, self.figure_ = ax, ax.figure
        self.validation_line_ = self.ax_validation_ = None
        if scores is not None:
            self._plot_scores(ax, epochs, scores, suffix, validation_kw)
        self.best_epoch_ = _best_epoch(loss, scores)
        self.best_line_ = None
        if mark_best:
            self.best_line_ = ax.axvline(
                self.best_epoch_,
                color="gray",
                linestyle="--",
                label=f"Best epoch ({self.best_epoch_})",
            )
        self._legend()
        return self

    def _checked_scores(self, n_epochs: int):
        if self.validation_scores is None or len(self.validation_scores) == 0:
            return None
        scores = np.asarray(self.validation_scores, dtype=float)
        if scores.shape != (n_epochs,):
            raise ValueError(
                "validation_scores must have one value per epoch of loss_curve; "
                f"got {scores.shape[0]} scores for {n_epochs} losses."
            )
        return scores

    def _plot_scores(self, ax, epochs, scores, suffix, validation_kw) -> None:
        twin = ax.twinx()
        style = {"color": "tab:orange", "label": self.score_name + suffix}
        style.update(validation_kw or {})
        (self.validation_line_,) = twin.plot(epochs, scores, **style)
        twin.set_ylabel(self.score_name)
        # Keep the loss axes (and the legend drawn on them) above the twin.
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        self.ax_validation_ = twin

    def _legend(self) -> None:
        # One legend for both axes, drawn on the loss axes.
        handles = [self.line_, self.validation_line_, self.best_line_]
        handles = [h for h in handles if h is not None]
        self.ax_.legend(handles, [h.get_label() for h in handles], loc="best")

    @classmethod
    def from_estimator(
        cls,
        estimator,
        *,
        ax=None,
        name=None,
        loss_kw=None,
        validation_kw=None,
        mark_best=True,
    ):
        """Plot the training history of a fitted estimator.

        Parameters
        ----------
        estimator : estimator instance
            A fitted :class:`~sknn_large.LargeMLPClassifier`,
            :class:`~sknn_large.LargeMLPRegressor` (or scikit-learn MLP), or a
            fitted :class:`~sklearn.pipeline.Pipeline` ending in one.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; None creates a new figure and axes.
        name : str, default=None
            Name of the model for the legend labels; None shows the plain
            labels.
        loss_kw : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the loss line.
        validation_kw : dict, default=None
            Keyword arguments for matplotlib's ``plot`` of the validation line.
        mark_best : bool, default=True
            Whether to draw a vertical line at the best epoch.

        Returns
        -------
        display : TrainingCurveDisplay
            The display, with the matplotlib objects stored as attributes.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If the estimator recorded no loss curve.
        """
        _require_matplotlib(f"{cls.__name__}.from_estimator")
        model = _final_estimator(estimator)
        check_is_fitted(model)
        loss_curve = getattr(model, "loss_curve_", None)
        if loss_curve is None or len(loss_curve) == 0:
            raise ValueError(
                f"{type(model).__name__} has no loss_curve_ to plot; fit it first "
                "(scikit-learn's MLPs record it only for stochastic solvers)."
            )
        metric = "accuracy" if is_classifier(model) else "R²"
        display = cls(
            loss_curve=loss_curve,
            validation_scores=getattr(model, "validation_scores_", None),
            score_name=f"Validation {metric}",
        )
        return display.plot(
            ax=ax,
            name=name,
            loss_kw=loss_kw,
            validation_kw=validation_kw,
            mark_best=mark_best,
        )


__all__ = ["TrainingCurveDisplay"]
