"""Ensembles of sknn_large networks trained in one vectorised pass.

:class:`LargeMLPEnsembleClassifier` and :class:`LargeMLPEnsembleRegressor`
train ``n_estimators`` networks that differ only in their seed (initial
weights, batch order, dropout and early-stopping split) side by side, and
average them: class probabilities for the classifier, predictions for the
regressor. Averaging independently initialised networks usually generalises
better than any one of them, at little more than one network's training time
on an accelerator.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._classifier import LargeMLPClassifier
from ._estimator import fit_many
from ._regressor import LargeMLPRegressor

__all__ = ["LargeMLPEnsembleClassifier", "LargeMLPEnsembleRegressor"]


def _constraints(member_class, names) -> dict:
    """The members' own constraints for the shared parameters, plus the count."""
    own = member_class._parameter_constraints
    return {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        **{name: own[name] for name in names},
    }


class _BaseEnsemble(BaseEstimator):
    """Fitting shared by the ensembles: one member per seed, trained at once."""

    _member_class: type
    _member_params: tuple[str, ...]

    def _members(self) -> list:
        rng = check_random_state(self.random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_estimators)
        params = {name: getattr(self, name) for name in self._member_params}
        return [self._member_class(**{**params, "random_state": int(s)}) for s in seeds]

    def _fit_members(self, X, y, sample_weight, validation=(None, None, None)):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            y_numeric=not isinstance(self, ClassifierMixin),
        )
        if isinstance(self, ClassifierMixin):
            check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        X_val, y_val, sw_val = validation
        if X_val is not None:
            # The members see arrays, as they do for X.
            X_val = validate_data(
                self,
                X_val,
                accept_sparse=["csr", "csc"],
                dtype=(np.float64, np.float32),
                reset=False,
            )
        validation = (X_val, None if y_val is None else np.asarray(y_val), sw_val)
        fitted = fit_many(
            self._members(), X, y, sample_weight=sample_weight, validation=validation
        )
        for result in fitted:
            if isinstance(result, BaseException):
                raise result
        self.estimators_ = fitted
        self.n_iter_ = max(m.n_iter_ for m in fitted)
        return self

    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(
            self,
            X,
            accept_sparse=["csr", "csc"],
            dtype=(np.float64, np.float32),
            reset=False,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class LargeMLPEnsembleClassifier(ClassifierMixin, _BaseEnsemble):
    """An averaged ensemble of :class:`~sknn_large.LargeMLPClassifier` networks.

    The members share every parameter but their seed and train together in
    one vectorised run; predictions average their class probabilities.

    Parameters
    ----------
    n_estimators : int, default=5
        Number of networks in the ensemble.
    random_state : int, RandomState instance or None, default=None
        Draws one seed per member; members differ only by their seeds.
    **member parameters**
        Every other parameter (hidden_layer_sizes, alpha, ...) is that of
        :class:`~sknn_large.LargeMLPClassifier` and is passed to each member
        unchanged; see its documentation. ``warm_start`` and ``checkpoint``
        are not offered.
    Attributes
    ----------
    estimators_ : list of LargeMLPClassifier
        The fitted members. Each keeps its optimizer state, so ``partial_fit``
        on a member continues as on the same network fitted alone.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    multilabel_ : bool
        Whether ``y`` was a label indicator matrix (``predict`` then thresholds
        the averaged probabilities at 0.5).
    n_iter_ : int
        The most epochs any member ran.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    LargeMLPEnsembleRegressor : The regression ensemble.
    sknn_large.model_selection.VectorizedGridSearchCV : Vectorised search.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large.ensemble import LargeMLPEnsembleClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> ens = LargeMLPEnsembleClassifier(
    ...     n_estimators=4, hidden_layer_sizes=(16,), max_iter=300,
    ...     device="cpu", random_state=0,
    ... ).fit(X, y)
    >>> len(ens.estimators_)
    4
    >>> ens.predict_proba(X[:2]).shape
    (2, 3)
    """

    _member_class = LargeMLPClassifier

    _member_params = (
        "hidden_layer_sizes",
        "activation",
        "solver",
        "alpha",
        "batch_size",
        "learning_rate",
        "learning_rate_init",
        "power_t",
        "max_iter",
        "shuffle",
        "random_state",
        "tol",
        "verbose",
        "momentum",
        "nesterovs_momentum",
        "early_stopping",
        "validation_fraction",
        "beta_1",
        "beta_2",
        "epsilon",
        "n_iter_no_change",
        "max_fun",
        "penalty",
        "l1_ratio",
        "dropout",
        "device",
        "precision",
        "class_weight",
        "label_smoothing",
    )

    _parameter_constraints = _constraints(LargeMLPClassifier, _member_params)

    def __init__(
        self,
        n_estimators=5,
        *,
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=0.0001,
        verbose=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-08,
        n_iter_no_change=10,
        max_fun=15000,
        penalty="l2",
        l1_ratio=0.15,
        dropout=0.0,
        device="auto",
        precision="auto",
        class_weight=None,
        label_smoothing=0.0,
    ):
        self.n_estimators = n_estimators
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.dropout = dropout
        self.device = device
        self.precision = precision
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        X_val=None,
        y_val=None,
        sample_weight_val=None,
    ):
        """Fit every member on ``(X, y)`` in one vectorised run.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        X_val : array-like of shape (n_val, n_features), default=None
            A validation set every member is scored on after each epoch, as
            with the members' own ``fit(X_val=...)``: it replaces their
            early-stopping split; each member's ``validation_scores_`` and
            ``validation_loss_curve_`` record it.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows.

        Returns
        -------
        self : LargeMLPEnsembleClassifier
            The fitted ensemble.
        """
        self._fit_members(X, y, sample_weight, (X_val, y_val, sample_weight_val))
        self.classes_ = self.estimators_[0].classes_
        self.multilabel_ = type_of_target(y).startswith("multilabel")
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def predict_proba(self, X):
        """Average of the members' class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Mean probability of each class, in the order of ``classes_``.
        """
        X = self._validated(X)
        return np.mean([m.predict_proba(X) for m in self.estimators_], axis=0)

    def predict(self, X):
        """Class with the highest averaged probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels.
        """
        proba = self.predict_proba(X)
        if self.multilabel_:
            return (proba > 0.5).astype(int)
        if len(self.classes_) == 1:
            # One class seen in fit: the members' logistic output has two
            # columns but only one label to give, as their own predict does.
            return np.full(proba.shape[0], self.classes_[0])
        return self.classes_[np.argmax(proba, axis=1)]


