"""The update after each step's gradient: penalty, then the optimizer.

:func:`apply_step` serves a stack of ``K`` members through the solver's
stacked formulas, with ``(K, 1)`` settings broadcast along the rows, or,
on the CPU, through one call of torch's fused kernel over the whole
``(K, P)`` tensor when every member shares its settings, rate and step
count (an ensemble's members do): the stacked formulas take a dozen passes
over the parameters, the kernel one. :func:`apply_one` is the single member's
update in the fewest operations.
"""

from __future__ import annotations

import torch

# ``tr`` below is the loop's ``_Trainer`` (not imported: the loop imports
# this module).


def per_member(n) -> torch.Tensor | float:
    """Each member's batch size or weight sum, ``(K,)`` (or one float)."""
    return n if isinstance(n, float) else n[:, 0]


def shared_update(tr, rows: list[dict[str, float]]):
    """The fused kernel's arguments for the whole stack, or None.

    Parameters
    ----------
    tr : _Trainer
        The loop's trainer: the stack, its buffers and settings.
    rows : list of dict
        Each member's settings (:func:`~._solvers.member_hyper`), rate
        included.

    Returns
    -------
    tuple or None
        ``(settings, lr, step)``: the shared settings as floats, and views of
        the first member's rate and step count (every member's equal them), or
        None where the members differ in any of these, the solver has no fused
        kernel, or the stack is not on the CPU.
    """
    if len(rows) < 2 or tr.solver.fused is None or not tr.on_cpu:
        return None
    if any(r != rows[0] for r in rows[1:]):
        return None
    if tr.batch_scheduled and not (
        len(set(tr.schedules)) == 1
        and bool((tr.lr_init == tr.lr_init[0]).all())
        and bool((tr.total_steps == tr.total_steps[0]).all())
    ):
        return None
    if not bool((tr.steps == tr.steps[0]).all()):
        return None
    return rows[0], tr.hyper["lr"][0, 0], tr.steps[0]


def _penalty(tr, n) -> torch.Tensor:
    st, h = tr.stack, tr.hyper
    w, gw = st.theta[:, : st.n_weights], st.grad[:, : st.n_weights]
    pen = torch.zeros(st.k, device=w.device, dtype=w.dtype)
    if tr.has_l2:
        sq = torch.bmm(w.unsqueeze(1), w.unsqueeze(2))[:, 0, 0]
        pen = pen + 0.5 * h["l2"][:, 0] * sq
        gw.add_(w * (h["l2"] / n))
    if tr.has_l1:
        pen = pen + h["l1"][:, 0] * w.abs().sum(dim=1)
        gw.add_(w.sign() * (h["l1"] / n))
    return pen


def apply_step(tr, n, counts) -> torch.Tensor:
    """Penalty gradient, then the optimizer update; returns the penalty.

    ``n`` is each member's batch size or weight sum (a float or ``(K, 1)``);
    the penalty's gradient is divided by it, the returned ``(K,)`` penalty is
    not. Members without rows in this batch (``counts == 0``) keep their
    parameters and buffers.
    """
    st, h = tr.stack, tr.hyper
    pen = _penalty(tr, n)
    idle = None
    if counts is not None and bool((counts == 0).any()):
        idle = (counts == 0).nonzero()[:, 0]
        saved = [st.theta[idle]] + [b[idle] for b in tr.buffers.values()]
        h["step"].add_((counts > 0).to(h["step"].dtype).unsqueeze(1))
        # The members' step counts differ from now on.
        tr.shared = None
    else:
        h["step"].add_(1.0)
    tr.schedule_step()
    if tr.shared is not None:
        s, lr, step = tr.shared
        tr.solver.fused(st.theta, st.grad, tr.buffers, s, lr, step, st.n_weights)
    else:
        tr.solver.step(st.theta, st.grad, tr.buffers, h)
    if idle is not None:
        for t, s in zip([st.theta, *tr.buffers.values()], saved, strict=True):
            t[idle] = s
    return pen


def apply_one(tr, n, into: torch.Tensor | None = None):
    """:func:`apply_step` for a single member, in single passes.

    ``n`` is the batch size (a float) or its weight sum (a ``(1, 1)`` tensor).
    Returns the penalty (not divided by ``n``), or None without one; given
    ``into`` (a 0-d tensor), returns ``into`` plus the penalty as ``(1,)``
    instead, the scaling folded into the additions.
    """
    st, s, solver = tr.stack, tr.scalars, tr.solver
    theta, grad, w, gw, bufs, lr, step = tr.single
    pen, l2_fused = into, None
    if not isinstance(n, float):
        n = n[0, 0]
    fused = solver.fused is not None and not (solver.fused_reads_step and not tr.on_cpu)
    if s["l2"] > 0:
        sq = torch.dot(w, w)
        pen = (
            sq.mul_(0.5 * s["l2"]) if pen is None else pen.add(sq, alpha=0.5 * s["l2"])
        )
        if tr.l2_split is not None:
            # A pure L2 penalty on the CPU: the fused kernel adds its gradient
            # (the weights times l2 / n), one pass over the weights fewer.
            # Weighted batches go this way too, so that unit weights still
            # give the same numbers (the kernel's sum and add_'s can differ
            # in the last bit).
            l2 = s["l2"] / (n if isinstance(n, float) else float(n))
            l2_fused = (l2, tr.l2_split)
        elif isinstance(n, float):
            gw.add_(w, alpha=s["l2"] / n)
        else:
            gw.add_(w * (s["l2"] / n))
    if s["l1"] > 0:
        l1 = w.abs().sum()
        pen = l1.mul_(s["l1"]) if pen is None else pen.add(l1, alpha=s["l1"])
        gw.add_(w.sign() * (s["l1"] / n))
    step.add_(1.0)
    tr.schedule_step()
    if not fused:
        solver.step(st.theta, st.grad, tr.buffers, tr.hyper)
    elif l2_fused is not None:
        solver.fused(theta, grad, bufs, s, lr, step, st.n_weights, l2=l2_fused)
    else:
        solver.fused(theta, grad, bufs, s, lr, step, st.n_weights)
    return pen if into is None else pen.reshape(1)
