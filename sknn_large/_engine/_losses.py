"""Per-sample losses on raw network outputs, with scikit-learn's MLP conventions.

Each loss returns one value per sample, summed over the outputs. That sum is
what the gradient follows in scikit-learn's MLP (its output delta is
``prediction - target`` for every loss), so training dynamics match. The
value *reported* in ``loss_curve_`` divides the squared error by the number of
outputs, exactly as scikit-learn's ``squared_loss`` averages over them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _half_squared_error(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (raw - y).square().sum(dim=1)


def _half_poisson_deviance(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # With the exp link: xlogy(y, y / exp(raw)) - y + exp(raw), stably.
    return (torch.xlogy(y, y) - y * raw - y + torch.exp(raw)).sum(dim=1)


def _softmax_log_loss(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # y holds class indices: cheaper and more stable than a one-hot product.
    return F.cross_entropy(raw, y, reduction="none")


def _logistic_log_loss(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(raw, y, reduction="none").sum(dim=1)


# The output delta of every loss below is ``prediction - target`` (each pairs
# with its canonical link), which is what the hand-derived backward uses.
def _squared_delta(raw: torch.Tensor, y: torch.Tensor):
    diff = raw - y
    return 0.5 * diff.square().sum(dim=-1), diff


def _poisson_delta(raw: torch.Tensor, y: torch.Tensor):
    mean = torch.exp(raw)
    value = (torch.xlogy(y, y) - y * raw - y + mean).sum(dim=-1)
    return value, mean.sub_(y)


def _softmax_delta(raw: torch.Tensor, y: torch.Tensor):
    log_p = torch.log_softmax(raw, dim=-1)
    idx = y.unsqueeze(-1)
    value = -log_p.gather(-1, idx).squeeze(-1)
    delta = log_p.exp_()
    delta.scatter_add_(-1, idx, torch.full_like(idx, -1, dtype=delta.dtype))
    return value, delta


def _logistic_delta(raw: torch.Tensor, y: torch.Tensor):
    value = F.binary_cross_entropy_with_logits(raw, y, reduction="none")
    return value.sum(dim=-1), torch.sigmoid(raw).sub_(y)


# Huber's threshold on the raw residual (torch's and the usual default).
_HUBER_DELTA = 1.0


def _huber(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(raw, y, reduction="none", delta=_HUBER_DELTA).sum(dim=-1)


def _huber_delta(raw: torch.Tensor, y: torch.Tensor):
    diff = raw - y
    return _huber(raw, y), diff.clamp_(-_HUBER_DELTA, _HUBER_DELTA)


def _absolute(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (raw - y).abs().sum(dim=-1)


def _absolute_delta(raw: torch.Tensor, y: torch.Tensor):
    diff = raw - y
    return diff.abs().sum(dim=-1), diff.sign_()


@dataclass(frozen=True)
class Loss:
    """A per-sample loss and how its value is reported.

    Attributes
    ----------
    per_sample : callable
        ``(raw_outputs, targets) -> (n_samples,)`` loss values.
    out_activation : str
        The output activation the loss implies, as ``out_activation_``.
    divide_by_outputs : bool
        Whether the reported value averages (rather than sums) over outputs.
    index_targets : bool
        Whether targets are class indices (``int64``) instead of floats.
    value_and_delta : callable or None
        ``(raw, targets) -> (per-sample values, d value / d raw)`` over any
        leading dimensions, for the hand-derived step; None trains the loss
        through autograd only.
    """

    per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    out_activation: str
    divide_by_outputs: bool = False
    index_targets: bool = False
    value_and_delta: (
        Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    ) = None


_LOSSES: dict[str, Loss] = {
    "squared_error": Loss(
        _half_squared_error,
        "identity",
        divide_by_outputs=True,
        value_and_delta=_squared_delta,
    ),
    "poisson": Loss(_half_poisson_deviance, "exp", value_and_delta=_poisson_delta),
    # Robust regression: Huber (quadratic within 1 of the target, linear
    # beyond) and the absolute error; like the squared error, their reported
    # value averages over outputs.
    "huber": Loss(
        _huber, "identity", divide_by_outputs=True, value_and_delta=_huber_delta
    ),
    "absolute_error": Loss(
        _absolute,
        "identity",
        divide_by_outputs=True,
        value_and_delta=_absolute_delta,
    ),
    "log_loss": Loss(
        _softmax_log_loss,
        "softmax",
        index_targets=True,
        value_and_delta=_softmax_delta,
    ),
    "binary_log_loss": Loss(
        _logistic_log_loss, "logistic", value_and_delta=_logistic_delta
    ),
}


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values``, weighted by ``weight`` when given (sklearn's average)."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum()
