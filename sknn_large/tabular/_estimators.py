"""``TabularMLPClassifier`` and ``TabularMLPRegressor``: MLPs for real tables.

Each estimator is three fitted parts, all learned from the training rows only:

1. a :class:`~sknn_large.tabular.TabularPreprocessor` (robust scaling with a
   smooth clip, median imputation with missing indicators, one-hot encoding of
   the categories), so a DataFrame goes in as it is;
2. for the regressor, a standardisation of the target (the networks fit
   ``(y - mean) / std``; predictions are mapped back);
3. an ensemble of ``n_estimators`` networks trained side by side in one
   stacked pass of the engine (:mod:`sknn_large.ensemble`), each with its own
   initial weights, batch order and held-out rows, a per-batch cosine learning
   rate, and the weights of its best validation epoch restored at the end.

The defaults were chosen on the benchmark datasets of
``benchmarks/bench_tabular.py``; ``benchmarks/RESULTS.md`` has the evidence.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from ..ensemble import LargeMLPEnsembleClassifier, LargeMLPEnsembleRegressor
from ._base import _ATTRIBUTES_DOC, _PARAMS_DOC, _BaseTabularMLP, _constraints

__all__ = ["TabularMLPClassifier", "TabularMLPRegressor"]


# The defaults that differ between the two estimators, for their docstrings.
_CLASSIFIER_DOC = {
    "n_estimators": 4,
    "numeric_transform": "quantile",
    "batch_share": "an eighth",
    "max_iter": 20,
}
_REGRESSOR_DOC = {
    "n_estimators": 8,
    "numeric_transform": "robust",
    "batch_share": "a quarter",
    "max_iter": 30,
}


def _numeric_target(y) -> np.ndarray:
    # sklearn's checks (NaN, infinity, dtype); one column becomes 1-D.
    y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
    return y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y


class TabularMLPClassifier(ClassifierMixin, _BaseTabularMLP):
    __doc__ = f"""An MLP ensemble with strong defaults for tables, for classification.

    Takes a pandas DataFrame as it is (numeric, category, object, string and
    bool columns, missing values) or an array; preprocesses it robustly,
    then trains ``n_estimators`` networks at once with label smoothing, a
    per-batch cosine schedule and best-epoch selection, and averages their
    class probabilities.

    Parameters
    ----------{_PARAMS_DOC % _CLASSIFIER_DOC}

    label_smoothing : float, default=0.1
        Share of each target's probability spread evenly over the classes in
        the training loss; it keeps the networks from becoming overconfident.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
{_ATTRIBUTES_DOC}

    See Also
    --------
    TabularMLPRegressor : The same for regression.
    sknn_large.LargeMLPClassifier : A single network, sklearn's MLP defaults.
    sklearn.ensemble.HistGradientBoostingClassifier : Gradient-boosted trees.

    Examples
    --------
    >>> import pandas as pd
    >>> from sknn_large import TabularMLPClassifier
    >>> X = pd.DataFrame({{"age": [22, 35, 58, 41, 30, 63, 27, 49] * 10,
    ...                   "plan": ["a", "b", "b", "a", "c", "b", "a", "c"] * 10}})
    >>> y = [0, 1, 1, 0, 1, 1, 0, 1] * 10
    >>> clf = TabularMLPClassifier(random_state=0).fit(X, y)
    >>> clf.predict(X.head(3)).tolist()
    [0, 1, 1]
    """

    _ensemble_class = LargeMLPEnsembleClassifier
    _batches_per_epoch = 8
    _parameter_constraints: dict = {
        **_constraints(),
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
        *,
        n_estimators=4,
        hidden_layer_sizes=(128, 128),
        activation="relu",
        alpha=1e-4,
        batch_size="auto",
        learning_rate="cosine",
        learning_rate_init=3e-3,
        max_iter=20,
        n_iter_no_change=8,
        validation_fraction=0.1,
        dropout=0.0,
        label_smoothing=0.1,
        categorical_features="from_dtype",
        numeric_transform="quantile",
        clip=3.0,
        numeric_bins=16,
        max_onehot_categories=1000,
        device="auto",
        precision="auto",
        random_state=None,
        verbose=False,
    ):
        self.n_estimators = n_estimators
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.categorical_features = categorical_features
        self.numeric_transform = numeric_transform
        self.clip = clip
        self.numeric_bins = numeric_bins
        self.max_onehot_categories = max_onehot_categories
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def _ensemble_params(self) -> dict:
        return {**super()._ensemble_params(), "label_smoothing": self.label_smoothing}

    def _encode_target(self, y) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return y

    def _encode_val_target(self, y_val) -> np.ndarray:
        return column_or_1d(y_val, warn=True)

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
        """Preprocess ``X`` and train the ensemble on it.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Training table; missing values and non-numeric columns allowed.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the training rows in the loss.
        X_val : {DataFrame, array-like} of shape (n_val, n_features), default=None
            Your own validation table, preprocessed as the training one: each
            network chooses its best epoch on it instead of on held-out
            training rows (all training rows then train). Needs ``y_val``.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows.

        Returns
        -------
        self : TabularMLPClassifier
            The fitted estimator.
        """
        self._fit_tabular(X, y, sample_weight, (X_val, y_val, sample_weight_val))
        self.classes_ = self.ensemble_.classes_
        return self

    def predict_proba(self, X):
        """Averaged class probabilities of the networks.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Rows to predict, with the training columns.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
        """
        Z = self._features(X)
        return self.ensemble_.predict_proba(Z)

    def predict(self, X):
        """Class with the highest averaged probability.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Rows to predict, with the training columns.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels.
        """
        Z = self._features(X)
        return self.ensemble_.predict(Z)


class TabularMLPRegressor(RegressorMixin, _BaseTabularMLP):
    __doc__ = f"""An MLP ensemble with strong defaults for tables, for regression.

    Takes a pandas DataFrame as it is (numeric, category, object, string and
    bool columns, missing values) or an array; preprocesses it robustly,
    standardises the target, then trains ``n_estimators`` networks at once
    with a per-batch cosine schedule and best-epoch selection, and averages
    their predictions.

    Parameters
    ----------{_PARAMS_DOC % _REGRESSOR_DOC}

    Attributes
    ----------
    target_mean_ : ndarray of shape (n_outputs,)
        Mean of each training target, subtracted before training.

    target_scale_ : ndarray of shape (n_outputs,)
        Standard deviation of each training target (1 where it is 0), by
        which the centred target is divided.
{_ATTRIBUTES_DOC}

    See Also
    --------
    TabularMLPClassifier : The same for classification.
    sknn_large.LargeMLPRegressor : A single network, sklearn's MLP defaults.
    sklearn.ensemble.HistGradientBoostingRegressor : Gradient-boosted trees.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sknn_large import TabularMLPRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = pd.DataFrame({{"size": rng.uniform(20, 200, 200),
    ...                   "city": rng.choice(["Oslo", "Lima"], 200)}})
    >>> y = 1000 * X["size"] + np.where(X["city"] == "Oslo", 50_000, 0)
    >>> reg = TabularMLPRegressor(random_state=0).fit(X, y)
    >>> round(reg.score(X, y), 2) > 0.9
    True
    """

    _ensemble_class = LargeMLPEnsembleRegressor
    _parameter_constraints: dict = _constraints()

    def __init__(
        self,
        *,
        n_estimators=8,
        hidden_layer_sizes=(128, 128),
        activation="relu",
        alpha=1e-4,
        batch_size="auto",
        learning_rate="cosine",
        learning_rate_init=3e-3,
        max_iter=30,
        n_iter_no_change=8,
        validation_fraction=0.1,
        dropout=0.0,
        categorical_features="from_dtype",
        numeric_transform="robust",
        clip=3.0,
        numeric_bins=16,
        max_onehot_categories=1000,
        device="auto",
        precision="auto",
        random_state=None,
        verbose=False,
    ):
        self.n_estimators = n_estimators
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.dropout = dropout
        self.categorical_features = categorical_features
        self.numeric_transform = numeric_transform
        self.clip = clip
        self.numeric_bins = numeric_bins
        self.max_onehot_categories = max_onehot_categories
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def _encode_target(self, y) -> np.ndarray:
        # The ensemble checks that X and y have the same rows.
        y = _numeric_target(y)
        self.target_mean_ = np.atleast_1d(y.mean(axis=0))
        std = np.atleast_1d(y.std(axis=0))
        self.target_scale_ = np.where(std > 0, std, 1.0)
        return self._standardised(y)

    def _encode_val_target(self, y_val) -> np.ndarray:
        return self._standardised(_numeric_target(y_val))

    def _standardised(self, y: np.ndarray) -> np.ndarray:
        scaled = (y.reshape(len(y), -1) - self.target_mean_) / self.target_scale_
        return scaled.ravel() if y.ndim == 1 else scaled

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
        """Preprocess ``X``, standardise ``y`` and train the ensemble.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Training table; missing values and non-numeric columns allowed.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the training rows in the loss.
        X_val : {DataFrame, array-like} of shape (n_val, n_features), default=None
            Your own validation table, preprocessed as the training one: each
            network chooses its best epoch on it instead of on held-out
            training rows (all training rows then train). Needs ``y_val``.
        y_val : array-like of shape (n_val,) or (n_val, n_outputs), default=None
            Targets of ``X_val``.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation rows.

        Returns
        -------
        self : TabularMLPRegressor
            The fitted estimator.
        """
        return self._fit_tabular(X, y, sample_weight, (X_val, y_val, sample_weight_val))

    def predict(self, X):
        """Averaged prediction of the networks, on the target's scale.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Rows to predict, with the training columns.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted targets.
        """
        Z = self._features(X)
        scaled = self.ensemble_.predict(Z)
        if scaled.ndim == 1:
            return scaled * self.target_scale_[0] + self.target_mean_[0]
        return scaled * self.target_scale_ + self.target_mean_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
