"""The solver table: one record per public ``solver`` name.

Every stochastic solver updates a stack of ``K`` networks at once. The stack's
parameters are one flat ``(K, P)`` tensor (all weights first, then all biases),
so an update is a handful of element-wise operations on one tensor whatever the
number of layers, and per-member hyper-parameters are ``(K, 1)`` tensors that
broadcast along each row. Adam is scikit-learn's (epsilon added to
``sqrt(v)``, the bias corrections folded into the rate), so that a fit with
scikit-learn's ``random_state`` follows its MLP's trajectory; the other
formulas are torch.optim's. Nothing here imports ``torch.optim`` (whose first
import pulls in the compiler stack, seconds on a cold process).

Adding a solver is one :class:`Solver` entry in :data:`_SOLVERS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._config import TrainConfig

Buffers = dict[str, torch.Tensor]
Hyper = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Solver:
    """How one public solver trains.

    Attributes
    ----------
    name : str
        The public ``solver`` option.
    buffers : tuple of str
        Per-parameter state it keeps, named as torch.optim names them (so a
        state converts to and from an optimizer ``state_dict``).
    counts_steps : bool
        Whether it keeps a step count (bias correction; torch records it).
    step : callable or None
        ``step(theta, grad, buffers, hyper)`` updates ``theta`` and the
        buffers in place; None for full-batch solvers (L-BFGS), which the
        engine drives through SciPy instead.
    hyper : tuple of str
        The per-member settings the step reads, as ``(K, 1)`` tensors.
    fused : callable or None
        ``fused(theta, grad, buffers, settings, lr, step, n_weights, l2=None)``:
        torch's fused kernel for the same update, one pass over the
        parameters, for one member (flat 1-D tensors) or a stack whose members
        share every setting, rate and step count (contiguous ``(K, P)``
        tensors); settings as floats, ``lr`` and ``step`` one-element tensors.
        ``l2`` (flat tensors only), ``(coef, split_for_l2(...))``, adds
        ``coef * weights`` to the weights' gradient inside the kernel, which
        does not write ``grad``. None: the stacked ``step`` serves every case.
    fused_l2 : bool
        Whether ``fused`` takes a nonzero ``l2``: the kernel's own coupled
        weight decay, which saves the pass of ``grad.add_(w, alpha=l2)`` over
        the weights and sums to the same bits on whole vector lengths (a
        tail element can differ by one ulp).
    fused_reads_step : bool
        Whether ``fused`` reads the step count on the host (so it serves CPU
        tensors only: a captured CUDA graph would freeze the value read).
    """

    name: str
    buffers: tuple[str, ...]
    counts_steps: bool
    step: Callable[[torch.Tensor, torch.Tensor, Buffers, Hyper], None] | None
    hyper: tuple[str, ...] = ()
    fused: Callable | None = None
    fused_reads_step: bool = False
    fused_l2: bool = False

    @property
    def stochastic(self) -> bool:
        """Whether it trains on mini-batches."""
        return self.step is not None

    def kept_buffers(self, cfg: TrainConfig) -> tuple[str, ...]:
        """The buffers torch.optim keeps for these settings.

        torch keeps no momentum buffer when momentum is zero; the engine keeps
        one anyway (it is inert then) but does not report it.
        """
        if cfg.momentum > 0:
            return self.buffers
        return tuple(b for b in self.buffers if b != "momentum_buffer")

    def build_state(self, theta: torch.Tensor) -> Buffers:
        """Zero buffers shaped like ``theta``."""
        return {name: torch.zeros_like(theta) for name in self.buffers}


def _adam(theta, grad, buf, h, decoupled: bool = False) -> None:
    m, v, step = buf["exp_avg"], buf["exp_avg_sq"], h["step"]
    b1, b2 = h["beta_1"], h["beta_2"]
    if decoupled:
        theta[:, : h["n_weights"]].mul_(1 - h["lr"] * h["weight_decay"])
    m.lerp_(grad, 1 - b1)
    v.mul_(b2).addcmul_(grad, grad * (1 - b2))
    if decoupled:
        # torch's AdamW: epsilon on the bias-corrected sqrt(v).
        step_size = h["lr"] / (1 - b1**step)
        denom = (v.sqrt() / (1 - b2**step).sqrt()).add_(h["epsilon"])
    else:
        # scikit-learn's Adam: epsilon on sqrt(v), the corrections in the rate.
        step_size = h["lr"] * (1 - b2**step).sqrt() / (1 - b1**step)
        denom = v.sqrt().add_(h["epsilon"])
    theta.sub_(m.div(denom).mul_(step_size))


def _adamw(theta, grad, buf, h) -> None:
    _adam(theta, grad, buf, h, decoupled=True)


def _sgd(theta, grad, buf, h) -> None:
    mom = h["momentum"]
    b = buf["momentum_buffer"]
    b.mul_(mom).add_(grad)
    # Nesterov looks one step ahead along the updated buffer.
    direction = torch.where(h["nesterov"] > 0, grad + mom * b, b)
    theta.sub_(direction.mul_(h["lr"]))


def _rmsprop(theta, grad, buf, h) -> None:
    # beta_2 plays the role of the squared-gradient decay, as in Adam.
    sq, b = buf["square_avg"], buf["momentum_buffer"]
    a = h["beta_2"]
    sq.mul_(a).addcmul_(grad, grad * (1 - a))
    scaled = grad / sq.sqrt().add_(h["epsilon"])
    # With momentum 0 the buffer is the scaled gradient itself.
    b.mul_(h["momentum"]).add_(scaled)
    theta.sub_(b * h["lr"])


def split_for_l2(
    theta: torch.Tensor,
    grad: torch.Tensor,
    buf: Buffers,
    names: tuple[str, ...],
    n_weights: int,
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Weight and bias views of ``theta``, ``grad`` and the ``names`` buffers.

    Made once per fit for a fused kernel's ``l2`` (flat tensors): the
    weights' part takes the L2 gradient, the biases' none.
    """
    tensors = (theta, grad, *(buf[name] for name in names))
    return (
        tuple(t[:n_weights] for t in tensors),
        tuple(t[n_weights:] for t in tensors),
    )


