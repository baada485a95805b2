"""Held-out data of a member, and what is measured on it after each epoch.

A member with a :class:`Validation` is scored on its held-out rows after
every epoch (the score early stopping follows) and, when the record carries
the rows' targets, the training loss is evaluated on them as well (without
the penalty). The held-out rows are an early-stopping split of the training
data or a validation set of the caller's; the engine does not know which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ._losses import Loss, weighted_mean


@dataclass
class Validation:
    """Held-out data of one member, measured after every epoch.

    Exactly one of ``rows`` (rows of the shared training data) and
    ``blocks`` (a callable yielding the member's own input blocks on the
    training device) is set.

    Attributes
    ----------
    score : callable
        ``raw outputs (ndarray, float64) -> score``; higher is better.
    rows : Tensor or None
        The held-out rows of the shared data.
    blocks : callable or None
        Yields the held-out inputs, in order, on the training device.
    targets : Tensor or None
        The held-out targets on the training device, as the loss takes them
        (class indices or floats); with them the member's loss on these rows
        is recorded in ``TrainState.validation_loss_curve``.
    sample_weight : Tensor or None
        The held-out rows' weights on the training device (None: equal).
    """

    score: Callable[[np.ndarray], float]
    rows: torch.Tensor | None = None
    blocks: Callable[[], Iterator[torch.Tensor]] | None = None
    targets: torch.Tensor | None = None
    sample_weight: torch.Tensor | None = None


def held_out_loss(loss: Loss, raw: torch.Tensor, v: Validation, smoothing: float):
    """The data loss of raw outputs ``raw`` on ``v``'s rows, a 0-d tensor.

    The same per-sample loss and label smoothing as training, averaged with
    the rows' weights and reported as ``loss_curve_`` is (the squared errors
    averaged over outputs); no penalty term. None when ``v`` has no targets.
    """
    if v.targets is None:
        return None
    eps = None
    if smoothing:
        eps = torch.full((1, 1), smoothing, device=raw.device, dtype=raw.dtype)
    value = weighted_mean(loss.values(raw, v.targets, eps), v.sample_weight)
    if loss.divide_by_outputs and raw.shape[-1] > 1:
        value = value / raw.shape[-1]
    return value


@torch.no_grad()
def measure_held_out(tr, feed) -> list[tuple[float | None, float | None]]:
    """Each member's (score, loss) on its held-out rows; (None, None) without.

    ``tr`` is the loop's trainer (its stack, activation, loss and members).
    The outputs of members that hold out rows of the shared data come to the
    host in one transfer, and every loss in one more.
    """
    n = len(tr.members)
    scores: list[float | None] = [None] * n
    losses: dict[int, torch.Tensor] = {}

    def measure(k: int, raw: torch.Tensor, host: np.ndarray) -> None:
        m = tr.members[k]
        scores[k] = float(m.validation.score(host))
        value = held_out_loss(tr.loss, raw, m.validation, m.cfg.label_smoothing)
        if value is not None:
            losses[k] = value

    by_rows = [k for k, m in enumerate(tr.members) if _val(m, "rows") is not None]
    if by_rows:
        parts = [
            m.validation.rows if _val(m, "rows") is not None else m.rows[:1]
            for m in tr.members
        ]
        lengths = [p.shape[0] for p in parts]
        raw = tr.stack.forward(feed.gather_padded(parts), tr.activation)
        host = raw.double().cpu().numpy()
        for k in by_rows:
            measure(k, raw[k, : lengths[k]], host[k, : lengths[k]])
    for k, m in enumerate(tr.members):
        if _val(m, "blocks") is not None:
            blocks = m.validation.blocks()
            raw = [tr.stack.forward_member(k, x, tr.activation) for x in blocks]
            raw = torch.cat(raw)
            measure(k, raw, raw.double().cpu().numpy())
    values: list[float | None] = [None] * n
    if losses:
        read = torch.stack(list(losses.values())).double().cpu().tolist()
        for k, v in zip(losses, read, strict=True):
            values[k] = v
    return list(zip(scores, values, strict=True))


def _val(m, name: str):
    return None if m.validation is None else getattr(m.validation, name)
