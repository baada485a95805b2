"""Fit many estimators of one architecture in one stack of the engine.

:func:`fit_many` prepares each unfitted estimator exactly as its own ``fit``
would (validation, targets, initialisation, early-stopping split), groups
those that can share a stack, trains each group with the one engine and
publishes each member's result into its estimator. A member ends where the
same estimator fitted alone would (within floating-point rounding), and its
callbacks and verbose lines fire as in a plain fit (prefixed with
``[member i]``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .._data import StackFeed, as_source, as_tensor
from .._engine import fit_members
from .._engine._stack import module_to_flat
from . import _hooks, _plan

try:  # scikit-learn >= 1.9: the scope that tears an estimator's callbacks down
    from sklearn.callback._callback_support import callback_management_context
except ImportError:  # older scikit-learn has no callbacks to tear down

    def callback_management_context(estimator):
        return contextlib.nullcontext()


# Bytes the stacked members may take on the CPU when no budget is given.
_CPU_BUDGET = 2 * 2**30
# Share of free accelerator memory the stacked members may take.
_DEVICE_SHARE = 0.5


def stackable(est, X) -> bool:
    """Whether ``est`` can train in a stack on ``X``.

    Sparse or out-of-core input, checkpointing and devices other than the CPU
    and CUDA fit one estimator at a time instead.
    """
    from .._device import resolve_device

    if est.checkpoint or not isinstance(X, np.ndarray):
        return False
    if not as_source(X).resident:
        return False
    try:
        return resolve_device(est.device).type in ("cpu", "cuda")
    except (RuntimeError, ValueError):
        return False


def member_bytes(members, dtype: torch.dtype) -> int:
    """Rough bytes one member of this group needs while training."""
    m = members[0]
    size = torch.finfo(dtype).bits // 8
    n_params = module_to_flat(m.module).numel()
    widths = [p.shape[0] for p in m.module.parameters() if p.ndim == 1]
    activations = 4 * m.cfg.batch_size * (sum(widths) + m.module[0].in_features)
    rows = max(int(x.rows.shape[0]) for x in members)
    return 7 * n_params * size + activations * size + rows * (16 + size)


def max_members(members, device: torch.device, dtype, budget=None) -> int:
    """How many members one stack may hold within the memory budget."""
    if budget is None:
        if device.type == "cuda":
            budget = torch.cuda.mem_get_info(device)[0] * _DEVICE_SHARE
        else:
            budget = _CPU_BUDGET
    return max(1, int(budget // member_bytes(members, dtype)))


class _Job:
    """One estimator prepared for the stack."""

    def __init__(self, est, X, y, rows, sample_weight, label, bar, validation=None):
        self.est = est
        sw = None if sample_weight is None else sample_weight[rows]
        est._validate_params()
        Xv, Y, sw, rng, _, _, _, held_out = est._prepare_fit(
            X[rows], y[rows], sw, False, True, validation
        )
        self.ctx = _hooks.begin_callbacks(est, Xv, y[rows], False)
        hooks = _hooks.epoch_hooks(est, None, self.ctx, False, None, bar)
        # The shared bar replaces the members' own verbose=1 lines.
        verbose = 0 if bar is not None and est.verbose == 1 else None
        self.member = _plan.stacked_member(
            est, rows, Y, sw, rng, hooks, label, verbose, held_out
        )
        self.key = _plan.stack_key(est, self.member)
        self.rows, self.targets = rows, _plan.engine_targets(est, Y)
        self.X_valid = Xv

    def finish(self):
        self.est._finish_member(self.member)
        _hooks.end_callbacks(self.est, self.ctx, self.X_valid, None)
        self.X_valid = None
        return self.est


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # reported per member, as GridSearchCV does
        return exc


def _shared_tensors(jobs: list[_Job], X: np.ndarray):
    """The group's ``X`` and target table on its device, in its dtype."""
    est = jobs[0].est
    device, dtype = est.device_, est._param_dtype[0]
    first = jobs[0].targets
    table = np.zeros((X.shape[0], *first.shape[1:]), dtype=first.dtype)
    for j in jobs:
        table[j.rows] = j.targets
    target_dtype = torch.int64 if table.dtype.kind == "i" else dtype
    return as_tensor(X, device, dtype), as_tensor(table, device, target_dtype)


def _train_group(jobs: list[_Job], X: np.ndarray, budget) -> list:
    try:
        X_t, y_t = _shared_tensors(jobs, X)
        members = [j.member for j in jobs]
        chunk = max_members(members, X_t.device, X_t.dtype, budget)
        feed = StackFeed(X_t, y_t, members[0].cfg.batch_size)
        for s in range(0, len(members), chunk):
            fit_members(members[s : s + chunk], feed)
    except Exception as exc:
        return [exc] * len(jobs)
    return [_try(j.finish) for j in jobs]


def _fit_alone(est, X, y, rows, sample_weight, validation):
    sw = None if sample_weight is None else sample_weight[rows]
    sub = X[rows] if hasattr(X, "shape") else [X[i] for i in rows]
    X_val, y_val, sw_val = validation or (None, None, None)
    return est.fit(
        sub,
        y[rows],
        sample_weight=sw,
        X_val=X_val,
        y_val=y_val,
        sample_weight_val=sw_val,
    )


def fit_many(
    estimators, X, y, rows=None, sample_weight=None, *, budget=None, validation=None
):
    """Fit unfitted sknn_large estimators, stacking those that can be.

    Parameters
    ----------
    estimators : list of LargeMLPClassifier or LargeMLPRegressor
        Unfitted estimators (each is fitted in place).
    X : ndarray of shape (n_samples, n_features)
        Shared input rows.
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Shared targets.
    rows : list of array-like of int or None, default=None
        Per estimator, the indices of its training rows (a CV fold); None
        trains every estimator on all rows.
    sample_weight : ndarray of shape (n_samples,), default=None
        Shared sample weights.
    budget : float, default=None
        Bytes one stack may take: by default half the free memory of an
        accelerator, or 2 GiB on the CPU.
    validation : tuple or None, default=None
        ``(X_val, y_val, sample_weight_val)``, one validation set every
        estimator is scored on after each epoch, as with ``fit(X_val=...)``.

    Returns
    -------
    list
        Per estimator, the fitted estimator or the exception its fit raised.
    """
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    rows = [None] * len(estimators) if rows is None else list(rows)
    rows = [np.arange(n) if r is None else np.asarray(r) for r in rows]
    y = np.asarray(y)
    out: list = [None] * len(estimators)
    groups: dict[tuple, list[tuple[int, _Job]]] = {}
    # Each estimator's callbacks live from its set-up to the end of all
    # training, as they live around its own fit.
    bar = _hooks.stack_progress([e for e in estimators if stackable(e, X)])
    with contextlib.ExitStack() as scopes:
        if bar is not None:
            scopes.callback(bar.close)
        for i, (est, r) in enumerate(zip(estimators, rows, strict=True)):
            if not stackable(est, X):
                out[i] = _try(_fit_alone, est, X, y, r, sample_weight, validation)
                continue
            scopes.enter_context(callback_management_context(est))
            label = f"[member {i}] " if len(estimators) > 1 else ""
            job = _try(_Job, est, X, y, r, sample_weight, label, bar, validation)
            if isinstance(job, Exception):
                out[i] = job
                continue
            groups.setdefault(job.key, []).append((i, job))
        for items in groups.values():
            results = _train_group([j for _, j in items], X, budget)
            for (i, _), res in zip(items, results, strict=True):
                out[i] = res
    return out
