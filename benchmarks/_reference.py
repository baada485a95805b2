"""Reference trainers the benchmarks compare sknn_large against.

* :func:`train_eager` — a plain PyTorch loop: data resident on the device, one
  permutation per epoch, batches by index, fused Adam, the loss read once per
  epoch. It is the floor of what eager PyTorch does for a network.
* :func:`train_graphed` — the same step captured once in a CUDA graph and
  replayed (CUDA only). Full batches only: the remainder of each epoch is
  dropped and not counted.
* :func:`make_skorch` — skorch's ``NeuralNetClassifier`` with its default data
  loading (a ``DataLoader`` over the arrays, collated batch by batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from _common import build_reference_mlp
from torch import nn


def _autocast(device: torch.device, dtype: torch.dtype | None, cache: bool = True):
    if dtype is None:
        return contextlib.nullcontext()
    # Graph capture needs cache_enabled=False (cached casts would go stale).
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def _weights(module: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, nn.Linear)]


def _l2(module: nn.Module, alpha: float, n: int) -> torch.Tensor | float:
    # scikit-learn's MLP penalty: 0.5 * alpha * sum(W ** 2) / batch size.
    if alpha == 0.0:
        return 0.0
    return 0.5 * alpha * sum(w.square().sum() for w in _weights(module)) / n


@torch.no_grad()
def _l2_value(module: nn.Module, alpha: float, n: int) -> torch.Tensor:
    # The same value without autograd: one fused norm over all weights.
    norms = torch.stack(torch._foreach_norm(_weights(module)))
    return 0.5 * alpha * norms.square().sum() / n


def train_eager(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    seed: int,
    alpha: float = 0.0,
    autocast_dtype: torch.dtype | None = None,
    l2_in_optimizer: bool = False,
) -> list[float]:
    """Train ``module`` in place with a plain eager loop and Adam.

    Parameters
    ----------
    module : torch.nn.Module
        The network, on the same device as ``X``.
    X, y : torch.Tensor
        Features (float) and class indices (int64), resident on the device.
    batch_size, epochs : int
        Mini-batch size and number of passes over the data.
    lr : float
        Adam's learning rate.
    seed : int
        Seed of the generator that draws each epoch's permutation.
    alpha : float, default=0.0
        L2 strength, scikit-learn's MLP scaling (0 for a plain loop).
    autocast_dtype : torch.dtype, optional
        Run the forward pass under autocast to this dtype (e.g. bfloat16).
    l2_in_optimizer : bool, default=False
        Apply the L2 gradient ``alpha * W / batch_size`` through Adam's
        (coupled) ``weight_decay`` on the weights instead of differentiating
        the penalty, and add its value to the reported loss without autograd.
        Equal to the autograd form for full batches (a prototype of an engine
        change; the last, smaller batch of an epoch gets the full-batch rate).

    Returns
    -------
    list of float
        The mean training loss of each epoch.
    """
    if l2_in_optimizer and alpha > 0:
        weights = set(_weights(module))
        groups = [
            {"params": list(weights), "weight_decay": alpha / batch_size},
            {"params": [p for p in module.parameters() if p not in weights]},
        ]
        opt = torch.optim.Adam(groups, lr=lr, fused=True)
    else:
        opt = torch.optim.Adam(module.parameters(), lr=lr, fused=True)
    gen = torch.Generator().manual_seed(seed)
    n, device = X.shape[0], X.device
    curve = []
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            xb, yb = X[idx], y[idx]
            with _autocast(device, autocast_dtype):
                out = module(xb)
            loss = F.cross_entropy(out.float(), yb)
            if not l2_in_optimizer:
                loss = loss + _l2(module, alpha, len(idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if l2_in_optimizer and alpha > 0:
                loss = loss.detach() + _l2_value(module, alpha, len(idx))
            total += loss.detach() * len(idx)
        curve.append(float(total) / n)
    return curve


def train_graphed(
    module: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    seed: int,
    autocast_dtype: torch.dtype | None = None,
) -> list[float]:
    """Train with the whole step (gather, forward, backward, Adam) in a CUDA graph.

    Three warm-up steps on a side stream precede the capture (PyTorch's
    recipe); they train on the first batches and are not counted in the
    returned losses. Only full batches are replayed.

    Parameters
    ----------
    module : torch.nn.Module
        The network, on a CUDA device with ``X`` and ``y``.
    X, y, batch_size, epochs, lr, seed, autocast_dtype
        As in :func:`train_eager`.

    Returns
    -------
    list of float
        The mean training loss of each epoch over the replayed batches.
    """
    device = X.device
    opt = torch.optim.Adam(module.parameters(), lr=lr, capturable=True)
    gen = torch.Generator().manual_seed(seed)
    steps = X.shape[0] // batch_size
    idx = torch.arange(batch_size, device=device)
    total = torch.zeros((), device=device)

    def step() -> None:
        xb, yb = X.index_select(0, idx), y.index_select(0, idx)
        with _autocast(device, autocast_dtype, cache=False):
            out = module(xb)
        loss = F.cross_entropy(out.float(), yb)
        loss.backward()
        opt.step()
        total.add_(loss.detach() * batch_size)

    module.train()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    curve = []
    for _ in range(epochs):
        perm = torch.randperm(X.shape[0], generator=gen).to(device)
        total.zero_()
        for s in range(steps):
            idx.copy_(perm[s * batch_size : (s + 1) * batch_size])
            graph.replay()
        curve.append(float(total) / (steps * batch_size))
    return curve


class TorchLoopClassifier:
    """A minimal fit/predict wrapper around :func:`train_eager` (CPU tables).

    Parameters
    ----------
    hidden : sequence of int
        Hidden layer widths.
    batch_size, epochs : int
        Mini-batch size and epochs.
    lr : float
        Adam's learning rate.
    alpha : float
        L2 strength (scikit-learn's scaling).
    seed : int
        Seeds the initial weights and the permutations.
    device : str, default="cpu"
        Where to train.
    """

    def __init__(
        self,
        hidden: Sequence[int],
        batch_size: int,
        epochs: int,
        lr: float,
        alpha: float,
        seed: int,
        device: str = "cpu",
    ) -> None:
        self.hidden = hidden
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.alpha = alpha
        self.seed = seed
        self.device = device

    def fit(self, X: np.ndarray, y: np.ndarray) -> TorchLoopClassifier:
        """Train on float features ``X`` and integer labels ``y`` (0..k-1)."""
        device = torch.device(self.device)
        n_out = int(y.max()) + 1
        net = build_reference_mlp(X.shape[1], self.hidden, n_out, seed=self.seed)
        self.module_ = net.to(device)
        xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        yt = torch.as_tensor(y, dtype=torch.int64, device=device)
        self.loss_curve_ = train_eager(
            self.module_,
            xt,
            yt,
            batch_size=self.batch_size,
            epochs=self.epochs,
            lr=self.lr,
            seed=self.seed,
            alpha=self.alpha,
        )
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the arg-max class of each row."""
        param = next(self.module_.parameters())
        with torch.inference_mode():
            xt = torch.as_tensor(X, dtype=param.dtype, device=param.device)
            return self.module_(xt).argmax(dim=1).cpu().numpy()


def make_skorch(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    seed: int,
    device: str = "cpu",
):
    """skorch's ``NeuralNetClassifier`` on the same architecture, default loading.

    The module outputs logits and the criterion is ``CrossEntropyLoss``;
    ``train_split=None`` (no internal validation split), Adam, shuffled
    batches, everything else skorch's defaults.

    Parameters
    ----------
    n_in, n_out : int
        Input features and classes.
    hidden : sequence of int
        Hidden layer widths.
    batch_size, epochs : int
        Mini-batch size and epochs.
    lr : float
        Adam's learning rate.
    seed : int
        Seeds the initial weights (via the module) before skorch sees it.
    device : str, default="cpu"
        skorch's ``device``.

    Returns
    -------
    skorch.NeuralNetClassifier
        An unfitted net.
    """
    from skorch import NeuralNetClassifier

    return NeuralNetClassifier(
        build_reference_mlp(n_in, hidden, n_out, seed=seed),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=lr,
        batch_size=batch_size,
        max_epochs=epochs,
        train_split=None,
        iterator_train__shuffle=True,
        device=device,
        verbose=0,
    )
