"""Column helpers of ``TabularPreprocessor``: kinds, numbers and categories.

Kept apart from the transformer so that each stays small; nothing here is
public.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd

# IQR and 5-95% range of a standard normal: dividing by them makes the robust
# spread equal the standard deviation when the column is normal.
_IQR_NORMAL = 1.3490
_P5_P95_NORMAL = 3.2897


# ---------------------------------------------------------------------------
# Column kinds


def _is_categorical_dtype(dtype) -> bool:
    # scikit-learn's "from_dtype" convention, widened as in this package's
    # design: pandas category, object, string and bool columns hold categories.
    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
    )


def _is_number(value) -> bool:
    is_bool = isinstance(value, bool | np.bool_)
    return isinstance(value, Real | np.number) and not is_bool


def _object_column_is_categorical(values: np.ndarray) -> bool:
    # An object array has no per-column dtype: a column is numeric when every
    # non-missing value in it is a number.
    present = values[~pd.isna(values)]
    return not all(_is_number(v) for v in present)


def _detected_categorical(X) -> np.ndarray:
    if hasattr(X, "dtypes"):
        return np.array([_is_categorical_dtype(d) for d in X.dtypes], dtype=bool)
    if X.dtype.kind == "O":
        return np.array(
            [_object_column_is_categorical(X[:, j]) for j in range(X.shape[1])],
            dtype=bool,
        )
    # bool, unicode and bytes arrays hold categories; numeric arrays do not.
    return np.full(X.shape[1], X.dtype.kind in "bUS", dtype=bool)


def _categorical_mask(X, spec, feature_names) -> np.ndarray:
    n_features = X.shape[1]
    if isinstance(spec, str):  # "from_dtype"
        return _detected_categorical(X)
    mask = np.zeros(n_features, dtype=bool)
    if spec is None:
        return mask
    spec = np.asarray(spec)
    if spec.size == 0:
        return mask
    if spec.dtype.kind == "b":
        if spec.shape != (n_features,):
            raise ValueError(
                f"categorical_features as a boolean mask needs {n_features} "
                f"entries, got shape {spec.shape}."
            )
        return spec.copy()
    if spec.dtype.kind in "iu":
        if spec.min() < -n_features or spec.max() >= n_features:
            raise ValueError(
                f"categorical_features holds an index outside [0, {n_features})."
            )
        mask[spec] = True
        return mask
    if spec.dtype.kind in "UO":
        if feature_names is None:
            raise ValueError(
                "categorical_features given by name needs X with string column "
                "names (a pandas DataFrame)."
            )
        names = list(feature_names)
        missing = [s for s in spec if s not in names]
        if missing:
            raise ValueError(f"categorical_features names unknown columns {missing}.")
        mask[[names.index(s) for s in spec]] = True
        return mask
    raise ValueError(
        "categorical_features must be 'from_dtype', None, a boolean mask, "
        f"indices or column names; got dtype {spec.dtype}."
    )


def _column(X, j: int) -> np.ndarray:
    # One column as a 1-D object or numeric array, missing values as NaN.
    if hasattr(X, "iloc"):
        col = X.iloc[:, j]
        if isinstance(col.dtype, pd.CategoricalDtype):
            return np.asarray(col.astype(object).where(col.notna(), np.nan))
        return col.to_numpy(dtype=object, na_value=np.nan)
    return X[:, j]


def _numeric_block(X, idx: np.ndarray) -> np.ndarray:
    if idx.size == 0:
        return np.empty((X.shape[0], 0))
    block = X.iloc[:, idx] if hasattr(X, "iloc") else X[:, idx]
    try:
        if hasattr(block, "to_numpy"):
            out = block.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out = np.asarray(block, dtype=np.float64)
    except (TypeError, ValueError):
        # Object arrays holding None / pd.NA for missing numbers.
        out = (
            pd.DataFrame(np.asarray(block, dtype=object))
            .apply(pd.to_numeric)
            .to_numpy(dtype=np.float64, na_value=np.nan)
        )
    if np.isinf(out).any():
        raise ValueError("Input X contains infinity in a numeric column.")
    return out


# ---------------------------------------------------------------------------
# Numeric statistics


def _robust_center_scale(X_num: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread of each column, ignoring NaN."""
    n_cols = X_num.shape[1]
    center = np.zeros(n_cols)
    scale = np.ones(n_cols)
    for j in range(n_cols):
        x = X_num[:, j]
        x = x[~np.isnan(x)]
        if x.size == 0:  # never observed: imputed to 0, left unscaled
            continue
        q = np.quantile(x, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
        center[j] = q[3]
        # The first non-zero of three ever-wider spreads (see module docstring).
        for spread in ((q[4] - q[2]) / _IQR_NORMAL, (q[5] - q[1]) / _P5_P95_NORMAL):
            if spread > 0:
                scale[j] = spread
                break
        else:
            scale[j] = (q[6] - q[0]) / 2 if q[6] > q[0] else 1.0
    return center, scale


def _smooth_clip(x: np.ndarray, c: float) -> np.ndarray:
    return x / np.sqrt(1.0 + (x / c) ** 2)


# ---------------------------------------------------------------------------
# Categories


def _sort_categories(values: np.ndarray) -> np.ndarray:
    try:
        ordered = sorted(values)
    except TypeError:  # mixed types: group by type, then by text
        ordered = sorted(values, key=lambda v: (type(v).__name__, str(v)))
    return np.array(ordered, dtype=object)


def _observed_categories(X, j: int) -> tuple[np.ndarray, bool]:
    """The categories of column ``j`` seen in these rows, and whether NaN was."""
    col = X.iloc[:, j] if hasattr(X, "iloc") else None
    if col is not None and isinstance(col.dtype, pd.CategoricalDtype):
        # Keep the dtype's declared order, dropping categories never seen.
        codes = col.cat.codes.to_numpy()
        seen = np.unique(codes[codes >= 0])
        cats = np.asarray(col.cat.categories[seen], dtype=object)
        return cats, bool((codes < 0).any())
    values = _column(X, j)
    missing = pd.isna(values)
    return _sort_categories(pd.unique(values[~missing])), bool(missing.any())


def _encode(values: np.ndarray, categories: np.ndarray, has_missing: bool):
    """Codes ``0..K-1`` (K = categories, + 1 for missing); -1 for unknown."""
    missing = pd.isna(values)
    codes = pd.Index(categories, dtype=object).get_indexer(
        np.where(missing, None, values)
    )
    codes[missing] = len(categories) if has_missing else -1
    return codes