def _calls(
    theta: torch.Tensor, grad: torch.Tensor, buf: Buffers, names: tuple[str, ...], l2
) -> list[tuple[tuple[torch.Tensor, ...], float]]:
    """``(tensors, weight decay)`` for each kernel call: one, or two with ``l2``."""
    if l2 is None:
        return [((theta, grad, *(buf[name] for name in names)), 0.0)]
    coef, (weights, biases) = l2
    return [(weights, coef), (biases, 0.0)]


def _fused_adam(theta, grad, buf, s, lr, step, n_weights: int, l2=None) -> None:
    # torch's kernel adds epsilon to the bias-corrected sqrt(v); scikit-learn
    # adds it to sqrt(v): the same update with epsilon / sqrt(1 - beta_2^t).
    eps = s["epsilon"] / math.sqrt(1.0 - s["beta_2"] ** float(step))
    for (p, g, m, v), decay in _calls(theta, grad, buf, _ADAM_BUFFERS, l2):
        torch._fused_adam_(
            [p], [g], [m], [v], [], [step],
            lr=lr, beta1=s["beta_1"], beta2=s["beta_2"], weight_decay=decay,
            eps=eps, amsgrad=False, maximize=False,
        )  # fmt: skip


def _pieces(t: torch.Tensor, part: slice) -> list[torch.Tensor]:
    # The kernels need contiguous tensors: a column slice of a (K, P) stack
    # is not one (the CPU kernel writes past it), each member's row slice is.
    return [t[part]] if t.dim() == 1 else [row[part] for row in t]


def _fused_adamw(theta, grad, buf, s, lr, step, n_weights: int) -> None:
    # Decoupled decay on the weights only: two lists, one call each.
    m, v = buf["exp_avg"], buf["exp_avg_sq"]
    for part, decay in (
        (slice(0, n_weights), s["weight_decay"]),
        (slice(n_weights, None), 0.0),
    ):
        ts = [_pieces(t, part) for t in (theta, grad, m, v)]
        torch._fused_adamw_(
            *ts, [], [step] * len(ts[0]),
            lr=lr, beta1=s["beta_1"], beta2=s["beta_2"], weight_decay=decay,
            eps=s["epsilon"], amsgrad=False, maximize=False,
        )  # fmt: skip


def _fused_sgd(theta, grad, buf, s, lr, step, n_weights: int, l2=None) -> None:
    # Zero-initialised buffers make every step a "later" step (buf = g at first).
    momentum = s["momentum"]
    for (p, g, b), decay in _calls(theta, grad, buf, _SGD_BUFFERS, l2):
        torch._fused_sgd_(
            [p], [g], [b] if momentum > 0 else [],
            weight_decay=decay, momentum=momentum, lr=lr, dampening=0.0,
            nesterov=bool(s["nesterov"]), maximize=False, is_first_step=False,
        )  # fmt: skip


_ADAM_HYPER = ("lr", "beta_1", "beta_2", "epsilon")
_ADAM_BUFFERS = ("exp_avg", "exp_avg_sq")
_SGD_BUFFERS = ("momentum_buffer",)

# Public solver names -> records. `_parameter_constraints` reads its options here.
_SOLVERS: dict[str, Solver] = {
    "adam": Solver(
        "adam",
        _ADAM_BUFFERS,
        True,
        _adam,
        _ADAM_HYPER,
        _fused_adam,
        fused_reads_step=True,
        fused_l2=True,
    ),
    "adamw": Solver(
        "adamw",
        _ADAM_BUFFERS,
        True,
        _adamw,
        (*_ADAM_HYPER, "weight_decay"),
        _fused_adamw,
    ),
    "sgd": Solver(
        "sgd",
        _SGD_BUFFERS,
        False,
        _sgd,
        ("lr", "momentum", "nesterov"),
        _fused_sgd,
        fused_l2=True,
    ),
    "rmsprop": Solver(
        "rmsprop",
        ("square_avg", "momentum_buffer"),
        True,
        _rmsprop,
        ("lr", "beta_2", "epsilon", "momentum"),
    ),
    "lbfgs": Solver("lbfgs", (), False, None),
}

