"""The one training loop: a stack of K >= 1 members, epoch by epoch.

``train`` -> ``_run_epoch`` -> ``_Trainer.step`` -> (hand-derived or autograd
gradient, then :func:`~._update.apply_step`). A plain ``fit`` is ``K = 1``; a
vectorised search or an ensemble is ``K > 1``. Each member keeps its own
settings, rows, shuffling and dropout streams, stopping rule, schedule and
hooks; members that stop leave the stack and stop costing work.

The hot path does device work only: one host read per epoch (the members'
losses), hyper-parameters such as the learning rate live in device tensors
(so a captured CUDA graph reads the current rate), and buffers are reused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ._capture import CudaGraphs, GraphedStep
from ._config import TrainConfig, TrainState
from ._dropout import keep_units_
from ._losses import _LOSSES
from ._optstate import from_torch_state, to_torch_state
from ._solvers import (
    _BATCH_SCHEDULES,
    _SOLVERS,
    lr_after_epoch,
    member_hyper,
    schedule_factor,
    split_for_l2,
)
from ._stack import ParamStack, flat_to_module
from ._steps import data_step, uses_hand_step, without_autograd
from ._threads import TrainingThreads
from ._update import apply_one, apply_step, per_member, shared_update
from ._validation import Validation, measure_held_out

EpochEnd = Callable[[nn.Module, TrainState], "bool | None"]


@dataclass
class Member:
    """One network to train: its settings, state, data and hooks.

    Attributes
    ----------
    cfg : TrainConfig
        Its settings; :meth:`TrainConfig.group_key` must match its stack's.
    state : TrainState
        Carried across calls; updated in place.
    module : torch.nn.Module
        The network, on the training device: its weights are the start and
        receive the result (the best weights with early stopping).
    rows : Tensor or None
        Its training rows of the shared data; None for all of them.
    sample_weight : Tensor or None
        Weights aligned with ``rows`` (with every row when ``rows`` is None).
    validation : Validation or None
        Held-out data, scored (and its loss recorded) after every epoch; with
        ``cfg.early_stopping`` the stopping rule follows its score.
    on_epoch_begin : callable or None
        ``state -> None`` before each epoch.
    on_epoch_end : callable or None
        ``(module, state) -> stop?`` after each completed epoch, once the
        stopping rule has run; ``module`` holds the epoch's weights and
        ``state.optimizer_state`` / ``state.dropout_rng`` are current.
    label : str
        Prefix of its verbose lines (stacked members say which they are).
    """

    cfg: TrainConfig
    state: TrainState
    module: nn.Module
    rows: torch.Tensor | None = None
    sample_weight: torch.Tensor | None = None
    validation: Validation | None = None
    on_epoch_begin: Callable[[TrainState], None] | None = None
    on_epoch_end: EpochEnd | None = None
    label: str = ""
    lr: float = field(init=False, default=0.0)
    epochs: int = field(init=False, default=0)
    total_steps: int = field(init=False, default=1)
    dropout_gen: torch.Generator | None = field(init=False, default=None)


# ------------------------------------------------------------------ set-up


def _prepare(m: Member, device: torch.device) -> tuple[dict, float]:
    """Reset the call's counters; return (saved buffers, saved step count)."""
    cfg, st = m.cfg, m.state
    carried = (cfg.incremental or cfg.resume) and st.optimizer_state is not None
    buffers, steps, m.lr = {}, 0.0, cfg.learning_rate_init
    if carried:
        buffers, steps, m.lr = from_torch_state(st.optimizer_state, m.module, cfg)
    if not cfg.resume:
        st.n_iter = 0
    st.converged = st.interrupted = st.diverged = False
    st.messages = []
    if m.validation is not None:
        _track_held_out(m)
    m.epochs = 1 if cfg.incremental else cfg.max_iter
    gen = torch.Generator(device=device)
    saved = st.dropout_rng
    if saved is not None and saved[0] == device.type:
        gen.set_state(saved[1])
    else:
        gen.manual_seed(st.dropout_seed)
    m.dropout_gen = gen
    return buffers, steps


