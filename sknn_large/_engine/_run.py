"""The engine's entry point: train a stack of members with their solver."""

from __future__ import annotations

from ._lbfgs import train_lbfgs
from ._loop import Member, train
from ._solvers import _SOLVERS


def fit_members(members: list[Member], feed) -> None:
    """Train ``members`` (one solver, one architecture) on ``feed``.

    Stochastic solvers train every member in one stack; a full-batch solver
    (L-BFGS, driven by SciPy) trains them one after another on their rows.

    Parameters
    ----------
    members : list of Member
        Updated in place (see :class:`Member`).
    feed : SharedFeed or StackFeed
        The training data.
    """
    if _SOLVERS[members[0].cfg.solver].stochastic:
        train(members, feed)
        return
    for m in members:
        m.state.interrupted = m.state.diverged = False
        m.state.messages = []
        train_lbfgs(m.module, feed.member_feed(m), m.cfg, m.state)
