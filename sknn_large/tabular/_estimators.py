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

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._classifier import LargeMLPClassifier
from ..ensemble import LargeMLPEnsembleClassifier, LargeMLPEnsembleRegressor
from ._preprocessing import TabularPreprocessor, validate_table

__all__ = ["TabularMLPClassifier", "TabularMLPRegressor"]

# Parameters handed to every ensemble member as they are.
_MEMBER_PARAMS = (
    "hidden_layer_sizes",
    "activation",
    "alpha",
    "learning_rate",
    "learning_rate_init",
    "max_iter",
    "n_iter_no_change",
    "validation_fraction",
    "dropout",
    "device",
    "precision",
    "verbose",
)
_PREPROCESSOR_PARAMS = (
    "categorical_features",
    "numeric_transform",
    "clip",
    "numeric_bins",
    "max_onehot_categories",
)
# batch_size="auto": at least 4 batches an epoch, so that small tables still
# get steps, and at most 512 rows, which measured best on the benchmark.
_AUTO_BATCHES_PER_EPOCH = 4
_AUTO_BATCH_RANGE = (32, 512)
# Fewer held-out rows than this choose a best epoch by noise: train on all.
_MIN_HELD_OUT = 5


def _constraints() -> dict:
    member = LargeMLPClassifier._parameter_constraints
    pre = TabularPreprocessor._parameter_constraints
    return {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "random_state": member["random_state"],
        **{name: member[name] for name in _MEMBER_PARAMS},
        **{name: pre[name] for name in _PREPROCESSOR_PARAMS},
    }