def _track_held_out(m: Member) -> None:
    """A member with held-out data records its scores (and losses)."""
    st = m.state
    if st.validation_scores is None:
        st.validation_scores = []
    if st.best_validation_score is None:
        st.best_validation_score = -math.inf
    if m.validation.targets is not None and st.validation_loss_curve is None:
        st.validation_loss_curve = []


class _Trainer:
    """The stack, its optimizer buffers and per-member settings."""

    def __init__(self, members: list[Member], device, dtype):
        cfg = members[0].cfg
        self.solver = _SOLVERS[cfg.solver]
        self.loss = _LOSSES[cfg.loss]
        if not self.loss.smoothable and any(m.cfg.label_smoothing for m in members):
            raise ValueError(f"The loss {cfg.loss!r} takes no label smoothing.")
        self.activation, self.autocast = cfg.activation, cfg.autocast_dtype
        self.members = members
        self.stack = ParamStack.from_modules([m.module for m in members], device, dtype)
        self.on_cpu = device.type == "cpu"
        # The reported loss averages over outputs for the regression losses.
        n_out = self.stack.widths[-1]
        self.per_output = 1.0 / n_out if self.loss.divide_by_outputs else 1.0
        saved = [_prepare(m, device) for m in members]
        self.buffers = self.solver.build_state(self.stack.theta)
        for name, buf in self.buffers.items():
            for k, (b, _) in enumerate(saved):
                if name in b:
                    buf[k].copy_(b[name])
        self.steps = torch.tensor([[s] for _, s in saved], device=device, dtype=dtype)
        self._set_hyper()
        self.hand = uses_hand_step(
            cfg.activation, self.loss, cfg.autocast_dtype, self.on_cpu
        )

    def _set_hyper(self) -> None:
        rows = [member_hyper(m.cfg, m.lr) for m in self.members]
        t = self.stack.theta
        self.hyper = {
            name: torch.tensor(
                [[r[name]] for r in rows], device=t.device, dtype=t.dtype
            )
            for name in rows[0]
        }
        self.hyper["step"] = self.steps
        self.hyper["n_weights"] = self.stack.n_weights
        # One member: plain floats let the penalty and fused kernels run in
        # one pass without (K, 1) broadcasts.
        self.scalars = rows[0] if len(rows) == 1 else None
        # ... and views made once, not per step: (theta, grad, weights, their
        # gradient, buffers, lr, step).
        self.single = None
        if self.scalars is not None:
            theta, grad, n_w = (
                self.stack.theta[0],
                self.stack.grad[0],
                self.stack.n_weights,
            )
            bufs = {name: b[0] for name, b in self.buffers.items()}
            lr, step = self.hyper["lr"][0, 0], self.steps[0]
            self.single = (theta, grad, theta[:n_w], grad[:n_w], bufs, lr, step)
        # On the CPU a pure L2 penalty's gradient goes into the fused kernel
        # (see apply_one), through weight and bias views made here once.
        self.l2_split = None
        s, solver = self.scalars, self.solver
        if s is not None and solver.fused_l2 and self.on_cpu:
            if s["l2"] > 0 and s["l1"] == 0:
                self.l2_split = split_for_l2(theta, grad, bufs, solver.buffers, n_w)
        # Per-batch schedules: the step reads lr = lr_init * factor(progress).
        self.schedules = [m.cfg.learning_rate for m in self.members]
        self.batch_scheduled = any(n in _BATCH_SCHEDULES for n in self.schedules)
        if self.batch_scheduled:
            t = self.stack.theta
            init = [[m.cfg.learning_rate_init] for m in self.members]
            total = [[m.total_steps] for m in self.members]
            self.lr_init = torch.tensor(init, device=t.device, dtype=t.dtype)
            self.total_steps = torch.tensor(total, device=t.device, dtype=t.dtype)
        # Label smoothing, one eps per member: (K, 1, 1) against (K, B, C).
        eps = [m.cfg.label_smoothing for m in self.members]
        self.smoothing = None
        if any(eps):
            t = self.stack.theta
            self.smoothing = torch.tensor(eps, device=t.device, dtype=t.dtype)
            self.smoothing = self.smoothing.view(-1, 1, 1)
        self.has_l2 = any(r["l2"] > 0 for r in rows)
        self.has_l1 = any(r["l1"] > 0 for r in rows)
        self.dropout = [m.cfg.dropout for m in self.members]
        self.has_dropout = any(p > 0 for p in self.dropout)
        # Every member drops units: a mask needs no fill of ones first.
        self.dropout_everywhere = all(p > 0 for p in self.dropout)
        self.shared = shared_update(self, rows)

    def update_lr(self) -> None:
        """Write the members' current rates into the tensor the step reads."""
        lr = [[m.lr] for m in self.members]
        self.hyper["lr"].copy_(torch.tensor(lr, dtype=self.hyper["lr"].dtype))
        if self.shared is not None and len({m.lr for m in self.members}) > 1:
            # Per-member rules (sgd's 'adaptive') set the rates apart.
            self.shared = None

    def schedule_step(self) -> None:
        """Per-batch schedules: set this step's rate, on the device (graph-safe)."""
        if not self.batch_scheduled:
            return
        factor = schedule_factor(self.schedules, self.steps / self.total_steps)
        self.hyper["lr"].copy_(self.lr_init * factor)

    def keep(self, keep: list[bool]) -> None:
        """Retire the members whose entry is False."""
        idx = [i for i, k in enumerate(keep) if k]
        self.members = [self.members[i] for i in idx]
        if not idx:
            return
        dev = torch.tensor(idx, device=self.stack.theta.device)
        self.stack.keep(dev)
        self.buffers = {n: b.index_select(0, dev) for n, b in self.buffers.items()}
        self.steps = self.steps.index_select(0, dev)
        self._set_hyper()

    # ---------------------------------------------------------------- step

    def _masks(self, k: int, bsz: int, counts) -> list[torch.Tensor] | None:
        if not self.has_dropout:
            return None
        t = self.stack.theta
        # Ones where no unit is dropped (a member without dropout, rows past
        # a member's count); no fill where every row gets a mask.
        full = counts is None and self.dropout_everywhere
        make = torch.empty if full else torch.ones
        masks = []
        for width in self.stack.widths[1:-1]:
            mask = make(k, bsz, width, device=t.device, dtype=t.dtype)
            for i, m in enumerate(self.members):
                p = self.dropout[i]
                n = bsz if counts is None else int(counts[i])
                if p > 0 and n > 0:
                    row = keep_units_(mask[i, :n], p, m.dropout_gen)
                    row.div_(1 - p)
            masks.append(mask)
        return masks

    def step(self, batch) -> torch.Tensor:
        """One update of every member; returns each one's loss times its rows."""
        x, y, w, counts = batch
        k, bsz = x.shape[0], x.shape[1]
        if w is None:
            n, scale = float(bsz), 1.0 / bsz
        else:
            n = w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
            scale = (w / n).unsqueeze(-1)
        masks = self._masks(k, bsz, counts)
        value = data_step(
            self.stack,
            self.hand,
            self.autocast,
            x,
            y,
            scale,
            self.activation,
            self.loss,
            masks,
            self.smoothing,
        )
        per_output = self.per_output
        if self.single is not None and w is None:
            # One member, unweighted: (mean + penalty / n) * n rows in the
            # fewest operations, as the per-batch cost of a small fit is
            # operation count.
            report = value.sum()
            if per_output != 1.0:
                report = report * per_output
            return apply_one(self, n, report)
        data = value.mean(dim=1) if w is None else (value * w).sum(dim=1) / n[:, 0]
        if per_output != 1.0:
            data = data * per_output
        if self.single is not None:
            pen = apply_one(self, n)
            report = data if pen is None else data + pen / n[0, 0]
        else:
            report = data + apply_step(self, n, counts) / per_member(n)
        rows = bsz if counts is None else counts.to(report.dtype)
        return report * rows


