"""Input checks the estimators run before training or predicting.

Each check raises a ``ValueError`` that says what is wrong with the input and
what to do about it, so that a bad value is reported where it enters instead
of surfacing epochs later as a non-finite loss or as NaN predictions.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import scipy.sparse as sp
import torch

from ._data import iter_host_blocks

# Bytes of a dense or lazy X scanned at a time: memory stays bounded for
# memory-mapped and out-of-core sources.
_BLOCK_BYTES = 16 * 2**20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Compute dtypes whose range is float32's (bfloat16 shares its exponent).
_NARROW = (torch.float32, torch.bfloat16)


def check_class_weight(class_weight) -> None:
    """Raise ``ValueError`` unless every class weight is a finite number >= 0.

    Parameters
    ----------
    class_weight : dict, 'balanced' or None
        The classifier's ``class_weight`` parameter. 'balanced' and None need
        no check; a dict's values must be real numbers, finite and not
        negative (a weight of 0 leaves a class out of the loss).

    Raises
    ------
    ValueError
        Naming the classes whose weights are not numbers, not finite, or
        negative.
    """
    if not isinstance(class_weight, dict):
        return
    bad = {
        label: weight
        for label, weight in class_weight.items()
        if not _is_weight(weight)
    }
    if bad:
        shown = ", ".join(f"{label!r}: {weight!r}" for label, weight in bad.items())
        raise ValueError(
            "class_weight values must be finite numbers >= 0; got "
            f"{{{shown}}}. A weight multiplies the loss of every sample of its"
            " class: NaN, infinite or negative weights make the loss meaningless."
        )


def _is_weight(value) -> bool:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        return False
    return bool(np.isfinite(value)) and value >= 0


# scikit-learn's own words for such a fit, kept verbatim so that code (and
# scikit-learn's test suite) matching its message still matches ours.
_SKLEARN_LARGE_VALUES = (
    "Solver produced non-finite parameter weights. The input data may contain"
    " large values and need to be preprocessed."
)


def check_fit_range(compute_dtype, X, y=None, sample_weight=None) -> None:
    """Refuse training inputs that the network's compute dtype cannot hold.

    A float64 value beyond float32's largest finite number (about 3.4e38)
    becomes infinity when the network computes in float32 (or bfloat16), and
    training diverges at once. This check names the input instead. It reads
    the data block by block, so a memory-mapped or lazy ``X`` is never loaded
    whole.

    Parameters
    ----------
    compute_dtype : torch.dtype
        The dtype the network computes in (its parameters' dtype). Nothing is
        checked for float64.
    X : ndarray, sparse matrix or row source
        The validated inputs: a NumPy array (memory-mapped or not), a SciPy
        sparse matrix, or an object with ``shape`` and ``dtype`` whose row
        slices ``X[a:b]`` convert to NumPy arrays.
    y : ndarray, default=None
        The validated targets (a classifier's indicator matrix is skipped).
    sample_weight : ndarray, default=None
        The sample weights training uses.

    Raises
    ------
    ValueError
        If ``compute_dtype`` is float32 or bfloat16 and an input holds a
        finite value whose magnitude exceeds float32's range. The message
        also carries scikit-learn's wording for such a fit.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sknn_large._checks import check_fit_range
    >>> check_fit_range(torch.float32, np.array([[1.0, 2.0]]), np.array([0.5]))
    >>> check_fit_range(torch.float64, np.array([[1e39]]))
    """
    inputs = {"X": X, "y": y, "sample_weight": sample_weight}
    _check_range(
        compute_dtype, inputs, f" (In scikit-learn's words: {_SKLEARN_LARGE_VALUES})"
    )


def check_predict_range(compute_dtype, X) -> None:
    """Refuse inputs to predict that the network's compute dtype cannot hold.

    The same check as :func:`check_fit_range`, for ``X`` at prediction, where
    such a value would otherwise give NaN probabilities and arbitrary labels.

    Parameters
    ----------
    compute_dtype : torch.dtype
        The dtype the network computes in (its parameters' dtype).
    X : ndarray, sparse matrix or row source
        The validated inputs.

    Raises
    ------
    ValueError
        If ``compute_dtype`` is float32 or bfloat16 and ``X`` holds a finite
        value whose magnitude exceeds float32's range.
    """
    _check_range(compute_dtype, {"X": X}, "")


def _check_range(compute_dtype, inputs: dict, suffix: str) -> None:
    if compute_dtype not in _NARROW:
        return
    for name, values in inputs.items():
        if values is None:
            continue
        dtype = np.dtype(getattr(values, "dtype", np.float64))
        # Only a float wider than float32 can hold what float32 cannot; ints
        # here are labels or indicators, far inside the range.
        if dtype.kind != "f" or dtype.itemsize <= 4:
            continue
        worst = _largest_magnitude(values)
        if worst > _FLOAT32_MAX:
            raise ValueError(
                f"{name} contains finite values too large for float32 (largest"
                f" magnitude {worst:.3g}; float32 holds up to {_FLOAT32_MAX:.3g})."
                " The network computes in float32, where these values become"
                f" infinite and its outputs NaN. Scale {name} (e.g. with"
                " StandardScaler) or pass precision='float64'." + suffix
            )


def _largest_magnitude(X) -> float:
    """max |x| over ``X``, read a block of rows at a time."""
    if sp.issparse(X):
        return _block_magnitude(X.data)
    if len(X.shape) < 2:
        return _block_magnitude(np.asarray(X))
    row_bytes = max(1, int(np.prod(X.shape[1:], dtype=np.int64)) * 8)
    worst = 0.0
    for block in iter_host_blocks(X, max(1, _BLOCK_BYTES // row_bytes)):
        worst = max(worst, _block_magnitude(np.asarray(block)))
    return worst


def _block_magnitude(block: np.ndarray) -> float:
    if block.size == 0:
        return 0.0
    # Two reductions instead of np.abs(block).max(): no block-sized temporary.
    # NaN and infinity are refused before this, by scikit-learn's own check.
    return float(max(abs(block.max()), abs(block.min())))
