"""Many networks of one architecture trained together with batched products.

The engine half of this module is pure PyTorch. ``K`` *members* share the
hidden sizes, activation, loss, solver family and batch size; everything else
may differ per member: learning rate, penalty and its strength, dropout,
momentum, Adam's betas, the rows it trains on (a cross-validation fold), its
batch order, its seed and its stopping rule. Weights are stacked as
``(K, fan_in, fan_out)`` and one ``torch.baddbmm`` per layer runs the forward
pass of every member at once; optimizer updates are written out with
per-member hyper-parameters as tensors and follow torch's own formulas, so a
member ends where the same model trained alone by :class:`LargeMLPClassifier`
or :class:`LargeMLPRegressor` would (within floating-point rounding).

Each member draws its own permutation per epoch from its own generator and
takes batches from it exactly as :class:`~sknn_large._data.ResidentFeed` does.
Members with fewer rows run out of batches first: their rows are padded with
zero weight and their updates are masked for the remaining steps. Members that
stop are removed from the stack, so they stop costing work.

The second half (:func:`fit_vectorized`) is the scikit-learn glue: it prepares
unfitted sknn_large estimators exactly as their own ``fit`` would (validation,
initialisation, early-stopping split), groups them by architecture, trains
each group with :func:`train_members` and publishes the fitted attributes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ._engine import _ACTIVATIONS, _LOSSES, TrainConfig, TrainState
from ._engine._network import linear_layers
from ._engine._optim import _l1_strength, _l2_strength, make_optimizer
from ._engine._train import single_threaded_below

# Bytes the stacked members may take on the CPU when no budget is given.
_CPU_BUDGET = 2 * 2**30
# Share of free accelerator memory the stacked members may take.
_DEVICE_SHARE = 0.5
# Below this many multiply-adds per step, one CPU thread is faster (batched
# products of many small matrices gain little from OpenMP workers).
_SMALL_WORK = 1e8


# ===================================================================== engine


@dataclass
class Member:
    """One network to train, with its data, settings and running state.

    Attributes
    ----------
    cfg : TrainConfig
        The member's settings (the solver and loss must match its group's).
    coefs, intercepts : list of Tensor
        Initial weights ``(fan_in, fan_out)`` and biases; replaced by the
        trained ones.
    rows : Tensor
        Indices of the member's training rows in the shared ``X``.
    state : TrainState
        Holds the shuffling generator and receives curves and counters.
    sample_weight : Tensor or None
        Weights aligned with ``rows``.
    dropout : float
        Dropout probability after each hidden activation.
    validate : callable or None
        ``raw outputs on val_rows -> score`` (higher is better), for early
        stopping.
    val_rows : Tensor or None
        Indices of the member's validation rows in the shared ``X``.
    optimizer_state : dict of str to list of Tensor or None
        Set when the member finishes: its optimizer buffers (``exp_avg``,
        ``momentum_buffer``...) per parameter, in the stack's layout (weights
        ``(fan_in, fan_out)`` then biases), on the CPU.
    n_steps : int
        Optimizer steps the member took (Adam's bias-correction count).
    """

    cfg: TrainConfig
    coefs: list[torch.Tensor]
    intercepts: list[torch.Tensor]
    rows: torch.Tensor
    state: TrainState
    sample_weight: torch.Tensor | None = None
    dropout: float = 0.0
    validate: Callable[[torch.Tensor], float] | None = None
    val_rows: torch.Tensor | None = None
    lr: float = field(init=False, default=0.0)
    best: list[torch.Tensor] | None = field(init=False, default=None)
    dropout_gen: torch.Generator | None = field(init=False, default=None)
    optimizer_state: dict[str, list[torch.Tensor]] | None = field(
        init=False, default=None
    )
    n_steps: int = field(init=False, default=0)


def _hyper(members: Sequence[Member], device, dtype) -> dict[str, torch.Tensor]:
    """Per-member optimizer and penalty settings as ``(K,)`` tensors."""
    cfgs = [m.cfg for m in members]
    adamw = cfgs[0].solver == "adamw"
    values = {
        "lr": [m.lr for m in members],
        "beta_1": [c.beta_1 for c in cfgs],
        "beta_2": [c.beta_2 for c in cfgs],
        "epsilon": [c.epsilon for c in cfgs],
        "momentum": [c.momentum for c in cfgs],
        "nesterov": [float(c.nesterovs_momentum and c.momentum > 0) for c in cfgs],
        "l2": [0.0 if adamw else _l2_strength(c) for c in cfgs],
        "l1": [_l1_strength(c) for c in cfgs],
        "decay": [_l2_strength(c) if adamw else 0.0 for c in cfgs],
    }
    return {k: torch.tensor(v, device=device, dtype=dtype) for k, v in values.items()}


def _padded(parts: Sequence[torch.Tensor], width: int, fill=0) -> torch.Tensor:
    """Stack 1-D tensors of different lengths, right-padded to ``width``."""
    out = parts[0].new_full((len(parts), width), fill)
    for i, p in enumerate(parts):
        out[i, : p.shape[0]] = p
    return out


class _Stack:
    """The active members' tensors, each with the member axis first."""

    def __init__(self, members: Sequence[Member], device, dtype):
        self.members = list(members)
        self.weights = [
            torch.stack([m.coefs[i] for m in members]).to(device, dtype)
            for i in range(len(members[0].coefs))
        ]
        self.biases = [
            torch.stack([m.intercepts[i] for m in members]).to(device, dtype)
            for i in range(len(members[0].intercepts))
        ]
        for p in self.params:
            p.requires_grad_(True)
        self.n_rows = torch.tensor([m.rows.shape[0] for m in members])
        width = int(self.n_rows.max())
        self.rows = _padded([m.rows.to(device) for m in members], width)
        weights = [
            torch.ones(m.rows.shape[0], device=device, dtype=dtype)
            if m.sample_weight is None
            else m.sample_weight.to(device, dtype)
            for m in members
        ]
        self.sw = _padded(weights, width, 0.0)
        self.hyper = _hyper(members, device, dtype)
        self.dropout = torch.tensor([m.dropout for m in members], dtype=dtype)
        self.opt: dict[str, list[torch.Tensor]] = {}
        self.step = torch.zeros(len(members), device=device, dtype=dtype)

    @property
    def params(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def __len__(self) -> int:
        return len(self.members)

    @torch.no_grad()
    def keep(self, mask: list[bool]) -> None:
        """Drop the members whose entry of ``mask`` is False."""
        idx = torch.tensor([i for i, k in enumerate(mask) if k], dtype=torch.long)
        if idx.numel() == 0:
            self.members = []
            return
        dev = idx.to(self.rows.device)
        self.members = [self.members[i] for i in idx.tolist()]
        self.weights = [w[dev].requires_grad_(True) for w in self.weights]
        self.biases = [b[dev].requires_grad_(True) for b in self.biases]
        self.n_rows, self.dropout = self.n_rows[idx], self.dropout[idx]
        self.rows, self.sw, self.step = self.rows[dev], self.sw[dev], self.step[dev]
        self.hyper = {k: v[dev] for k, v in self.hyper.items()}
        self.opt = {k: [s[dev] for s in v] for k, v in self.opt.items()}
        self.rows = self.rows[:, : int(self.n_rows.max())]
        self.sw = self.sw[:, : self.rows.shape[1]]

    def member_params(self, k: int) -> list[torch.Tensor]:
        """Copies of member ``k``'s weights then biases."""
        return [p[k].detach().clone() for p in self.params]

    @torch.no_grad()
    def set_member(self, k: int, params: list[torch.Tensor]) -> None:
        for p, saved in zip(self.params, params, strict=True):
            p[k].copy_(saved)


def _per(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a ``(K,)`` tensor so it broadcasts against ``like``."""
    return h.view(-1, *([1] * (like.dim() - 1)))


def _blend(old: torch.Tensor, new: torch.Tensor, active) -> torch.Tensor:
    return new if active is None else torch.where(_per(active, new), new, old)


def _state(stack: _Stack, name: str) -> list[torch.Tensor]:
    if name not in stack.opt:
        stack.opt[name] = [torch.zeros_like(p) for p in stack.params]
    return stack.opt[name]


def _adam_step(stack: _Stack, active, decoupled: bool) -> None:
    """torch.optim.Adam / AdamW's update with per-member settings."""
    h, step = stack.hyper, stack.step
    b1, b2 = h["beta_1"], h["beta_2"]
    step_size, bc2_sqrt = h["lr"] / (1 - b1**step), (1 - b2**step).sqrt()
    exp_avg, exp_avg_sq = _state(stack, "exp_avg"), _state(stack, "exp_avg_sq")
    n_weights = len(stack.weights)
    for i, p in enumerate(stack.params):
        g, m, v = p.grad, exp_avg[i], exp_avg_sq[i]
        if active is not None:
            m, v = m.clone(), v.clone()
        m.lerp_(g, _per(1 - b1, g))
        v.mul_(_per(b2, g)).add_(g.square().mul_(_per(1 - b2, g)))
        denom = (v.sqrt() / _per(bc2_sqrt, g)).add_(_per(h["epsilon"], g))
        update = (m / denom).mul_(_per(step_size, g))
        if active is None:
            if decoupled and i < n_weights:
                p.mul_(1 - _per(h["lr"] * h["decay"], p))
            p.sub_(update)
            continue
        q = (
            p * (1 - _per(h["lr"] * h["decay"], p))
            if decoupled and i < n_weights
            else p
        )
        p.copy_(_blend(p, q - update, active))
        exp_avg[i] = _blend(exp_avg[i], m, active)
        exp_avg_sq[i] = _blend(exp_avg_sq[i], v, active)


def _sgd_step(stack: _Stack, active) -> None:
    """torch.optim.SGD's update (momentum, Nesterov) with per-member settings."""
    h = stack.hyper
    bufs = _state(stack, "momentum_buffer")
    for i, p in enumerate(stack.params):
        g, buf = p.grad, bufs[i]
        mom = _per(h["momentum"], g)
        buf_new = mom * buf + g
        direction = torch.where(_per(h["nesterov"], g) > 0, g + mom * buf_new, buf_new)
        p.copy_(_blend(p, p - _per(h["lr"], g) * direction, active))
        bufs[i] = _blend(buf, buf_new, active)


def _rmsprop_step(stack: _Stack, active) -> None:
    """torch.optim.RMSprop's update (``alpha = beta_2``, with momentum)."""
    h = stack.hyper
    sq, bufs = _state(stack, "square_avg"), _state(stack, "momentum_buffer")
    for i, p in enumerate(stack.params):
        g, a = p.grad, _per(h["beta_2"], p.grad)
        sq_new = a * sq[i] + (1 - a) * g * g
        avg = sq_new.sqrt() + _per(h["epsilon"], g)
        buf_new = _per(h["momentum"], g) * bufs[i] + g / avg
        p.copy_(_blend(p, p - _per(h["lr"], g) * buf_new, active))
        sq[i], bufs[i] = _blend(sq[i], sq_new, active), _blend(bufs[i], buf_new, active)


_STEPS: dict[str, Callable[[_Stack, torch.Tensor | None], None]] = {
    "adam": lambda s, a: _adam_step(s, a, decoupled=False),
    "adamw": lambda s, a: _adam_step(s, a, decoupled=True),
    "sgd": _sgd_step,
    "rmsprop": _rmsprop_step,
}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _forward(stack: _Stack, x: torch.Tensor, activation: str, masks=None):
    """Raw outputs ``(K, B, n_out)`` of every member for inputs ``(K, B, F)``."""
    act = _ACTIVATIONS[activation]()
    h = x
    last = len(stack.weights) - 1
    for i, (w, b) in enumerate(zip(stack.weights, stack.biases, strict=True)):
        h = torch.baddbmm(b.unsqueeze(1), h, w)
        if i < last:
            h = act(h)
            if masks is not None and masks[i] is not None:
                h = h * masks[i]
    return h


def _dropout_masks(stack: _Stack, counts: list[int], batch: int, dtype):
    """Per-layer ``(K, B, width)`` masks drawn from each member's own stream.

    Each member draws ``bernoulli(1 - p)`` for its valid rows only, in the
    order ``torch.nn.Dropout`` draws them, so the masks equal the single
    model's; padded rows get ones.
    """
    if not bool((stack.dropout > 0).any()):
        return None
    device = stack.rows.device
    masks = []
    for w in stack.weights[:-1]:
        width = w.shape[2]
        mask = torch.ones(len(stack), batch, width, dtype=dtype)
        for k, m in enumerate(stack.members):
            p = float(stack.dropout[k])
            if p > 0 and counts[k] > 0:
                noise = torch.empty(counts[k], width, dtype=dtype)
                noise.bernoulli_(1 - p, generator=m.dropout_gen)
                mask[k, : counts[k]] = noise.div_(1 - p)
        masks.append(mask.to(device))
    return masks


def _penalty(stack: _Stack) -> torch.Tensor:
    """``0.5 * l2 * sum(W^2) + l1 * sum(|W|)`` per member, shape ``(K,)``."""
    h = stack.hyper
    total = torch.zeros_like(h["l2"])
    for w in stack.weights:
        if bool((h["l2"] > 0).any()):
            total = total + 0.5 * h["l2"] * w.square().sum(dim=(1, 2))
        if bool((h["l1"] > 0).any()):
            total = total + h["l1"] * w.abs().sum(dim=(1, 2))
    return total


def _batch_objective(stack, xb, yb, wb, group: _Group, masks):
    """Per-member (objective, reported loss), each ``(K,)``."""
    loss = _LOSSES[group.loss]
    with _autocast(xb.device, group.autocast):
        raw = _forward(stack, xb, group.activation, masks)
    raw = raw.to(xb.dtype)
    k, b, n_out = raw.shape
    target = yb.reshape(k * b, *yb.shape[2:])
    per_sample = loss.per_sample(raw.reshape(k * b, n_out), target).view(k, b)
    total_w = wb.sum(dim=1)
    safe_w = total_w.clamp_min(torch.finfo(wb.dtype).tiny)
    data = (per_sample * wb).sum(dim=1) / safe_w
    objective = data + _penalty(stack) / safe_w
    if not loss.divide_by_outputs or n_out == 1:
        return objective, objective
    return objective, objective - data + data / n_out


@dataclass(frozen=True)
class _Group:
    """What every member of one run shares."""

    activation: str
    loss: str
    solver: str
    batch_size: int
    autocast: torch.dtype | None = None


def _epoch_order(stack: _Stack) -> tuple[torch.Tensor, torch.Tensor]:
    """This epoch's row indices and weights, ``(K, n_max)`` each."""
    width = stack.rows.shape[1]
    orders = []
    for k, m in enumerate(stack.members):
        n = int(stack.n_rows[k])
        if m.cfg.shuffle:
            perm = torch.randperm(n, generator=m.state.generator)
        else:
            perm = torch.arange(n)
        orders.append(torch.cat([perm, torch.arange(n, width)]))
    order = torch.stack(orders).to(stack.rows.device)
    return stack.rows.gather(1, order), stack.sw.gather(1, order)


def _train_step(stack, X, y, rows, wb, group: _Group, start: int):
    """One update of every member; returns the reported loss times batch rows."""
    counts = (stack.n_rows - start).clamp(0, group.batch_size)
    active = None
    if bool((counts < counts.max()).any()) or bool((counts == 0).any()):
        active = (counts > 0).to(stack.rows.device)
    masks = _dropout_masks(stack, counts.tolist(), rows.shape[1], X.dtype)
    for p in stack.params:
        p.grad = None
    objective, report = _batch_objective(stack, X[rows], y[rows], wb, group, masks)
    objective.sum().backward()
    inc = 1.0 if active is None else active.to(stack.step.dtype)
    stack.step += inc
    with torch.no_grad():
        _STEPS[group.solver](stack, active)
    n = counts.to(report.device, report.dtype)
    return report.detach() * n


def _run_epoch(stack: _Stack, X, y, group: _Group) -> list[float]:
    """One pass of every member over its rows; one host read at the end."""
    rows, sw = _epoch_order(stack)
    total = torch.zeros(len(stack), device=X.device, dtype=X.dtype)
    bs = group.batch_size
    for s in range(0, rows.shape[1], bs):
        total += _train_step(
            stack, X, y, rows[:, s : s + bs], sw[:, s : s + bs], group, s
        )
    return (total.cpu().double() / stack.n_rows.double()).tolist()


@torch.no_grad()
def _validation_scores(stack: _Stack, X, group: _Group) -> list[float | None]:
    """Each early-stopping member's score on its own validation rows."""
    todo = [k for k, m in enumerate(stack.members) if m.validate is not None]
    if not todo:
        return [None] * len(stack)
    parts = [
        m.val_rows if m.val_rows is not None else m.rows[:1] for m in stack.members
    ]
    lengths = [p.shape[0] for p in parts]
    idx = _padded([p.to(X.device) for p in parts], max(lengths))
    with _autocast(X.device, group.autocast):
        raw = _forward(stack, X[idx], group.activation)
    raw = raw.float().cpu()
    scores: list[float | None] = [None] * len(stack)
    for k in todo:
        scores[k] = float(stack.members[k].validate(raw[k, : lengths[k]]))
    return scores


def _say(m: Member, msg: str) -> None:
    m.state.messages.append(msg)
    if m.cfg.verbose:
        print(msg)


def _no_improvement(stack: _Stack, k: int, loss: float, score) -> None:
    """scikit-learn's rule: improvement beats the best by more than ``tol``."""
    m, st = stack.members[k], stack.members[k].state
    if m.validate is not None:
        st.validation_scores.append(score)
        worse = score < st.best_validation_score + m.cfg.tol
        st.no_improvement_count = st.no_improvement_count + 1 if worse else 0
        if score > st.best_validation_score:
            st.best_validation_score = score
            m.best = stack.member_params(k)
        return
    worse = loss > st.best_loss - m.cfg.tol
    st.no_improvement_count = st.no_improvement_count + 1 if worse else 0
    st.best_loss = min(st.best_loss, loss)


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


def _end_epoch(stack: _Stack, k: int, loss: float, score) -> bool:
    """Record member ``k``'s finished epoch; True when it should stop."""
    m, st = stack.members[k], stack.members[k].state
    st.n_iter += 1
    st.t += int(stack.n_rows[k])
    st.loss = loss
    st.loss_curve.append(loss)
    if m.cfg.verbose:
        print("Iteration %d, loss = %.8f" % (st.n_iter, loss))
    _no_improvement(stack, k, loss, score)
    if m.cfg.solver == "sgd" and m.cfg.learning_rate == "invscaling":
        m.lr = m.cfg.learning_rate_init / (st.t + 1) ** m.cfg.power_t
    if st.no_improvement_count > m.cfg.n_iter_no_change and _should_stop(m):
        st.converged = True
        return True
    return st.n_iter >= m.cfg.max_iter


def _diverge(stack: _Stack, k: int, last_good: list[torch.Tensor]) -> None:
    m, st = stack.members[k], stack.members[k].state
    st.diverged = True
    st.n_iter += 1
    st.loss = float("nan")
    st.loss_curve.append(float("nan"))
    if m.validate is not None:
        st.validation_scores.append(float("nan"))
    stack.set_member(k, [p[k] for p in last_good])


def _finish(stack: _Stack, k: int) -> None:
    """Hand member ``k``'s final (or best) weights and its optimizer state back."""
    m = stack.members[k]
    params = m.best if (m.cfg.early_stopping and m.best is not None) else None
    params = params or stack.member_params(k)
    n = len(stack.weights)
    m.coefs = [p.detach().cpu() for p in params[:n]]
    m.intercepts = [p.detach().cpu() for p in params[n:]]
    # The final (not the best) buffers, as a model trained alone keeps them:
    # partial_fit continues from them. The CPU copy keeps a large search's
    # finished members from holding accelerator memory.
    m.optimizer_state = {
        name: [s[k].detach().cpu().clone() for s in bufs]
        for name, bufs in stack.opt.items()
    }
    m.n_steps = int(stack.step[k])


def _epoch(stack: _Stack, X, y, group: _Group) -> None:
    """Train every active member one epoch, then retire those that stop."""
    last_good = [p.detach().clone() for p in stack.params]
    losses = _run_epoch(stack, X, y, group)
    finite = [math.isfinite(v) for v in losses]
    for k in range(len(stack)):
        if not finite[k]:
            _diverge(stack, k, last_good)
    scores = _validation_scores(stack, X, group)
    keep = []
    for k in range(len(stack)):
        stop = not finite[k] or _end_epoch(stack, k, losses[k], scores[k])
        if stop:
            _finish(stack, k)
        keep.append(not stop)
    stack.hyper["lr"] = stack.hyper["lr"].new_tensor([m.lr for m in stack.members])
    if not all(keep):
        stack.keep(keep)


def _prepare_member(m: Member) -> None:
    st = m.state
    st.n_iter, st.converged = 0, False
    m.lr = m.cfg.learning_rate_init
    m.dropout_gen = torch.Generator().manual_seed(st.dropout_seed)
    if m.validate is not None:
        st.validation_scores, st.best_validation_score = [], -np.inf
        st.best_loss = None
    else:
        st.best_loss = np.inf


def _threads(stack: _Stack, X: torch.Tensor, batch: int):
    """One CPU thread when a step is small (see ``threads_for``)."""
    work = len(stack) * batch * sum(p[0].numel() for p in stack.params)
    return single_threaded_below(work, X.device, _SMALL_WORK)


def _train_chunk(members: Sequence[Member], X, y, group: _Group) -> None:
    for m in members:
        _prepare_member(m)
    stack = _Stack(members, X.device, X.dtype)
    with _threads(stack, X, group.batch_size):
        while len(stack):
            _epoch(stack, X, y, group)


def member_bytes(members: Sequence[Member], batch: int, dtype: torch.dtype) -> int:
    """Rough bytes one member of this group needs while training."""
    m = members[0]
    size = torch.finfo(dtype).bits // 8
    n_params = sum(c.numel() for c in m.coefs) + sum(b.numel() for b in m.intercepts)
    widths = [c.shape[1] for c in m.coefs] + [m.coefs[0].shape[0]]
    activations = 4 * batch * sum(widths)
    rows = max(int(x.rows.shape[0]) for x in members)
    return 7 * n_params * size + activations * size + rows * (16 + size)


def max_members(members, batch, device: torch.device, dtype, budget=None) -> int:
    """How many members one run may stack within the memory budget."""
    if budget is None:
        if device.type == "cuda":
            budget = torch.cuda.mem_get_info(device)[0] * _DEVICE_SHARE
        else:
            budget = _CPU_BUDGET
    return max(1, int(budget // member_bytes(members, batch, dtype)))


def train_members(
    members: Sequence[Member],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    activation: str,
    budget: float | None = None,
) -> None:
    """Train members of one architecture together, in memory-sized chunks.

    Parameters
    ----------
    members : sequence of Member
        Networks sharing layer sizes, loss, solver and batch size. Updated in
        place: ``coefs``/``intercepts`` hold the trained (or, with early
        stopping, best) weights and ``state`` the curves and counters.
    X : Tensor of shape (n_samples, n_features)
        Every member's rows, on the training device, in the training dtype.
    y : Tensor of shape (n_samples,) or (n_samples, n_outputs)
        Targets for those rows (class indices for the softmax log-loss).
    activation : str
        Hidden activation, a key of ``_ACTIVATIONS``.
    budget : float, optional
        Bytes the stacked members may take; by default half the free memory
        of an accelerator, or 2 GiB on the CPU.
    """
    cfg = members[0].cfg
    group = _Group(activation, cfg.loss, cfg.solver, cfg.batch_size, cfg.autocast_dtype)
    chunk = max_members(members, group.batch_size, X.device, X.dtype, budget)
    for s in range(0, len(members), chunk):
        _train_chunk(members[s : s + chunk], X, y, group)


# ============================================================ estimator glue


@dataclass
class _Prepared:
    """An estimator set up as its own ``fit`` would, ready to train."""

    est: object
    member: Member
    key: tuple
    rows: np.ndarray
    targets: np.ndarray


def vectorisable(est, X) -> bool:
    """Whether ``est`` can train in a vectorised run on ``X``.

    L-BFGS (full-batch, SciPy-driven), sparse input, checkpointing and
    devices other than the CPU and CUDA train one model at a time instead.
    """
    from ._device import resolve_device

    if est.solver not in _STOCHASTIC or est.checkpoint or not hasattr(X, "shape"):
        return False
    if not isinstance(X, np.ndarray):
        return False
    try:
        return resolve_device(est.device).type in ("cpu", "cuda")
    except (RuntimeError, ValueError):
        return False


_STOCHASTIC = frozenset({"adam", "sgd", "adamw", "rmsprop"})


def _setup(est, X, y, sample_weight):
    """Validate, encode and initialise ``est`` exactly as ``est.fit`` does."""
    est._validate_params()
    est._check_params(False)
    X, Y = est._validate_input(X, y, False, reset=True)
    sample_weight = est._sample_weight(sample_weight, X, Y)
    rng = est._random_generator()
    est._new_network(X, Y, rng)
    return X.shape[1], Y, sample_weight, rng


def _validator(est, Y_val, sw_val):
    def validate(raw: torch.Tensor) -> float:
        return est._score_fitted(raw.numpy().astype(np.float64), Y_val, sw_val)

    return validate


def _prepare(est, X, y, rows, sample_weight) -> _Prepared:
    """Set ``est`` up on ``X[rows]`` and describe it as an engine member."""
    sub = X if rows is None else X[rows]
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows)
    sw = None if sample_weight is None else sample_weight[rows]
    n_features, Y, sw, rng = _setup(est, sub, y[rows], sw)
    local = np.arange(rows.shape[0])
    validate, val_rows, sw_train = None, None, sw
    if est.early_stopping:
        tr, _, sw_train, va, Y_val, sw_val = est._split_validation(
            local[:, None], Y, sw, rng
        )
        local, val_rows = tr[:, 0], torch.from_numpy(rows[va[:, 0]])
        validate = _validator(est, Y_val, sw_val)
    cfg = est._train_config(est._resolve_batch_size(local.shape[0]), False)
    coefs, intercepts = _initial_weights(est.module_)
    member = Member(
        cfg=cfg,
        coefs=coefs,
        intercepts=intercepts,
        rows=torch.from_numpy(rows[local]),
        state=est._state,
        sample_weight=None if sw_train is None else torch.from_numpy(sw_train),
        dropout=float(est.dropout),
        validate=validate,
        val_rows=val_rows,
    )
    return _Prepared(
        est, member, _group_key(est, cfg, n_features), rows, _encode(Y, cfg)
    )


def _initial_weights(module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    layers = linear_layers(module)
    coefs = [layer.weight.detach().T.cpu().clone() for layer in layers]
    return coefs, [layer.bias.detach().cpu().clone() for layer in layers]


def _encode(Y: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    if _LOSSES[cfg.loss].index_targets:
        return Y.argmax(axis=1)
    return Y.astype(np.float64)


def _group_key(est, cfg: TrainConfig, n_features: int) -> tuple:
    """Members with equal keys can share one stack."""
    sizes = [c.shape[1] for c in _initial_weights(est.module_)[0]]
    classes = getattr(est, "classes_", None)
    classes = None if classes is None else repr(np.asarray(classes).tolist())
    return (
        type(est).__name__,
        n_features,
        tuple(sizes),
        est.activation,
        cfg.loss,
        cfg.solver,
        cfg.batch_size,
        cfg.autocast_dtype,
        est._param_dtype[0],
        str(est.device_),
        classes,
    )


def _shared_tensors(group: list[_Prepared], X: np.ndarray):
    """The group's ``X`` and target table on its device, in its dtype."""
    est = group[0].est
    device, dtype = est.device_, est._param_dtype[0]
    first = group[0].targets
    table = np.zeros((X.shape[0], *first.shape[1:]), dtype=first.dtype)
    for p in group:
        table[p.rows] = p.targets
    target_dtype = torch.int64 if table.dtype.kind == "i" else dtype
    X_t = torch.as_tensor(np.ascontiguousarray(X)).to(device, dtype)
    return X_t, torch.as_tensor(table).to(device, target_dtype)


# Buffers torch's optimizers keep per parameter, by solver; "step" is added
# for those that count steps. SGD and RMSprop keep a momentum buffer only
# when momentum is nonzero.
_TORCH_BUFFERS = {
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "sgd": ("momentum_buffer",),
    "rmsprop": ("square_avg", "momentum_buffer"),
}
_COUNTS_STEPS = frozenset({"adam", "adamw", "rmsprop"})


def _as_parameters(module, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Stack-layout tensors as copies of ``module.parameters()``.

    ``tensors`` holds weights ``(fan_in, fan_out)`` then biases; the result
    follows the order, shapes, dtype and device of the module's parameters
    (a model trained alone snapshots those for early stopping).
    """
    layers = linear_layers(module)
    n = len(layers)
    by_param = {}
    for layer, w, b in zip(layers, tensors[:n], tensors[n:], strict=True):
        by_param[id(layer.weight)] = w.T
        by_param[id(layer.bias)] = b
    return [by_param[id(q)].to(q).contiguous() for q in module.parameters()]


def _optimizer_state(est, m: Member) -> dict:
    """The member's optimizer state as the ``state_dict`` of torch's optimizer.

    A model trained alone keeps ``optimizer.state_dict()`` in its
    ``TrainState`` and ``partial_fit`` loads it; building the same dict from
    the stacked buffers lets a vectorised member continue the same way (Adam's
    moments and step count, momentum, the current learning rate).
    """
    # The optimizer torch would build for this network gives the exact layout
    # (parameter groups, hyper-parameters, parameter indices).
    layout = make_optimizer(est.module_, m.cfg).state_dict()
    for group in layout["param_groups"]:
        # The schedules (adaptive, invscaling) may have moved the rate.
        group["lr"] = m.lr
    names = [
        name
        for name in _TORCH_BUFFERS[m.cfg.solver]
        if name != "momentum_buffer" or m.cfg.momentum > 0
    ]
    n = len(linear_layers(est.module_))
    state = {}
    for i in range(2 * n):  # group 0 holds the weights, group 1 the biases
        entry = {}
        for name in names:
            t = m.optimizer_state[name][i]
            entry[name] = (t.T if i < n else t).contiguous()
        if m.cfg.solver in _COUNTS_STEPS:
            entry["step"] = torch.tensor(float(m.n_steps), dtype=torch.float32)
        if entry:
            state[i] = entry
    layout["state"] = state
    return layout


def _publish(p: _Prepared) -> None:
    """Load the trained weights into the estimator and set its attributes.

    Besides the weights, the member's ``TrainState`` gets what a model trained
    alone keeps for the next call: the optimizer state, the best weights of
    early stopping and the dropout stream's position, so ``partial_fit`` or a
    warm start continue from the member as from that model.
    """
    from ._engine import set_coefs

    est, m = p.est, p.member
    set_coefs(est.module_, m.coefs, m.intercepts)
    st = est._state
    st.optimizer_state = _optimizer_state(est, m)
    st.best_params = None if m.best is None else _as_parameters(est.module_, m.best)
    # A model trained alone on the CPU draws its dropout masks from the global
    # generator, whose state is the member's own stream here. On an
    # accelerator it would draw from the device's generator, which the member
    # never had: None makes the next call start afresh from the dropout seed.
    st.dropout_rng = None
    if est.device_.type == "cpu":
        st.dropout_rng = ("cpu", m.dropout_gen.get_state())
    est._publish(st)
    est._report(st, m.cfg, False)


def _fit_alone(est, X, y, rows, sample_weight):
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows)
    sw = None if sample_weight is None else sample_weight[rows]
    sub = X[rows] if hasattr(X, "shape") else [X[i] for i in rows]
    return est.fit(sub, y[rows], sample_weight=sw)


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # reported per member, as GridSearchCV does
        return exc


def _train_group(group: list[_Prepared], X: np.ndarray, budget) -> list:
    X_t, y_t = _shared_tensors(group, X)
    members = [p.member for p in group]
    try:
        train_members(
            members, X_t, y_t, activation=group[0].est.activation, budget=budget
        )
    except Exception as exc:
        return [exc] * len(group)
    return [_try(lambda q: (_publish(q), q.est)[1], p) for p in group]


def fit_vectorized(estimators, X, y, rows=None, sample_weight=None, *, budget=None):
    """Fit unfitted sknn_large estimators, vectorising those that can be.

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
        Bytes one stack of members may take (see :func:`train_members`).

    Returns
    -------
    list
        Per estimator, the fitted estimator or the exception its fit raised.
    """
    rows = [None] * len(estimators) if rows is None else list(rows)
    y = np.asarray(y)
    out: list = [None] * len(estimators)
    groups: dict[tuple, list[tuple[int, _Prepared]]] = {}
    for i, (est, r) in enumerate(zip(estimators, rows, strict=True)):
        if not vectorisable(est, X):
            out[i] = _try(_fit_alone, est, X, y, r, sample_weight)
            continue
        prepared = _try(_prepare, est, X, y, r, sample_weight)
        if isinstance(prepared, Exception):
            out[i] = prepared
            continue
        groups.setdefault(prepared.key, []).append((i, prepared))
    for items in groups.values():
        results = _train_group([p for _, p in items], X, budget)
        for (i, _), res in zip(items, results, strict=True):
            out[i] = res
    return out