STOCHASTIC = frozenset(name for name, s in _SOLVERS.items() if s.stochastic)


def l2_strength(cfg: TrainConfig) -> float:
    """The L2 part of the penalty."""
    if cfg.penalty == "l2":
        return cfg.alpha
    if cfg.penalty == "elasticnet":
        return cfg.alpha * (1.0 - cfg.l1_ratio)
    return 0.0


def l1_strength(cfg: TrainConfig) -> float:
    """The L1 part of the penalty."""
    if cfg.penalty == "l1":
        return cfg.alpha
    if cfg.penalty == "elasticnet":
        return cfg.alpha * cfg.l1_ratio
    return 0.0


def member_hyper(cfg: TrainConfig, lr: float) -> dict[str, float]:
    """One member's settings, as the step functions and the penalty read them.

    AdamW applies the L2 part as decoupled weight decay inside its step, so
    it is not a loss term for it.
    """
    decoupled = cfg.solver == "adamw"
    return {
        "lr": lr,
        "beta_1": cfg.beta_1,
        "beta_2": cfg.beta_2,
        "epsilon": cfg.epsilon,
        "momentum": cfg.momentum,
        "nesterov": float(cfg.nesterovs_momentum and cfg.momentum > 0),
        "weight_decay": l2_strength(cfg) if decoupled else 0.0,
        "l2": 0.0 if decoupled else l2_strength(cfg),
        "l1": l1_strength(cfg),
    }


def lr_after_epoch(cfg: TrainConfig, current: float, t: int) -> float:
    """The learning rate for the next epoch (scikit-learn's ``invscaling``)."""
    if cfg.solver == "sgd" and cfg.learning_rate == "invscaling":
        return cfg.learning_rate_init / (t + 1) ** cfg.power_t
    return current


# ------------------------------------------------------------ per-batch schedules

# Share of the steps spent warming up, for the schedules that warm up.
_WARMUP_SHARE = {"warmup_cosine": 0.05, "onecycle": 0.3}
# onecycle starts at lr / 25 and ends at lr / 10**4 (the usual one-cycle shape).
_ONECYCLE_START, _ONECYCLE_END = 1 / 25, 1e-4


def _cosine(p: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.cos(torch.pi * p.clamp(0, 1)))


def _warmup_cosine(p: torch.Tensor) -> torch.Tensor:
    w = _WARMUP_SHARE["warmup_cosine"]
    return torch.where(p < w, (p + 1e-12) / w, _cosine((p - w) / (1 - w)))


def _onecycle(p: torch.Tensor) -> torch.Tensor:
    w, lo, end = _WARMUP_SHARE["onecycle"], _ONECYCLE_START, _ONECYCLE_END
    up = lo + (1 - lo) * p / w
    down = end + (1 - end) * _cosine((p - w) / (1 - w))
    return torch.where(p < w, up, down)


# Public ``learning_rate`` options stepped every batch -> the factor applied to
# ``learning_rate_init`` at training progress ``p = step / total steps``.
# They apply to every stochastic solver; 'constant', 'invscaling' and
# 'adaptive' keep scikit-learn's per-epoch rules (the last two for sgd only).
_BATCH_SCHEDULES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cosine": _cosine,
    "warmup_cosine": _warmup_cosine,
    "onecycle": _onecycle,
}
_EPOCH_SCHEDULES = ("constant", "invscaling", "adaptive")
LEARNING_RATES = frozenset(_EPOCH_SCHEDULES) | frozenset(_BATCH_SCHEDULES)


def schedule_factor(names: list[str], progress: torch.Tensor) -> torch.Tensor:
    """Per-member factor on the initial rate, ``(K, 1)``; 1 for epoch schedules.

    Parameters
    ----------
    names : list of str
        Each member's ``learning_rate``.
    progress : Tensor of shape (K, 1)
        Steps taken over the steps of ``max_iter`` epochs.
    """
    if len(set(names)) == 1:
        # Every member on one schedule (an ensemble, a single fit): no row
        # selection, which would build an index tensor every step.
        fn = _BATCH_SCHEDULES.get(names[0])
        return torch.ones_like(progress) if fn is None else fn(progress)
    out = torch.ones_like(progress)
    for name, fn in _BATCH_SCHEDULES.items():
        rows = [k for k, n in enumerate(names) if n == name]
        if rows:
            idx = torch.tensor(rows, device=progress.device)
            out[idx] = fn(progress[idx])
    return out
