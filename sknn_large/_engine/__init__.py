"""The training engine: pure PyTorch, no scikit-learn imports.

One engine trains a stack of ``K >= 1`` networks of one architecture; a plain
``fit`` is ``K = 1``. The sklearn layer hands down :class:`Member` records
(settings, state, network, rows, hooks) and a feed, and reads the results
back from them.
"""

from ._config import _PRECISIONS, TrainConfig, TrainState
from ._loop import Member
from ._losses import _LOSSES
from ._network import _ACTIVATIONS, build_mlp, get_coefs, init_glorot_, set_coefs
from ._optstate import from_torch_state, to_torch_state
from ._run import fit_members
from ._solvers import _SOLVERS, STOCHASTIC
from ._threads import threads_for
from ._validation import Validation

__all__ = [
    "_ACTIVATIONS",
    "_LOSSES",
    "_PRECISIONS",
    "_SOLVERS",
    "STOCHASTIC",
    "Member",
    "TrainConfig",
    "TrainState",
    "Validation",
    "build_mlp",
    "fit_members",
    "from_torch_state",
    "get_coefs",
    "init_glorot_",
    "set_coefs",
    "threads_for",
    "to_torch_state",
]