def auto_batch_size(n_train: int) -> int:
    """The batch size ``batch_size="auto"`` picks for ``n_train`` training rows.

    Parameters
    ----------
    n_train : int
        Rows the networks train on (after the validation hold-out).

    Returns
    -------
    int
        ``n_train // 4`` clipped to [32, 512], and never above ``n_train``.
    """
    low, high = _AUTO_BATCH_RANGE
    size = int(np.clip(n_train // _AUTO_BATCHES_PER_EPOCH, low, high))
    return max(1, min(size, n_train))


class _BaseTabularMLP(BaseEstimator):
    """Fitting shared by the two estimators: preprocess, then the ensemble."""

    _ensemble_class: type

    def _ensemble_params(self) -> dict:
        return {name: getattr(self, name) for name in _MEMBER_PARAMS}

    def _holds_out(self, y) -> bool:
        # Best-epoch selection needs held-out rows; tiny training sets (and
        # classes with a single row, which a stratified split cannot place)
        # train on every row for max_iter epochs instead.
        n_val = int(np.ceil(self.validation_fraction * len(y)))
        if n_val < _MIN_HELD_OUT or len(y) - n_val < _MIN_HELD_OUT:
            return False
        if isinstance(self, ClassifierMixin):
            _, counts = np.unique(y, return_counts=True)
            return bool(n_val >= len(counts) and counts.min() >= 2)
        return True

    def _fit_tabular(self, X, y, sample_weight, validation):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y"
                " is None."
            )
        X = validate_table(self, X, reset=True)
        self.preprocessor_ = TabularPreprocessor(
            **{name: getattr(self, name) for name in _PREPROCESSOR_PARAMS}
        ).fit(X)
        Z = self.preprocessor_.transform(X)
        y = self._encode_target(y, Z.shape[0])
        X_val, y_val, sw_val = validation
        if X_val is not None:
            X_val = self.preprocessor_.transform(
                validate_table(self, X_val, reset=False)
            )
        if y_val is not None:
            y_val = self._encode_val_target(y_val)
        # The caller's validation set replaces the held-out rows.
        holds_out = X_val is not None or self._holds_out(y)
        n_train = len(y) - (
            int(np.ceil(self.validation_fraction * len(y)))
            if holds_out and X_val is None
            else 0
        )
        batch = (
            auto_batch_size(n_train)
            if self.batch_size == "auto"
            else min(self.batch_size, n_train)
        )
        ensemble = self._ensemble_class(
            n_estimators=self.n_estimators,
            batch_size=batch,
            early_stopping=holds_out,
            random_state=self.random_state,
            **self._ensemble_params(),
        )
        with warnings.catch_warnings():
            # The cosine schedule runs its planned max_iter epochs down to a
            # rate of zero: reaching them is the plan, not a failure.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.ensemble_ = ensemble.fit(
                Z,
                y,
                sample_weight=sample_weight,
                X_val=X_val,
                y_val=y_val,
                sample_weight_val=sw_val,
            )
        self.n_iter_ = self.ensemble_.n_iter_
        return self

    def _features(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.preprocessor_.transform(validate_table(self, X, reset=False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


_PARAMS_DOC = """
    n_estimators : int, default=%(n_estimators)d
        Networks in the ensemble, trained together in one stacked pass; their
        predictions are averaged.

    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(128, 128)
        Width of each hidden layer of every network.

    activation : {"identity", "logistic", "tanh", "relu", "gelu", "silu"}, \
default="relu"
        Hidden-layer activation.

    alpha : float, default=1e-4
        Strength of the L2 penalty on the weights.

    batch_size : int or "auto", default="auto"
        Rows per mini-batch. ``"auto"``: a quarter of the training rows,
        clipped to [32, 512] (see :func:`auto_batch_size`).

    learning_rate : str, default="cosine"
        Learning-rate schedule of the Adam solver (any of
        :class:`~sknn_large.LargeMLPClassifier`'s options); ``"cosine"``
        decays the rate every batch from ``learning_rate_init`` to zero over
        ``max_iter`` epochs.

    learning_rate_init : float, default=3e-3
        Initial (peak) learning rate.

    max_iter : int, default=30
        Most epochs a network trains.

    n_iter_no_change : int, default=8
        A network stops when its validation score has not improved by ``1e-4``
        for this many epochs; the weights of its best epoch are kept.

    validation_fraction : float, default=0.1
        Share of the training rows each network holds out (its own random
        rows) to choose its best epoch. Training sets too small to hold out
        five rows (and every class) train on all rows for ``max_iter``
        epochs instead.

    dropout : float, default=0.0
        Dropout probability after each hidden layer during training.

    categorical_features : "from_dtype", array-like or None, default="from_dtype"
        Which input columns hold categories: by default the DataFrame columns
        of category, object, string or bool dtype (see
        :class:`~sknn_large.tabular.TabularPreprocessor`).

    numeric_transform : {"robust", "quantile"}, default="%(numeric_transform)s"
        Scaling of the numeric columns before the smooth clip.

    clip : float or None, default=3.0
        Bound of the smooth clip on scaled numeric values; ``None`` for none.

    numeric_bins : int or None, default=16
        Also encode each numeric column piecewise-linearly over this many
        quantile bins, so that the first layer can give each range of a
        column its own slope; ``None`` for none.

    max_onehot_categories : int, default=1000
        Categorical columns with at most this many categories are one-hot
        encoded; columns with more are passed as integer codes.

    device : str or torch.device, default="auto"
        Where the networks train: ``"auto"`` picks CUDA when available.

    precision : {"auto", "float32", "float64", "bfloat16"}, default="auto"
        Floating-point format of training.

    random_state : int, RandomState instance or None, default=None
        Seeds every network's initial weights, batch order and held-out rows.

    verbose : bool or int, default=False
        Print progress of the ensemble's training."""

_ATTRIBUTES_DOC = """
    preprocessor_ : TabularPreprocessor
        The fitted preprocessing of the input table.

    ensemble_ : LargeMLPEnsembleClassifier or LargeMLPEnsembleRegressor
        The fitted networks (``ensemble_.estimators_``), trained on the
        preprocessed rows.

    n_iter_ : int
        Most epochs any network trained.

    n_features_in_ : int
        Number of input columns seen in fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names; defined only when ``X`` had string column names."""


class TabularMLPClassifier(ClassifierMixin, _BaseTabularMLP):
    __doc__ = f"""An MLP ensemble with strong defaults for tables, for classification.

    Takes a pandas DataFrame as it is (numeric, category, object, string and
    bool columns, missing values) or an array; preprocesses it robustly,
    then trains ``n_estimators`` networks at once with label smoothing, a
    per-batch cosine schedule and best-epoch selection, and averages their
    class probabilities.

    Parameters
    ----------{_PARAMS_DOC % {"n_estimators": 4, "numeric_transform": "quantile"}}

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
        max_iter=30,
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

    def _encode_target(self, y, n_rows: int) -> np.ndarray:
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
    ----------{_PARAMS_DOC % {"n_estimators": 8, "numeric_transform": "robust"}}

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

    def _encode_target(self, y, n_rows: int) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.shape[0] != n_rows:
            raise ValueError(
                f"X has {n_rows} rows but y has {y.shape[0]}; they must match."
            )
        if not np.all(np.isfinite(y)):
            raise ValueError("Input y contains NaN or infinity.")
        self.target_mean_ = np.atleast_1d(y.mean(axis=0))
        std = np.atleast_1d(y.std(axis=0))
        self.target_scale_ = np.where(std > 0, std, 1.0)
        return self._standardised(y)

    def _encode_val_target(self, y_val) -> np.ndarray:
        y_val = np.asarray(y_val, dtype=np.float64)
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = y_val.ravel()
        return self._standardised(y_val)

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
