"""K networks of one architecture as one flat parameter tensor, and their step.

The parameters of ``K`` members live in one ``(K, P)`` tensor: every layer's
weights ``(fan_in, fan_out)`` first, then every bias. Layers are views of it,
so one optimizer update touches one tensor, the L1/L2 penalty reads one
contiguous slice, and retiring members is one row selection.

A training step has two implementations with one contract (fill ``grad``
with the gradient of the batch's data loss, return each member's loss):

* the hand-derived step (:meth:`ParamStack.hand_step`): forward and backward
  on preallocated buffers with the aten kernels autograd would call, as
  scikit-learn derives its own gradients. It covers the activations of
  ``_HAND_ACTIVATIONS`` and the losses with a ``value_and_delta``.
* the autograd step (:meth:`ParamStack.autograd_step`), the general path:
  any activation, autocast (bfloat16).

On the CPU a bfloat16 fit takes the hand-derived step too
(:func:`~._steps.low_precision_step`): the same calls on a bfloat16 copy of the stack,
rounded where autocast rounds.

For ``K == 1`` every product is a plain 2-D ``addmm``/``mm``; for ``K > 1``
the batched ``baddbmm``/``bmm``. On CPUs whose BLAS is slow for results with a
handful of columns (measured once per process and rank), the layers that
narrow (an output layer with a few classes; in a stack, one unit too) are
multiplied transposed, and a one-column input gradient is an outer product.
Where only a narrow layer's weight gradient is slow as written (measured on
its own), that product alone is computed transposed and copied back.
The penalty's gradient and the optimizer update are the same code for both
paths (:func:`~sknn_large._engine._update.apply_step`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ._cpu import (
    NARROW,
    NARROW_BATCHED,
    narrow_grads_transposed,
    narrow_products_transposed,
)
from ._losses import Loss
from ._network import _ACTIVATIONS, _HAND_ACTIVATIONS, linear_layers

# Output widths whose loss the hand-derived step computes on the CPU as
# (n_out, B), along rows, even where the products keep them (B, n_out):
# torch's log-softmax along a last dimension of a handful of classes works
# row by row (256 x 5: 11-18 us, against 3.6 us through the transposed view;
# Intel Xeon, 2026-12-07).
_LOSS_ROWS = range(2, 16)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    # No weight cache: a CUDA graph must not capture casts a cache would skip.
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def _affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, out=None):
    """``h @ w + b`` per member; ``h`` is ``(K, B, fan_in)``."""
    if w.shape[0] == 1:
        res = torch.addmm(b[0], h[0], w[0], out=None if out is None else out[0])
        return res.unsqueeze(0)
    return torch.baddbmm(b.unsqueeze(1), h, w, out=out)


class _Views(NamedTuple):
    W: list[torch.Tensor]
    WT: list[torch.Tensor]
    b: list[torch.Tensor]
    bT: list[torch.Tensor]
    gW: list[torch.Tensor]
    gb: list[torch.Tensor]
    affine: Callable[..., torch.Tensor]
    mm: Callable[..., torch.Tensor]
    t: Callable[[torch.Tensor], torch.Tensor]
    # Per layer: computed transposed (see :func:`narrow_products_transposed`).
    narrow: list[bool]
    # Per layer: its weight gradient computed transposed and copied back
    # (every narrow layer; see :func:`narrow_grads_transposed` for the rest).
    grad_narrow: list[bool]


class ParamStack:
    """The parameters of ``K`` networks ``widths[0] -> ... -> widths[-1]``.

    Parameters
    ----------
    widths : sequence of int
        Layer widths, input first.
    theta : Tensor of shape (K, P)
        The flat parameters (see the module docstring for the layout).
    """

    def __init__(self, widths: Sequence[int], theta: torch.Tensor):
        self.widths = list(widths)
        pairs = list(zip(self.widths[:-1], self.widths[1:], strict=True))
        self._w_spans, offset = [], 0
        for fi, fo in pairs:
            self._w_spans.append((offset, fi, fo))
            offset += fi * fo
        self.n_weights = offset
        self._b_spans = []
        for _, fo in pairs:
            self._b_spans.append((offset, fo))
            offset += fo
        self.n_params = offset
        # Views, buffers and hand-derived steps (closures), made once per theta.
        self._buffers: dict[tuple, Any] = {}
        self.set_theta(theta)

    # ------------------------------------------------------------ layout

    def set_theta(self, theta: torch.Tensor) -> None:
        """Use ``theta`` (K, P) as the parameters; gradients start at zero."""
        self.theta = theta
        self.grad = torch.zeros_like(theta)
        self.W, self.b = self._views(theta)
        self.gW, self.gb = self._views(self.grad)
        self._buffers.clear()

    def _views(self, flat: torch.Tensor):
        k = flat.shape[0]
        ws = [flat[:, o : o + fi * fo].view(k, fi, fo) for o, fi, fo in self._w_spans]
        bs = [flat[:, o : o + fo] for o, fo in self._b_spans]
        return ws, bs

    @property
    def k(self) -> int:
        """The number of members."""
        return self.theta.shape[0]

    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], device, dtype) -> ParamStack:
        """Stack the linear layers of ``modules`` (same architecture)."""
        flats = [module_to_flat(m) for m in modules]
        layers = linear_layers(modules[0])
        widths = [layers[0].in_features] + [la.out_features for la in layers]
        theta = torch.stack(flats).to(device=device, dtype=dtype)
        return cls(widths, theta)

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only members ``idx`` (in that order)."""
        self.set_theta(self.theta.index_select(0, idx))

    def module_params(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """One member's flat vector as ``module.parameters()`` would list it."""
        out = []
        for (o, fi, fo), (ob, _) in zip(self._w_spans, self._b_spans, strict=True):
            # A copy always: .contiguous() alone returns a view of theta when
            # fi or fo is 1 (an output layer of one unit), which later steps
            # would overwrite.
            w = flat[o : o + fi * fo].view(fi, fo).T
            out.append(w.clone(memory_format=torch.contiguous_format))
            out.append(flat[ob : ob + fo].clone())
        return out

    def flat_from_params(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`module_params`."""
        ws, bs = params[0::2], params[1::2]
        parts = [w.T.reshape(-1) for w in ws] + [b.reshape(-1) for b in bs]
        return torch.cat(parts).to(self.theta)

    # ------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, activation: str) -> torch.Tensor:
        """Raw outputs ``(K, B, n_out)`` for inputs ``(K, B, n_in)`` (no grad)."""
        act = _ACTIVATIONS[activation]()
        h = x
        for i, (w, b) in enumerate(zip(self.W, self.b, strict=True)):
            h = _affine(h, w, b)
            if i < len(self.W) - 1:
                h = act(h)
        return h

    def forward_member(self, k: int, x: torch.Tensor, activation: str):
        """Raw outputs of member ``k`` for 2-D inputs ``x``."""
        act = _ACTIVATIONS[activation]()
        h = x
        for i, (w, b) in enumerate(zip(self.W, self.b, strict=True)):
            h = torch.addmm(b[k], h, w[k])
            if i < len(self.W) - 1:
                h = act(h)
        return h

    # ------------------------------------------------------------ steps

    def _rank_views(self):
        """The layer views the hand-derived step reads and writes, per rank.

        One member trains on 2-D views through ``addmm``/``mm``; a stack on
        3-D ones through ``baddbmm``/``bmm``. Built once per ``theta``, so a
        step makes no view of its own beyond the activations' transposes.
        """
        views = self._buffers.get(("views",))
        if views is not None:
            return views
        views = _rank_views_of(self)
        self._buffers[("views",)] = views
        return views

    # The kept buffers are made as ordinary tensors even when the
    # first step runs in inference mode (the training loop's on the CPU), so
    # that a later step outside it can still write them.
    @torch.inference_mode(False)
    def _hand_buffers(self, k: int, bsz: int, from_input: bool = False):
        """The hand-derived step's buffers for ``k`` members, ``bsz`` rows.

        A narrow layer's output is held transposed, ``(n, bsz)``, and its
        weight gradient is computed into ``(n, fan_in)`` and copied back.
        Each layer's output is also kept as a ``(bsz, n)`` view (``acts``) and
        its transpose (``acts_t``), made once: a view costs a dispatch too.
        With ``from_input`` (an activation differentiated from its input) the
        hidden layers' activations get buffers of their own, and ``pres``
        views the affine outputs they are computed from; otherwise the
        activation runs in place and ``pres`` is ``acts``.
        """
        t = self.theta
        m = () if k == 1 else (k,)
        v = self._rank_views()
        pairs = list(zip(self.widths[:-1], self.widths[1:], strict=True))

        def new(*shape):
            return torch.empty(shape, device=t.device, dtype=t.dtype)

        def shaped(fo, nar):
            return new(*m, fo, bsz) if nar else new(*m, bsz, fo)

        outs = [shaped(fo, nar) for (_, fo), nar in zip(pairs, v.narrow, strict=True)]
        posts = outs
        if from_input:
            hidden = zip(pairs[:-1], v.narrow, strict=False)
            posts = [shaped(fo, nar) for (_, fo), nar in hidden] + outs[-1:]

        def as_rows(bufs):
            return [v.t(o) if nar else o for o, nar in zip(bufs, v.narrow, strict=True)]

        acts = as_rows(posts)
        acts_t = [o if nar else v.t(o) for o, nar in zip(posts, v.narrow, strict=True)]
        pres = as_rows(outs) if from_input else acts
        dhs = [new(*m, bsz, fi) for fi, _ in pairs[1:]]
        grads_t = [
            new(*m, fo, fi) if nar else None
            for (fi, fo), nar in zip(pairs, v.grad_narrow, strict=True)
        ]
        grads_tt = [None if g is None else v.t(g) for g in grads_t]
        # Bias gradients as products with ones, not sums: a (K, B, n) sum
        # reduces in a K-dependent order, a product per member does not, so a
        # member's result does not depend on how many share its stack.
        ones = new(*m, 1, bsz).fill_(1.0)
        return outs, acts, acts_t, pres, dhs, grads_t, grads_tt, ones

    def hand_step(
        self, x, y, scale, activation: str, loss: Loss, masks, smoothing=None
    ):
        """Gradient of the data loss into ``grad``; returns per-member values.

        ``scale`` is ``(K, B, 1)`` sample weights over each member's weight sum
        (or a float, ``1 / B``). ``masks`` are per-hidden-layer dropout masks
        or None. ``smoothing`` is each member's label smoothing, ``(K, 1, 1)``,
        or None for none.
        """
        key = (x.shape[0], x.shape[1], activation)
        program = self._buffers.get(key)
        if program is None or program[0] is not loss:
            program = self._buffers[key] = (loss, self._hand_program(*key, loss))
        return program[1](x, y, scale, masks, smoothing)

    def _hand_program(self, k: int, bsz: int, activation: str, loss: Loss):
        """The hand-derived step for ``k`` members of ``bsz`` rows, as a closure.

        Everything that does not change between steps (buffers, views, which
        layers are narrow, the activation's kernels, the loss's function) is
        looked up here once, not every step: small networks, whose steps are
        mostly that overhead, fit a few per cent faster (README-sized fit:
        0.974x the time, paired by round).
        """
        fwd, bwd, from_input = _HAND_ACTIVATIONS[activation]
        v = self._rank_views()
        bufs = self._hand_buffers(k, bsz, from_input)
        outs, acts, acts_t, pres, dhs, grads_t, grads_tt, ones = bufs
        last = len(outs) - 1
        t, affine, mm = v.t, v.affine, v.mm
        # Per layer, forward: (narrow, bias, weight) as affine takes them.
        forward = [
            (True, v.bT[i], v.WT[i]) if v.narrow[i] else (False, v.b[i], v.W[i])
            for i in range(last + 1)
        ]
        # Per layer, backward, last first: whether its weight gradient is
        # computed transposed, its index, whether its output has one column,
        # its gradient views and buffers.
        backward = [
            (v.grad_narrow[i], i, self.widths[i + 1] == 1, v.gW[i], v.gb[i], v.WT[i])
            + (grads_t[i], grads_tt[i], dhs[i - 1] if i else None, pres[i - 1])
            for i in range(last, -1, -1)
        ]
        out_narrow, vad = v.narrow[last], loss.value_and_delta
        index_targets = loss.index_targets
        # The loss along rows where faster (_LOSS_ROWS). rounds: a bf16 stack.
        loss_t = out_narrow or (self.theta.is_cpu and self.widths[-1] in _LOSS_ROWS)
        raw_t = outs[last] if out_narrow else acts_t[last]
        rounds = self.theta.dtype if self.theta.dtype == torch.bfloat16 else None

        def run(x, y, scale, masks, smoothing):
            if k == 1:
                x, y = x[0], y[0]
                if masks is not None:
                    masks = [m[0] for m in masks]
                if smoothing is not None:
                    smoothing = smoothing[0]
                if not isinstance(scale, float):
                    scale = scale[0]
            # Each layer's input, as (B, fan_in) and transposed.
            inputs, inputs_t = [x], [t(x)]
            for i, (narrow, b, w) in enumerate(forward):
                if narrow:
                    affine(b, w, inputs_t[i], out=outs[i])
                else:
                    affine(b, inputs[i], w, out=outs[i])
                if i == last:
                    break
                fwd(pres[i], acts[i]) if from_input else fwd(acts[i])
                if masks is None:
                    inputs.append(acts[i])
                    inputs_t.append(acts_t[i])
                else:
                    h = acts[i] * masks[i]
                    h = h.to(rounds) if rounds else h  # float32 masks: round once
                    inputs.append(h)
                    inputs_t.append(t(h))
            extra = () if smoothing is None else (smoothing,)
            if loss_t:
                # The outputs are (.., n_out, B): the loss reduces along rows.
                target = y if index_targets else t(y)
                value, delta_t = vad(raw_t, target, *extra, dim=-2)
                delta = t(delta_t)
            else:
                value, delta = vad(acts[last], y, *extra)
                delta_t = None
            # Scaled here for weighted and unweighted rows alike (not by the
            # products' alpha): unit sample weights then give the same numbers.
            delta = delta.mul_(scale)
            if rounds:  # a bf16 stack (low_precision_step): round once, scaled
                delta, delta_t = delta.to(rounds), None
            for grad_t, i, one_column, gw, gb, wt, gt, gtt, dh, a in backward:
                if grad_t:
                    mm(t(delta) if delta_t is None else delta_t, inputs[i], out=gt)
                    gw.copy_(gtt)
                else:
                    mm(inputs_t[i], delta, out=gw)
                mm(ones, delta, out=gb)
                if i == 0:
                    break
                if one_column:
                    # A product over one column is an outer product: the same
                    # numbers as a multiply, which BLAS batches slowly.
                    torch.mul(delta, wt, out=dh)
                else:
                    mm(delta, wt, out=dh)
                if masks is not None:
                    dh.mul_(masks[i - 1])
                delta = dh if bwd is None else bwd(dh, a)
                delta_t = None
            return value.view(k, bsz)

        return run

    def autograd_step(
        self, x, y, scale, activation: str, loss: Loss, masks, autocast, smoothing=None
    ):
        """The same contract as :meth:`hand_step`, through autograd."""
        leaves = [t.detach().requires_grad_() for t in (*self.W, *self.b)]
        n = len(self.W)
        act = _ACTIVATIONS[activation]()
        h = x
        with torch.enable_grad():
            with _autocast(x.device, autocast):
                for i in range(n):
                    h = _affine(h, leaves[i], leaves[n + i])
                    if i < n - 1:
                        h = act(h)
                        if masks is not None:
                            h = h * masks[i]
            raw = h.to(x.dtype)
            k, bsz, n_out = raw.shape
            target = y.reshape(k * bsz, *y.shape[2:])
            eps = None
            if smoothing is not None:
                eps = smoothing.expand(k, bsz, 1).reshape(k * bsz, 1)
            value = loss.values(raw.reshape(k * bsz, n_out), target, eps)
            value = value.view(k, bsz)
            weighted = value * (scale if isinstance(scale, float) else scale[..., 0])
            weighted.sum().backward()
        for leaf, g in zip(leaves, (*self.gW, *self.gb), strict=True):
            g.copy_(leaf.grad)
        return value.detach()


@torch.inference_mode(False)
def _rank_views_of(stack: ParamStack) -> _Views:
    """Build what :meth:`ParamStack._rank_views` keeps, as ordinary tensors.

    Even when the first step runs in inference mode (the training loop's on
    the CPU), so that a later step outside it can still write them.
    """
    t, batched = stack.theta, stack.k > 1
    widths = NARROW_BATCHED if batched else NARROW
    narrow = [
        t.device.type == "cpu"
        and fo in widths
        and narrow_products_transposed(t.dtype, batched)
        for fo in stack.widths[1:]
    ]
    grad_narrow = [
        nar
        or (
            t.device.type == "cpu"
            and not batched
            and fo in widths
            and narrow_grads_transposed(t.dtype)
        )
        for nar, fo in zip(narrow, stack.widths[1:], strict=True)
    ]
    if stack.k == 1:
        views = _Views(
            [w[0] for w in stack.W],
            [w[0].T for w in stack.W],
            [b[0] for b in stack.b],
            [b[0].unsqueeze(1) for b in stack.b],
            [g[0] for g in stack.gW],
            [g[0:1] for g in stack.gb],
            torch.addmm,
            torch.mm,
            lambda a: a.T,
            narrow,
            grad_narrow,
        )
    else:
        views = _Views(
            stack.W,
            [w.transpose(1, 2) for w in stack.W],
            [b.unsqueeze(1) for b in stack.b],
            [b.unsqueeze(2) for b in stack.b],
            stack.gW,
            [g.unsqueeze(1) for g in stack.gb],
            torch.baddbmm,
            torch.bmm,
            lambda a: a.transpose(1, 2),
            narrow,
            grad_narrow,
        )
    return views


def module_to_flat(module: nn.Module) -> torch.Tensor:
    """A module's linear layers as one flat vector in the stack's layout."""
    layers = linear_layers(module)
    ws = [la.weight.detach().T.reshape(-1) for la in layers]
    bs = [la.bias.detach().reshape(-1) for la in layers]
    return torch.cat(ws + bs)


@torch.no_grad()
def flat_to_module(flat: torch.Tensor, module: nn.Module) -> None:
    """Copy a flat vector (stack layout) into a module's linear layers."""
    offset = 0
    layers = linear_layers(module)
    for la in layers:
        n = la.weight.numel()
        la.weight.copy_(flat[offset : offset + n].view(la.in_features, -1).T)
        offset += n
    for la in layers:
        n = la.bias.numel()
        la.bias.copy_(flat[offset : offset + n])
        offset += n
