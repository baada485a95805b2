"""The training engine: pure PyTorch, no scikit-learn imports."""

from ._config import _PRECISIONS, TrainConfig, TrainState
from ._losses import _LOSSES
from ._network import _ACTIVATIONS, build_mlp, get_coefs, init_glorot_, set_coefs
from ._optim import _SOLVERS
from ._train import restore, train, train_lbfgs

__all__ = [
    "_ACTIVATIONS",
    "_LOSSES",
    "_PRECISIONS",
    "_SOLVERS",
    "TrainConfig",
    "TrainState",
    "build_mlp",
    "get_coefs",
    "init_glorot_",
    "restore",
    "set_coefs",
    "train",
    "train_lbfgs",
]
