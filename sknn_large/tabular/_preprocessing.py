"""``TabularPreprocessor``: a table as it comes, made ready for an MLP.

Published tabular-MLP recipes agree that much of an MLP's gap to gradient
boosting on real tables is input handling rather than the network: heavy
tails and outliers in numeric columns saturate or dominate the first layer,
and categories need an encoding that neither explodes the width nor imposes a
false order. This module implements that preparation as one scikit-learn
transformer; the estimators built on it learn embeddings for the ordinal
codes it emits.

Numeric columns
    Missing values are replaced by the training median (with a 0/1 missing
    indicator column for each numeric column that had missing values in the
    training rows). Then either

    * ``"robust"``: centre on the median and divide by a robust spread: the
      interquartile range / 1.349 (the standard deviation for normal data);
      when that is zero (a column that is mostly one value), the 5-95%
      range / 3.29; when that is zero too, half the full range; and 1 for a
      constant column; or
    * ``"quantile"``: map through the training rows' empirical quantiles onto
      a standard normal (rank-based, so any monotone distortion vanishes);

    followed by a *smooth clip* ``x / sqrt(1 + (x / c)^2)`` with ``c = clip``:
    close to the identity for ``|x| << c``, bounded by ``±c``, and smooth, so
    that an outlier keeps its sign and rank without dominating a layer.

    With ``numeric_bins=B``, each numeric column also gets a *piecewise-linear
    encoding* (Gorishniy et al., "On Embeddings for Numerical Features in
    Tabular Deep Learning", 2022): the training quantiles of the transformed
    column cut it into at most ``B`` bins, and bin ``t`` with edges
    ``[lo_t, hi_t)`` contributes ``clip((x - lo_t) / (hi_t - lo_t), 0, 1)``:
    1 for bins wholly below ``x``, the position of ``x`` inside its own bin,
    0 above. A first layer can then give every range of a column its own
    slope, which a single scaled column cannot. Columns of fewer than three
    distinct values get none.

Categorical columns
    A category is any value seen in the training rows, missing values being a
    category of their own when they occur there. A column with at most
    ``max_onehot_categories`` categories is one-hot encoded (a two-category
    column becomes one column, -1 / +1); a column with more becomes one
    integer code per row, ``1..K`` for the training categories, for a learned
    embedding downstream (:attr:`TabularPreprocessor.embedding_columns_`,
    :attr:`TabularPreprocessor.embedding_cardinalities_`). A category not seen
    in training -- or a missing value where none was seen -- becomes all-zero
    one-hot columns, 0 on the two-category column, and code 0.

Output columns are, in this order: the numeric columns, their bins, their
missing indicators, the one-hot columns, the integer codes; all float32.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from ._columns import (
    _categorical_mask,
    _column,
    _encode,
    _numeric_block,
    _observed_categories,
    _robust_center_scale,
    _smooth_clip,
)

__all__ = ["TabularPreprocessor", "validate_table"]

# Rows the quantile transform keeps as knots (sklearn's default number).
_N_QUANTILES = 1000


# ---------------------------------------------------------------------------
# The transformer


def validate_table(estimator, X, *, reset: bool):
    """``validate_data`` for a table: a DataFrame keeps its columns' dtypes.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator that records or checks ``n_features_in_`` and
        ``feature_names_in_``.
    X : DataFrame or array-like
        The table.
    reset : bool
        Record the width and names (``fit``) or check them.

    Returns
    -------
    DataFrame or ndarray
        ``X`` itself for a DataFrame (names and width checked, values not:
        ``check_array`` would turn a mixed table into objects), else the
        checked array, its dtype kept and missing values allowed.
    """
    if hasattr(X, "iloc") and hasattr(X, "dtypes"):
        X = validate_data(estimator, X, reset=reset, skip_check_array=True)
        if X.shape[0] < 1:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={X.shape}) while a "
                "minimum of 1 is required."
            )
        return X
    return validate_data(estimator, X, reset=reset, dtype=None, ensure_all_finite=False)


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """Robust-scale, smooth-clip and encode a mixed-type table for an MLP.

    Takes a pandas DataFrame as it comes (numeric, category, object, string
    and bool columns, missing values) or a plain array, learns every
    statistic from the rows given to :meth:`fit` only, and returns a float32
    array: scaled numeric columns, missing indicators, one-hot columns, and
    integer codes of high-cardinality columns for learned embeddings. See
    the module documentation for the exact rules.

    Parameters
    ----------
    categorical_features : "from_dtype", array-like or None, default="from_dtype"
        Which input columns hold categories.

        - ``"from_dtype"``: DataFrame columns of category, object, string or
          bool dtype; for arrays, every column of a bool or string array, the
          columns of an object array holding anything but numbers, and no
          column of a numeric array.
        - boolean mask of shape (n_features,), integer indices, or column
          names (DataFrame input).
        - ``None``: no column; every column is numeric.

    numeric_transform : {"robust", "quantile"}, default="robust"
        ``"robust"``: subtract the median, divide by a robust spread (IQR /
        1.349, with fallbacks for columns of zero spread). ``"quantile"``: map
        onto a standard normal through the training quantiles.

    clip : float or None, default=3.0
        Scale ``c`` of the smooth clip ``x / sqrt(1 + (x / c)^2)`` applied
        after the numeric transform, which bounds values by ``±c``; ``None``
        applies none.

    numeric_bins : int or None, default=None
        Add a piecewise-linear encoding of each numeric column over at most
        this many quantile bins (see the module documentation); ``None``
        adds none.

    max_onehot_categories : int, default=16
        Categorical columns with at most this many training categories
        (missing counted as one) are one-hot encoded; columns with more
        become integer codes. ``0`` gives every categorical column a code.

    add_indicator : bool, default=True
        Add a 0/1 column marking the imputed rows of every numeric column
        that had missing values in the training rows.

    Attributes
    ----------
    n_features_in_ : int
        Number of input columns seen in :meth:`fit`.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Input column names; defined only when ``X`` had string column names.

    numeric_features_ : ndarray of int
        Indices of the input columns treated as numeric.

    categorical_features_ : ndarray of int
        Indices of the input columns treated as categorical.

    center_ : ndarray of shape (n_numeric,)
        Training median of each numeric column: the imputed value, and the
        centre of the robust transform.

    scale_ : ndarray of shape (n_numeric,)
        Robust spread of each numeric column (used by ``"robust"``).

    quantile_transformer_ : QuantileTransformer or None
        The fitted map of ``"quantile"``; ``None`` for ``"robust"``.

    bin_edges_ : list of ndarray
        For each numeric column, the edges of its piecewise-linear bins on the
        transformed scale (empty where it has none, and for every column when
        ``numeric_bins`` is ``None``).

    indicator_features_ : ndarray of int
        Input indices of the numeric columns given a missing indicator.

    categories_ : list of ndarray
        For each column of ``categorical_features_``, the categories seen in
        training, in encoding order (a pandas category column keeps its
        declared order; others are sorted); ``nan`` last when missing values
        were seen, as a category of its own.

    onehot_features_ : ndarray of int
        Input indices of the categorical columns one-hot encoded.

    ordinal_features_ : ndarray of int
        Input indices of the categorical columns given integer codes.

    embedding_columns_ : ndarray of int
        Output column index of each integer code (the last columns).

    embedding_cardinalities_ : ndarray of int
        Number of codes of each of those columns, the unknown code 0
        included: an embedding table for column ``i`` needs
        ``embedding_cardinalities_[i]`` rows.

    See Also
    --------
    sklearn.preprocessing.RobustScaler : Median / IQR scaling without clipping.
    sklearn.preprocessing.OneHotEncoder : One-hot encoding alone.

    Notes
    -----
    The robust scaling followed by a smooth clip follows the recipe of
    RealMLP (Holzmüller et al., "Better by Default: Strong Pre-Tuned MLPs and
    Boosted Trees on Tabular Data", 2024); the quantile option and the
    embedding of categorical codes follow the practice of TabM and its
    predecessors (Gorishniy et al.).

    Examples
    --------
    >>> import pandas as pd
    >>> from sknn_large.tabular import TabularPreprocessor
    >>> X = pd.DataFrame({"age": [20.0, 35.0, None, 50.0],
    ...                   "city": ["Oslo", "Lima", "Oslo", "Pune"]})
    >>> pre = TabularPreprocessor().fit(X)
    >>> pre.get_feature_names_out().tolist()
    ['age', 'missingindicator_age', 'city_Lima', 'city_Oslo', 'city_Pune']
    >>> pre.transform(pd.DataFrame({"age": [35.0], "city": ["Rome"]}))
    array([[0., 0., 0., 0., 0.]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "categorical_features": [StrOptions({"from_dtype"}), "array-like", None],
        "numeric_transform": [StrOptions({"robust", "quantile"})],
        "clip": [Interval(Real, 0, None, closed="neither"), None],
        "numeric_bins": [Interval(Integral, 2, None, closed="left"), None],
        "max_onehot_categories": [Interval(Integral, 0, None, closed="left")],
        "add_indicator": ["boolean"],
    }

    def __init__(
        self,
        *,
        categorical_features="from_dtype",
        numeric_transform="robust",
        clip=3.0,
        numeric_bins=None,
        max_onehot_categories=16,
        add_indicator=True,
    ):
        self.categorical_features = categorical_features
        self.numeric_transform = numeric_transform
        self.clip = clip
        self.numeric_bins = numeric_bins
        self.max_onehot_categories = max_onehot_categories
        self.add_indicator = add_indicator

    # -- input -------------------------------------------------------------

    def _validate(self, X, *, reset: bool):
        return validate_table(self, X, reset=reset)

    # -- fit ---------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the column kinds, numeric statistics and categories of ``X``.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Training rows; missing values (``NaN``, ``None``, ``pd.NA``) are
            allowed.
        y : None
            Ignored; present for the :class:`~sklearn.pipeline.Pipeline` API.

        Returns
        -------
        self : TabularPreprocessor
            The fitted transformer.
        """
        X = self._validate(X, reset=True)
        mask = _categorical_mask(
            X, self.categorical_features, getattr(self, "feature_names_in_", None)
        )
        self.numeric_features_ = np.flatnonzero(~mask)
        self.categorical_features_ = np.flatnonzero(mask)
        self._fit_numeric(_numeric_block(X, self.numeric_features_))
        self._fit_categorical(X)
        return self

    def _fit_numeric(self, X_num: np.ndarray) -> None:
        missing = np.isnan(X_num)
        self.center_, self.scale_ = _robust_center_scale(X_num)
        any_missing = missing.any(axis=0)
        self.indicator_features_ = (
            self.numeric_features_[any_missing]
            if self.add_indicator
            else np.array([], dtype=np.intp)
        )
        self._indicator_mask = any_missing if self.add_indicator else None
        self.quantile_transformer_ = None
        if self.numeric_transform == "quantile" and X_num.shape[1]:
            imputed = np.where(missing, self.center_, X_num)
            self.quantile_transformer_ = QuantileTransformer(
                n_quantiles=min(_N_QUANTILES, X_num.shape[0]),
                output_distribution="normal",
                subsample=None,
            ).fit(imputed)
        self.bin_edges_ = self._fit_bins(X_num)

    def _fit_bins(self, X_num: np.ndarray) -> list[np.ndarray]:
        if self.numeric_bins is None:
            return [np.empty(0) for _ in range(X_num.shape[1])]
        # Edges on the scale the network sees; missing values are left out.
        scaled = self._scaled(X_num, np.isnan(X_num))
        probs = np.linspace(0.0, 1.0, self.numeric_bins + 1)
        edges = []
        for j in range(X_num.shape[1]):
            seen = scaled[~np.isnan(X_num[:, j]), j]
            # A column of one or two values is all its bins would say.
            if np.unique(seen).size < 3:
                edges.append(np.empty(0))
                continue
            e = np.unique(np.quantile(seen, probs))
            edges.append(e if e.size >= 3 else np.empty(0))
        return edges

    def _fit_categorical(self, X) -> None:
        self.categories_, self._known, self._has_missing = [], [], []
        onehot, ordinal, cardinalities = [], [], []
        for j in self.categorical_features_:
            cats, has_missing = _observed_categories(X, j)
            self._known.append(cats)
            self._has_missing.append(has_missing)
            self.categories_.append(
                np.append(cats, np.nan) if has_missing else cats.copy()
            )
            n_categories = len(cats) + has_missing
            if n_categories <= self.max_onehot_categories:
                onehot.append(j)
            else:
                ordinal.append(j)
                cardinalities.append(n_categories + 1)  # + the unknown code 0
        self.onehot_features_ = np.array(onehot, dtype=np.intp)
        self.ordinal_features_ = np.array(ordinal, dtype=np.intp)
        self.embedding_cardinalities_ = np.array(cardinalities, dtype=np.intp)
        n_out = len(self._output_names(self._names_in()))
        self.embedding_columns_ = np.arange(n_out - len(ordinal), n_out)

    # -- transform ---------------------------------------------------------

    def transform(self, X):
        """Scale, clip, impute and encode ``X`` with the training statistics.

        Parameters
        ----------
        X : {DataFrame, array-like} of shape (n_samples, n_features)
            Rows to transform, with the columns seen in :meth:`fit`.
            Categories not seen in fit are encoded as unknown, not refused.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features_out), dtype float32
            Numeric columns, missing indicators, one-hot columns, codes.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        blocks = [*self._transform_numeric(X), *self._transform_categorical(X)]
        return np.hstack(blocks).astype(np.float32, copy=False)

    def _transform_numeric(self, X) -> list[np.ndarray]:
        X_num = _numeric_block(X, self.numeric_features_)
        missing = np.isnan(X_num)
        X_num = self._scaled(X_num, missing)
        blocks = [X_num, *self._bins(X_num)]
        if self._indicator_mask is not None:
            blocks.append(missing[:, self._indicator_mask].astype(np.float64))
        return blocks

    def _scaled(self, X_num: np.ndarray, missing: np.ndarray) -> np.ndarray:
        X_num = np.where(missing, self.center_, X_num)
        if self.quantile_transformer_ is not None:
            X_num = self.quantile_transformer_.transform(X_num)
        else:
            X_num = (X_num - self.center_) / self.scale_
        if self.clip is not None:
            X_num = _smooth_clip(X_num, self.clip)
        return X_num

    def _bins(self, X_num: np.ndarray) -> list[np.ndarray]:
        out = []
        for j, edges in enumerate(self.bin_edges_):
            if edges.size:
                low, high = edges[:-1], edges[1:]
                out.append(np.clip((X_num[:, j : j + 1] - low) / (high - low), 0, 1))
        return out

    def _transform_categorical(self, X) -> list[np.ndarray]:
        n = X.shape[0]
        onehot, codes = [], []
        for k, j in enumerate(self.categorical_features_):
            code = _encode(_column(X, j), self._known[k], self._has_missing[k])
            n_cat = len(self.categories_[k])
            if j in self.ordinal_features_:
                codes.append((code + 1)[:, None].astype(np.float64))
            elif n_cat == 2:
                # One column: -1 / +1, and 0 (between them) for unknown.
                onehot.append(np.select([code == 0, code == 1], [-1.0, 1.0])[:, None])
            else:
                block = np.zeros((n, n_cat))
                rows = np.flatnonzero(code >= 0)
                block[rows, code[rows]] = 1.0
                onehot.append(block)
        return onehot + codes

    # -- names -------------------------------------------------------------

    def _names_in(self) -> np.ndarray:
        return _check_feature_names_in(self, None)

    def _output_names(self, names_in) -> list[str]:
        names = [str(names_in[j]) for j in self.numeric_features_]
        for j, edges in zip(self.numeric_features_, self.bin_edges_, strict=True):
            names += [f"{names_in[j]}_bin{t}" for t in range(edges.size - 1)]
        names += [f"missingindicator_{names_in[j]}" for j in self.indicator_features_]
        for k, j in enumerate(self.categorical_features_):
            if j in self.ordinal_features_:
                continue
            cats = self.categories_[k]
            shown = cats[1:] if len(cats) == 2 else cats
            names += [f"{names_in[j]}_{c}" for c in shown]
        names += [f"{names_in[j]}_code" for j in self.ordinal_features_]
        return names

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input column names; ``feature_names_in_`` (or ``x0, x1, ...``)
            when ``None``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The numeric column names, ``<name>_bin<t>`` for their bins,
            ``missingindicator_<name>``,
            ``<name>_<category>`` for one-hot columns (only the second
            category of a two-category column) and ``<name>_code`` for codes.
        """
        check_is_fitted(self)
        names_in = _check_feature_names_in(self, input_features)
        return np.asarray(self._output_names(names_in), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        # The output is float32 whatever comes in.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
