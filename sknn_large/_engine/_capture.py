"""CUDA-graph capture of the training step (``cuda_graphs=True``).

A small network on a GPU spends most of a step launching kernels, not running
them: about 30 launches of a few microseconds each for forward, backward and
the optimizer. Capturing the whole step once in a CUDA graph and replaying it
turns those into one launch per step.

:class:`GraphedStep` is a drop-in for the plain step function of
``_train.py``. Full batches are copied into fixed input buffers and the step
that reads them is replayed from a graph; anything else (the last, smaller
batch of an epoch) runs eagerly on the same parameters and optimizer state.
The graph is captured after a few eager warm-up steps (PyTorch's recipe: they
run on a side stream and initialise the optimizer state and library
workspaces). The learning rate and every other hyper-parameter are device
tensors the captured step reads, so a schedule never forces a new capture.
Every warm-up step is a real training step: a graphed fit performs the very
same sequence of updates as a plain one.

What makes a step replayable: no host synchronisation inside it (the epoch's
loss is summed on the device), parameters and optimizer state updated in
place (divergence recovery copies into them, so the graph stays valid), step
counts kept on the device, and autocast without its weight cache.

The capture and replay go through a small backend object, so that the CPU
tests can drive the same control flow with a backend that "replays" by
running the captured step again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch

_log = logging.getLogger("sknn_large")

StepFn = Callable[[tuple], torch.Tensor]

# Eager steps before the first capture (PyTorch's CUDA-graph recipe uses 3).
WARMUP_STEPS = 3


class CudaGraphs:
    """Capture on a CUDA device with :class:`torch.cuda.CUDAGraph`."""

    def __init__(self, device: torch.device):
        self.device = device
        self._side = torch.cuda.Stream(device)

    @contextlib.contextmanager
    def warmup(self):
        """Run eager warm-up work on a side stream, ordered with the main one."""
        main = torch.cuda.current_stream(self.device)
        self._side.wait_stream(main)
        with torch.cuda.stream(self._side):
            yield
        main.wait_stream(self._side)

    def capture(self, body: Callable[[], torch.Tensor]):
        """Record ``body`` (without running it); return (graph, its output)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = body()
        return graph, out

    def replay(self, graph, out: torch.Tensor) -> torch.Tensor:
        """Run the recorded step once; its output tensor is rewritten in place."""
        graph.replay()
        return out


class GraphedStep:
    """The training step, replayed from a CUDA graph for full batches.

    Parameters
    ----------
    step : callable
        ``batch -> reported loss times batch size``: the plain eager step,
        closed over parameters and buffers that stay the same tensors
        throughout (a stack that retires members captures again).
    batch_size : int
        The size of the batches that are replayed.
    backend : CudaGraphs or compatible
        Captures and replays; see the module docstring.
    """

    def __init__(self, step: StepFn, batch_size: int, backend):
        self.step = step
        self.batch_size = batch_size
        self.backend = backend
        self.buffers: tuple | None = None
        self.graph = None
        self.out: torch.Tensor | None = None
        self.warm = 0
        self.disabled = False

    def _load(self, batch: tuple) -> tuple:
        if self.buffers is None:
            self.buffers = tuple(None if t is None else t.clone() for t in batch)
        else:
            for buf, t in zip(self.buffers, batch, strict=True):
                if buf is not None:
                    buf.copy_(t)
        return self.buffers

    def _replayable(self, batch: tuple) -> bool:
        if self.disabled or batch[0].shape[1] != self.batch_size:
            return False
        if self.buffers is None or self.buffers[0].shape != batch[0].shape:
            # First batch, or members left the stack: new buffers, new graph.
            self.buffers, self.graph = None, None
            return True
        # Same dtypes and presence of sample weights as the captured step.
        return all(
            (b is None) == (t is None) and (b is None or b.dtype == t.dtype)
            for b, t in zip(self.buffers, batch, strict=True)
        )

    def _capture(self) -> None:
        buffers = self.buffers
        self.graph = self.out = None
        try:
            self.graph, self.out = self.backend.capture(lambda: self.step(buffers))
        except RuntimeError as exc:
            # An operation that cannot be captured: train on, uncaptured.
            _log.warning("CUDA-graph capture failed (%s); training without it", exc)
            self.disabled = True
            self.graph = self.out = None

    def __call__(self, batch: tuple) -> torch.Tensor:
        """One training step on ``batch``; returns the reported loss times its size."""
        if not self._replayable(batch):
            return self.step(batch)
        buffers = self._load(batch)
        if self.warm < WARMUP_STEPS:
            self.warm += 1
            with self.backend.warmup():
                return self.step(buffers)
        if self.graph is None:
            self._capture()
            if self.disabled:
                return self.step(buffers)
        return self.backend.replay(self.graph, self.out)