class LargeMLPEnsembleRegressor(RegressorMixin, _BaseEnsemble):
    """An averaged ensemble of :class:`~sknn_large.LargeMLPRegressor` networks.

    The members share every parameter but their seed and train together in
    one vectorised run; predictions are the mean of theirs.

    Parameters
    ----------
    n_estimators : int, default=5
        Number of networks in the ensemble.
    random_state : int, RandomState instance or None, default=None
        Draws one seed per member; members differ only by their seeds.
    **member parameters**
        Every other parameter (hidden_layer_sizes, alpha, ...) is that of
        :class:`~sknn_large.LargeMLPRegressor` and is passed to each member
        unchanged; see its documentation. ``warm_start`` and ``checkpoint``
        are not offered.
    Attributes
    ----------
    estimators_ : list of LargeMLPRegressor
        The fitted members. Each keeps its optimizer state, so ``partial_fit``
        on a member continues as on the same network fitted alone.
    n_iter_ : int
        The most epochs any member ran.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    LargeMLPEnsembleClassifier : The classification ensemble.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sknn_large.ensemble import LargeMLPEnsembleRegressor
    >>> X, y = make_regression(100, 4, random_state=0)
    >>> ens = LargeMLPEnsembleRegressor(
    ...     n_estimators=3, hidden_layer_sizes=(16,), max_iter=50,
    ...     device="cpu", random_state=0,
    ... ).fit(X, y / 100)
    >>> ens.predict(X[:2]).shape
    (2,)
    """

    _member_class = LargeMLPRegressor

    _member_params = (
        "loss",
        "hidden_layer_sizes",
        "activation",
        "solver",
        "alpha",
        "batch_size",
        "learning_rate",
        "learning_rate_init",
        "power_t",
        "max_iter",
        "shuffle",
        "random_state",
        "tol",
        "verbose",
        "momentum",
        "nesterovs_momentum",
        "early_stopping",
        "validation_fraction",
        "beta_1",
        "beta_2",
        "epsilon",
        "n_iter_no_change",
        "max_fun",
        "penalty",
        "l1_ratio",
        "dropout",
        "device",
        "precision",
    )

    _parameter_constraints = _constraints(LargeMLPRegressor, _member_params)

    def __init__(
        self,
        n_estimators=5,
        *,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=0.0001,
        verbose=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-08,
        n_iter_no_change=10,
        max_fun=15000,
        penalty="l2",
        l1_ratio=0.15,
        dropout=0.0,
        device="auto",
        precision="auto",
    ):
        self.n_estimators = n_estimators
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.dropout = dropout
        self.device = device
        self.precision = precision

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        X_val=None,
        y_val=None,
        sample_weight_val=None,
    ):
        """Fit every member on ``(X, y)`` in one vectorised run.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        X_val : array-like of shape (n_val, n_features), default=None
            A validation set every member is scored on after each epoch, as
            with the members' own ``fit(X_val=...)``: it replaces their
            early-stopping split; each member's ``validation_scores_`` and
            ``validation_loss_curve_`` record it.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows.

        Returns
        -------
        self : LargeMLPEnsembleRegressor
            The fitted ensemble.
        """
        return self._fit_members(X, y, sample_weight, (X_val, y_val, sample_weight_val))

    def predict(self, X):
        """Mean of the members' predictions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Averaged predictions.
        """
        X = self._validated(X)
        return np.mean([m.predict(X) for m in self.estimators_], axis=0)
