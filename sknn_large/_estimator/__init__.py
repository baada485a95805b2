"""The scikit-learn layer: parameters, validation, targets, fitted attributes."""

from ._base import BaseLargeMLP
from ._inputs import hidden_sizes, validate_input
from ._stacked import fit_many

__all__ = ["BaseLargeMLP", "fit_many", "hidden_sizes", "validate_input"]
