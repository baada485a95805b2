"""sknn_large: scikit-learn's multi-layer perceptrons, trained with PyTorch.

``LargeMLPClassifier`` and ``LargeMLPRegressor`` are drop-in replacements for
:class:`sklearn.neural_network.MLPClassifier` and
:class:`sklearn.neural_network.MLPRegressor` that train on CUDA when available.
"""

from ._checkpoint import CheckpointError
from ._classifier import LargeMLPClassifier
from ._onnx import register_onnx_converters, to_onnx
from ._persist import ModelFileError, load, save
from ._plotting import TrainingCurveDisplay
from ._regressor import LargeMLPRegressor
from ._version import __version__
from .tabular import TabularMLPClassifier, TabularMLPRegressor

__all__ = [
    "CheckpointError",
    "LargeMLPClassifier",
    "LargeMLPRegressor",
    "ModelFileError",
    "TabularMLPClassifier",
    "TabularMLPRegressor",
    "TrainingCurveDisplay",
    "__version__",
    "load",
    "register_onnx_converters",
    "save",
    "to_onnx",
]
