"""Class labels as LabelBinarizer's indicator matrix, from one ``np.unique``."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import LabelBinarizer


def binarize_labels(y: np.ndarray) -> tuple[LabelBinarizer, np.ndarray]:
    """``LabelBinarizer().fit(y)`` and its ``transform(y)`` as bool, one sort.

    For binary or multiclass string or integer labels. The binarizer's fit and
    transform sort them four times over (a string sort: about 5 ms for 18k
    labels, and an ensemble pays it per member); the codes of one
    ``np.unique`` give the same matrix.
    """
    classes, codes = np.unique(y, return_inverse=True)
    # Fitted on the distinct labels: the same classes_ and y_type_ ("binary"
    # up to two labels, else "multiclass") as fitted on y.
    return LabelBinarizer().fit(classes), indicator(codes, len(classes))


def indicator(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """LabelBinarizer's matrix, as bool, for class indices ``codes``."""
    codes = codes.reshape(-1)
    if n_classes > 2:
        Y = np.zeros((len(codes), n_classes), dtype=bool)
        Y[np.arange(len(codes)), codes] = True
        return Y
    # One column: the second class (none with a single class).
    return (codes == 1).reshape(-1, 1)