# ------------------------------------------------------------------ epochs


def _run_epoch(tr: _Trainer, step, feed) -> list[float]:
    """One pass of every member over its rows; one host read at the end."""
    total = None
    for batch in feed.epoch(tr.members):
        loss = step(batch)
        # In place after the first: a graphed step rewrites its output tensor.
        total = loss.clone() if total is None else total.add_(loss)
    n = [feed.n_rows(m) for m in tr.members]
    values = total.double().cpu().reshape(-1).tolist()
    return [v / r for v, r in zip(values, n, strict=True)]


def _say(m: Member, msg: str) -> None:
    m.state.messages.append(msg)
    if m.cfg.verbose:
        print(m.label + msg)


def _record_held_out(m: Member, held: tuple) -> None:
    """Append the epoch's score (and loss) on the held-out rows."""
    score, loss = held
    st = m.state
    st.validation_scores.append(score)
    if loss is not None and st.validation_loss_curve is not None:
        st.validation_loss_curve.append(loss)
    if m.cfg.verbose:
        print(m.label + "Validation score: %f" % score)


def _no_improvement(tr: _Trainer, k: int, held: tuple) -> None:
    """scikit-learn's rule: improvement means beating the best by more than tol.

    With early stopping the rule follows the held-out score, otherwise the
    training loss; held-out rows are measured either way.
    """
    m, st = tr.members[k], tr.members[k].state
    if m.validation is not None:
        _record_held_out(m, held)
        score = held[0]
        if m.cfg.early_stopping:
            worse = score < st.best_validation_score + m.cfg.tol
            st.no_improvement_count = st.no_improvement_count + 1 if worse else 0
            if score > st.best_validation_score:
                st.best_validation_score = score
                st.best_params = tr.stack.module_params(tr.stack.theta[k])
            return
        st.best_validation_score = max(st.best_validation_score, score)
    last = st.loss_curve[-1]
    worse = last > st.best_loss - m.cfg.tol
    st.no_improvement_count = st.no_improvement_count + 1 if worse else 0
    st.best_loss = min(st.best_loss, last)


