"""What the two Tabular estimators share: parameters, the fit, the docs."""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._classifier import LargeMLPClassifier
from ._preprocessing import TabularPreprocessor, validate_table

__all__ = ["auto_batch_size"]


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
# batch_size="auto": at least a few batches an epoch (the estimator's
# ``_batches_per_epoch``), so that small tables still get steps, and at most
# 512 rows, which measured best on the benchmark.
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


def auto_batch_size(
    n_train: int, batches_per_epoch: int = _AUTO_BATCHES_PER_EPOCH
) -> int:
    """The batch size ``batch_size="auto"`` picks for ``n_train`` training rows.

    Parameters
    ----------
    n_train : int
        Rows the networks train on (after the validation hold-out).
    batches_per_epoch : int, default=4
        Batches an epoch has at least, below 512-row batches:
        :class:`~sknn_large.TabularMLPRegressor` uses 4,
        :class:`~sknn_large.TabularMLPClassifier` 8.

    Returns
    -------
    int
        ``n_train // batches_per_epoch`` clipped to [32, 512], and never above
        ``n_train``.
    """
    low, high = _AUTO_BATCH_RANGE
    size = int(np.clip(n_train // batches_per_epoch, low, high))
    return max(1, min(size, n_train))


class _BaseTabularMLP(BaseEstimator):
    """Fitting shared by the two estimators: preprocess, then the ensemble."""

    _ensemble_class: type
    # batch_size="auto" (see auto_batch_size): chosen per task on the benchmark.
    _batches_per_epoch: int = _AUTO_BATCHES_PER_EPOCH

    def _ensemble_params(self) -> dict:
        return {name: getattr(self, name) for name in _MEMBER_PARAMS}

    def _held_out_rows(self, y) -> int:
        """Rows each member holds out (train_test_split's rounding), or 0."""
        # Best-epoch selection needs held-out rows; tiny training sets (and
        # classes with a single row, which a stratified split cannot place)
        # train on every row for max_iter epochs instead.
        n_val = int(np.ceil(self.validation_fraction * len(y)))
        if n_val < _MIN_HELD_OUT or len(y) - n_val < _MIN_HELD_OUT:
            return 0
        if isinstance(self, ClassifierMixin):
            _, counts = np.unique(y, return_counts=True)
            if n_val < len(counts) or counts.min() < 2:
                return 0
        return n_val

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
        y = self._encode_target(y)
        X_val, y_val, sw_val = validation
        if X_val is not None:
            X_val = self.preprocessor_.transform(
                validate_table(self, X_val, reset=False)
            )
        if y_val is not None:
            y_val = self._encode_val_target(y_val)
        # The caller's validation set replaces the held-out rows.
        n_val = 0 if X_val is not None else self._held_out_rows(y)
        holds_out = X_val is not None or n_val > 0
        n_train = len(y) - n_val
        batch = (
            auto_batch_size(n_train, self._batches_per_epoch)
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
        Rows per mini-batch. ``"auto"``: %(batch_share)s of the training rows,
        clipped to [32, 512] (see :func:`auto_batch_size`).

    learning_rate : str, default="cosine"
        Learning-rate schedule of the Adam solver (any of
        :class:`~sknn_large.LargeMLPClassifier`'s options); ``"cosine"``
        decays the rate every batch from ``learning_rate_init`` to zero over
        ``max_iter`` epochs.

    learning_rate_init : float, default=3e-3
        Initial (peak) learning rate.

    max_iter : int, default=%(max_iter)d
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
