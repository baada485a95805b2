"""Input validation for the estimators, out-of-core inputs included.

Every ``X`` an estimator accepts is one of a few kinds, decided here once
(:func:`input_kind`): in-memory dense or sparse arrays follow scikit-learn's
own validation; memory-mapped files and lazy row sources (``h5py``, ``zarr``,
Dask) are validated without being read whole, and come back as arrays or
:class:`~sknn_large._data.RowView` objects that the feeds stream.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import validate_data

from .._data import LAZY, MAPPED, RowView, iter_host_blocks, rows_for_bytes, source_kind

# Bytes of an out-of-core X checked for NaN and infinity at a time.
_CHECK_BLOCK_BYTES = 64 * 2**20


def input_kind(X) -> str:
    """How to validate ``X``: 'in_memory' (scikit-learn's way), 'mapped', 'lazy'.

    The kind is :func:`~sknn_large._data.source_kind`'s, except that a
    memory-mapped file whose dtype scikit-learn would convert in one whole
    copy is read lazily instead.
    """
    kind = source_kind(X)
    if kind == MAPPED and X.dtype not in (np.float32, np.float64):
        return LAZY
    return kind if kind in (MAPPED, LAZY) else "in_memory"


def validate_input(estimator, X="no_validation", y="no_validation", **kwargs):
    """scikit-learn's ``validate_data``, keeping out-of-core ``X`` where it is.

    scikit-learn's finite check sums the whole array, which maps every page of
    a memory-mapped file into the process at once, and its conversion reads a
    lazy array-like whole into memory. For those ``X`` the finite check runs
    block by block instead, and a lazy array-like comes back as a
    :class:`~sknn_large._data.RowView`. The error messages are scikit-learn's.
    """
    kind = input_kind(X)
    if kind == "in_memory":
        return validate_data(estimator, X, y, **kwargs)
    kwargs["ensure_all_finite"] = False
    source = X
    if kind == LAZY:
        # A read-only broadcast of the first row stands in for X: scikit-learn
        # checks the shape, the features and y against it without reading X.
        n, d = X.shape
        head = np.asarray(X[: min(n, 1)])
        if head.dtype not in (np.float32, np.float64):
            head = head.astype(np.float64)
        X = np.broadcast_to(head, (n, d)) if n else head
    out = validate_data(estimator, X, y, **kwargs)
    X_valid = out[0] if isinstance(out, tuple) else out
    if kind == LAZY:
        X_valid = RowView(source, dtype=X_valid.dtype)
        out = (X_valid, out[1]) if isinstance(out, tuple) else X_valid
    rows = rows_for_bytes(X_valid, _CHECK_BLOCK_BYTES)
    for block in iter_host_blocks(X_valid, rows):
        assert_all_finite(block, input_name="X")
    return out


def hidden_sizes(hidden_layer_sizes) -> list[int]:
    """``hidden_layer_sizes`` as a list (an int means one layer)."""
    if not hasattr(hidden_layer_sizes, "__iter__"):
        return [hidden_layer_sizes]
    return list(hidden_layer_sizes)