def _should_stop(m: Member) -> bool:
    """Patience ran out: stop, or (adaptive SGD) divide the rate by 5."""
    cfg = m.cfg
    what = "Validation score" if cfg.early_stopping else "Training loss"
    msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
        what,
        cfg.tol,
        cfg.n_iter_no_change,
    )
    if cfg.solver != "sgd" or cfg.learning_rate != "adaptive":
        msg += " Stopping."
    elif m.lr <= 1e-6:
        msg += " Learning rate too small. Stopping."
    else:
        m.lr /= 5.0
        m.state.no_improvement_count = 0
        _say(m, msg + " Setting learning rate to %f" % m.lr)
        return False
    _say(m, msg)
    return True


def _end_epoch(tr: _Trainer, k: int, loss: float, n_rows: int, held) -> bool:
    """Record member ``k``'s finished epoch; True when it stops by its rule."""
    m, st = tr.members[k], tr.members[k].state
    st.t += n_rows
    st.n_iter += 1
    st.loss = loss
    st.loss_curve.append(loss)
    if m.cfg.verbose:
        print(m.label + "Iteration %d, loss = %.8f" % (st.n_iter, loss))
    _no_improvement(tr, k, held)
    m.lr = lr_after_epoch(m.cfg, m.lr, st.t)
    return st.no_improvement_count > m.cfg.n_iter_no_change and _should_stop(m)


def _publish(tr: _Trainer, k: int) -> None:
    """Member ``k``'s current weights, optimizer state and dropout stream."""
    m = tr.members[k]
    flat_to_module(tr.stack.theta[k], m.module)
    bufs = {name: b[k] for name, b in tr.buffers.items()}
    n_steps = float(tr.steps[k, 0])
    lr = float(tr.hyper["lr"][k, 0]) if tr.batch_scheduled else m.lr
    m.state.optimizer_state = to_torch_state(m.module, m.cfg, bufs, n_steps, lr)
    m.state.dropout_rng = (m.dropout_gen.device.type, m.dropout_gen.get_state())


def _finish(tr: _Trainer, k: int) -> None:
    """Hand member ``k``'s result back (the best weights with early stopping)."""
    _publish(tr, k)
    m = tr.members[k]
    if m.cfg.early_stopping and m.state.best_params is not None:
        with torch.no_grad():
            for p, best in zip(m.module.parameters(), m.state.best_params, strict=True):
                p.copy_(best)


def _diverge(tr: _Trainer, k: int, last_good: torch.Tensor) -> None:
    # Keep the epoch count and curves honest, then put finite weights back.
    m, st = tr.members[k], tr.members[k].state
    st.diverged = True
    st.n_iter += 1
    st.loss = float("nan")
    st.loss_curve.append(float("nan"))
    if m.validation is not None:
        st.validation_scores.append(float("nan"))
        if st.validation_loss_curve is not None and m.validation.targets is not None:
            st.validation_loss_curve.append(float("nan"))
    tr.stack.theta[k].copy_(last_good[k])


