"""Per-sample losses on raw network outputs, with scikit-learn's MLP conventions.

Each loss returns one value per sample, summed over the outputs. That sum is
what the gradient follows in scikit-learn's MLP (its output delta is
``prediction - target`` for every loss), so training dynamics match. The
value *reported* in ``loss_curve_`` divides the squared error by the number of
outputs, exactly as scikit-learn's ``squared_loss`` averages over them.

The log losses take label smoothing (``Loss.smoothable``): a third argument,
one ``eps`` per member, that replaces the targets by torch's smoothed ones;
without it (None) they run exactly the unsmoothed arithmetic.
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


# Label smoothing (the log losses only). ``smoothing`` is None (none) or eps
# of shape broadcastable to the raw outputs with a last dimension of 1, e.g.
# (K, 1, 1) for a stack's (K, B, C) outputs: one eps per member. The targets
# become torch's ``CrossEntropyLoss(label_smoothing=eps)``: (1 - eps) * onehot
# + eps / C for the softmax, y * (1 - eps) + eps / 2 for each logistic output.
Smoothing = torch.Tensor | None


def _smoothed_softmax(
    log_p: torch.Tensor, y: torch.Tensor, smoothing: torch.Tensor, dim: int = -1
):
    eps = smoothing.squeeze(-1)
    picked = log_p.gather(dim, y.unsqueeze(dim)).squeeze(dim)
    return -(1 - eps) * picked - (eps / log_p.shape[dim]) * log_p.sum(dim=dim)


def _smoothed_binary(y: torch.Tensor, smoothing: Smoothing) -> torch.Tensor:
    if smoothing is None:
        return y
    return y * (1 - smoothing) + smoothing / 2


def _softmax_log_loss(
    raw: torch.Tensor, y: torch.Tensor, smoothing: Smoothing = None
) -> torch.Tensor:
    if smoothing is None:
        # y holds class indices: cheaper and more stable than a one-hot product.
        return F.cross_entropy(raw, y, reduction="none")
    return _smoothed_softmax(torch.log_softmax(raw, dim=-1), y, smoothing)


def _logistic_log_loss(
    raw: torch.Tensor, y: torch.Tensor, smoothing: Smoothing = None
) -> torch.Tensor:
    target = _smoothed_binary(y, smoothing)
    return F.binary_cross_entropy_with_logits(raw, target, reduction="none").sum(-1)


# The output delta of every loss below is ``prediction - target`` (each pairs
# with its canonical link), which is what the hand-derived backward uses.
# ``dim`` is the outputs' dimension: -2 where a narrow output layer is held
# transposed, ``(..., n_outputs, B)`` (reducing along the contiguous rows
# there is several times faster than along a strided view).
def _squared_delta(raw: torch.Tensor, y: torch.Tensor, dim: int = -1):
    diff = raw - y
    return 0.5 * diff.square().sum(dim=dim), diff


def _poisson_delta(raw: torch.Tensor, y: torch.Tensor, dim: int = -1):
    mean = torch.exp(raw)
    value = (torch.xlogy(y, y) - y * raw - y + mean).sum(dim=dim)
    return value, mean.sub_(y)


# With label smoothing the delta is still ``prediction - target``, against
# the smoothed target.
def _softmax_delta(
    raw: torch.Tensor, y: torch.Tensor, smoothing: Smoothing = None, dim: int = -1
):
    log_p = torch.log_softmax(raw, dim=dim)
    idx = y.unsqueeze(dim)
    if smoothing is None:
        value = log_p.gather(dim, idx).squeeze(dim).neg_()
        # A scalar scatter-add: no (.., 1, B) tensor of -1 made per step.
        delta = log_p.exp_().scatter_(dim, idx, -1.0, reduce="add")
        return value, delta
    value = _smoothed_softmax(log_p, y, smoothing, dim)
    delta = log_p.exp_().sub_(smoothing / raw.shape[dim])
    hit = (smoothing - 1).to(delta.dtype).expand(idx.shape).contiguous()
    delta.scatter_add_(dim, idx, hit)
    return value, delta


def _logistic_delta(
    raw: torch.Tensor, y: torch.Tensor, smoothing: Smoothing = None, dim: int = -1
):
    target = _smoothed_binary(y, smoothing)
    value = F.binary_cross_entropy_with_logits(raw, target, reduction="none")
    return value.sum(dim=dim), torch.sigmoid(raw).sub_(target)


# Huber's threshold on the raw residual (torch's and the usual default).
_HUBER_DELTA = 1.0


def _huber(raw: torch.Tensor, y: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.huber_loss(raw, y, reduction="none", delta=_HUBER_DELTA).sum(dim=dim)


def _huber_delta(raw: torch.Tensor, y: torch.Tensor, dim: int = -1):
    diff = raw - y
    return _huber(raw, y, dim), diff.clamp_(-_HUBER_DELTA, _HUBER_DELTA)


def _absolute(raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (raw - y).abs().sum(dim=-1)


def _absolute_delta(raw: torch.Tensor, y: torch.Tensor, dim: int = -1):
    diff = raw - y
    return diff.abs().sum(dim=dim), diff.sign_()


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
        ``(raw, targets, [smoothing,] dim=-1) -> (per-sample values,
        d value / d raw)`` over any leading dimensions, the outputs along
        ``dim``, for the hand-derived step; None trains the loss through
        autograd only.
    smoothable : bool
        Whether the loss takes label smoothing: then both callables accept a
        third argument, ``smoothing`` (see :meth:`values`).
    """

    per_sample: Callable[..., torch.Tensor]
    out_activation: str
    divide_by_outputs: bool = False
    index_targets: bool = False
    value_and_delta: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    smoothable: bool = False

    def values(self, raw, y, smoothing: Smoothing = None) -> torch.Tensor:
        """Per-sample values; ``smoothing`` is None or eps (see the module)."""
        if smoothing is None:
            return self.per_sample(raw, y)
        return self.per_sample(raw, y, smoothing)

    def values_and_delta(self, raw, y, smoothing: Smoothing = None, dim: int = -1):
        """``value_and_delta`` with label smoothing ``smoothing`` (or None).

        ``dim`` is the dimension of the outputs (and of ``y``'s, for float
        targets; index targets have none there).
        """
        if smoothing is None:
            return self.value_and_delta(raw, y, dim=dim)
        return self.value_and_delta(raw, y, smoothing, dim=dim)


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
        smoothable=True,
    ),
    "binary_log_loss": Loss(
        _logistic_log_loss,
        "logistic",
        value_and_delta=_logistic_delta,
        smoothable=True,
    ),
}


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values``, weighted by ``weight`` when given (sklearn's average)."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum()
