"""Plain data handed between the sklearn layer and the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TrainConfig:
    """Everything the engine needs to know about one training call.

    The sklearn layer builds it from validated estimator parameters; the engine
    never sees the estimator itself. Members trained in one stack share
    :meth:`group_key`; everything else may differ between them.
    """

    solver: str
    loss: str
    activation: str = "relu"
    dropout: float = 0.0
    label_smoothing: float = 0.0
    learning_rate_init: float = 1e-3
    learning_rate: str = "constant"
    power_t: float = 0.5
    momentum: float = 0.9
    nesterovs_momentum: bool = True
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    alpha: float = 1e-4
    penalty: str | None = "l2"
    l1_ratio: float = 0.15
    batch_size: int = 200
    max_iter: int = 200
    shuffle: bool = True
    tol: float = 1e-4
    n_iter_no_change: float = 10
    early_stopping: bool = False
    max_fun: int = 15000
    verbose: int = 0
    incremental: bool = False
    resume: bool = False
    cuda_graphs: bool = False
    autocast_dtype: torch.dtype | None = None

    def group_key(self) -> tuple:
        """The settings every member of one stack must share."""
        return (
            self.solver,
            self.loss,
            self.activation,
            self.batch_size,
            self.autocast_dtype,
            self.cuda_graphs,
            self.incremental,
        )


@dataclass
class TrainState:
    """What survives between training calls (warm start, ``partial_fit``).

    ``n_iter`` counts the epochs of the latest call, as in scikit-learn;
    ``t`` counts every training sample seen since the network was created.
    ``epoch_order`` is the scikit-learn epoch order of the latest call
    (``sknn_large._data.EpochOrder``), which ``partial_fit`` continues (model
    files keep it; a checkpointed fit replays its epochs' draws instead).
    """

    generator: torch.Generator
    dropout_seed: int = 0
    dropout_rng: tuple[str, torch.Tensor] | None = None
    n_iter: int = 0
    t: int = 0
    loss: float | None = None
    loss_curve: list[float] = field(default_factory=list)
    best_loss: float | None = float("inf")
    validation_scores: list[float] | None = None
    validation_loss_curve: list[float] | None = None
    best_validation_score: float | None = None
    no_improvement_count: int = 0
    optimizer_state: dict | None = None
    best_params: list[torch.Tensor] | None = None
    converged: bool = True
    interrupted: bool = False
    diverged: bool = False
    messages: list[str] = field(default_factory=list)
    epoch_order: object | None = field(default=None, repr=False, compare=False)


# Public ``precision`` names -> (parameter dtype, autocast dtype). "auto" is
# resolved by the estimator: float32 for stochastic solvers, the input's dtype
# for L-BFGS.
_PRECISIONS: dict[str, tuple[torch.dtype | None, torch.dtype | None]] = {
    "auto": (None, None),
    "float32": (torch.float32, None),
    "float64": (torch.float64, None),
    "bfloat16": (torch.float32, torch.bfloat16),
}