def _after_epoch(tr: _Trainer, k: int, loss: float, feed, held) -> bool:
    """Bookkeeping, hooks and stopping for member ``k``; True if it stops."""
    m = tr.members[k]
    if not math.isfinite(loss):
        return True
    stop = _end_epoch(tr, k, loss, feed.n_rows(m), held)
    if m.on_epoch_end is not None:
        # Everything the next epoch depends on is settled here, so a
        # checkpoint taken now resumes exactly.
        _publish(tr, k)
        if m.on_epoch_end(m.module, m.state) and not stop:
            _say(m, "Stopped by a callback.")
            stop = True
    if stop:
        m.state.converged = True
        return True
    if m.state.n_iter >= m.epochs:
        m.state.converged = m.cfg.incremental
        return True
    return False


def _epoch(tr: _Trainer, step, feed) -> None:
    """Train every member one epoch, then retire those that stop."""
    for m in tr.members:
        if m.on_epoch_begin is not None:
            m.on_epoch_begin(m.state)
    last_good = tr.stack.theta.clone()
    try:
        with without_autograd(tr.hand, tr.on_cpu):
            losses = _run_epoch(tr, step, feed)
    except KeyboardInterrupt:
        tr.stack.theta.copy_(last_good)
        raise
    for k, loss in enumerate(losses):
        if not math.isfinite(loss):
            _diverge(tr, k, last_good)
    held = measure_held_out(tr, feed)
    keep = []
    for k, loss in enumerate(losses):
        stop = _after_epoch(tr, k, loss, feed, held[k])
        if stop:
            _finish(tr, k)
        keep.append(not stop)
    tr.update_lr()
    if not all(keep):
        tr.keep(keep)


# ------------------------------------------------------------------ entry


def _graph_backend(device: torch.device):
    """What captures the step on ``device`` (None: it runs uncaptured)."""
    return CudaGraphs(device) if device.type == "cuda" else None


def _step_function(tr: _Trainer, cfg: TrainConfig):
    device = tr.stack.theta.device
    backend = _graph_backend(device) if cfg.cuda_graphs else None
    if backend is None:
        return tr.step
    return GraphedStep(tr.step, cfg.batch_size, backend)


def train(members: list[Member], feed) -> None:
    """Train ``members`` (one stochastic solver, one architecture) together.

    Parameters
    ----------
    members : list of Member
        ``K >= 1`` members whose ``cfg.group_key()`` agree; updated in place:
        each module holds its result and each state its curves and counters.
        On a non-finite loss a member's weights of its last finite epoch are
        restored and ``state.diverged`` is set; on Ctrl-C every member keeps
        the weights of its last completed epoch and ``state.interrupted`` is
        set.
    feed : SharedFeed or StackFeed
        The training data (see :mod:`sknn_large._data`).
    """
    keys = {m.cfg.group_key() for m in members}
    if len(keys) != 1:
        raise ValueError(f"Members of one stack must share {sorted(keys)[0]}.")
    param = next(members[0].module.parameters())
    for m in members:
        # Per-batch schedules span max_iter epochs of this member's batches.
        batches = -(-feed.n_rows(m) // m.cfg.batch_size)
        m.total_steps = max(1, m.cfg.max_iter * batches)
    tr = _Trainer(list(members), param.device, param.dtype)
    # A resumed fit may already have its epochs (max_iter is not fingerprinted).
    done = [m.state.n_iter >= m.epochs for m in tr.members]
    for k in [k for k, d in enumerate(done) if d]:
        _finish(tr, k)
    tr.keep([not d for d in done])
    step = _step_function(tr, members[0].cfg)
    work = len(members) * members[0].cfg.batch_size * tr.stack.n_params
    with TrainingThreads(work, param.device) as threads:
        try:
            while tr.members:
                _epoch(tr, step, feed)
                threads.recheck()
        except KeyboardInterrupt:
            for k, m in enumerate(tr.members):
                m.state.interrupted = True
                _finish(tr, k)
