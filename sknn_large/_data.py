"""Data feed: arrays to tensors on the device, batching, streaming.

Two feeds share one interface:

* :class:`ResidentFeed` holds the whole training set on the device and draws
  batches by index from one permutation per epoch (no host work per batch).
* :class:`StreamFeed` keeps the data where it is (a memory-mapped file, a
  sparse matrix, anything sliceable by rows) and moves one chunk of rows at a
  time. Shuffling is two-level: the order of chunks is permuted, then rows are
  permuted within each chunk. Memory stays bounded by one chunk.

This module never imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]

# Largest share of free accelerator memory the training data may take.
_DEVICE_MEMORY_SHARE = 0.5
# Rows streamed at a time when no budget says otherwise: about 64 MiB of float32
# for 256 features.
_DEFAULT_CHUNK_BYTES = 64 * 2**20


def rows_to_tensor(
    X, start: int, stop: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Rows ``start:stop`` of any row-sliceable array as a dense device tensor."""
    block = X[start:stop]
    if sp.issparse(block):
        block = block.toarray()
    block = np.ascontiguousarray(block)
    if not block.flags.writeable:
        block = block.copy()
    t = torch.from_numpy(block).to(dtype)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def as_tensor(a: np.ndarray | None, device: torch.device, dtype: torch.dtype):
    """An in-memory array on ``device``; shares memory on CPU when it can."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        # torch cannot wrap read-only memory (e.g. a read-only memmap) safely.
        a = a.copy()
    return torch.as_tensor(a).to(device=device, dtype=dtype)


def free_device_bytes(device: torch.device) -> float:
    """Bytes the training data may occupy on ``device`` by default."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free * _DEVICE_MEMORY_SHARE
    # On the CPU an in-memory array is already resident: no copy is needed.
    return float("inf")


def is_in_memory(X) -> bool:
    """Dense arrays fully in RAM (not memory-mapped, not sparse)."""
    return isinstance(X, np.ndarray) and not isinstance(X, np.memmap)


class ResidentFeed:
    """The whole training set on the device; batches by index."""

    def __init__(self, X, y, w, *, batch_size, device, dtype, target_dtype):
        self.X = as_tensor(X, device, dtype)
        self.y = as_tensor(y, device, target_dtype)
        self.w = as_tensor(w, device, dtype)
        self.n_samples = self.X.shape[0]
        self.batch_size = batch_size

    def _take(self, idx) -> Batch:
        w = None if self.w is None else self.w[idx]
        return self.X[idx], self.y[idx], w

    def batches(self, generator: torch.Generator, shuffle: bool) -> Iterator[Batch]:
        """One epoch of mini-batches."""
        n, bs = self.n_samples, self.batch_size
        if not shuffle:
            for s in range(0, n, bs):
                yield self._take(slice(s, s + bs))
            return
        perm = torch.randperm(n, generator=generator).to(self.X.device)
        for s in range(0, n, bs):
            yield self._take(perm[s : s + bs])

    def chunks(self) -> Iterator[Batch]:
        """The whole set in order, as one chunk (full-batch solvers)."""
        yield self._take(slice(0, self.n_samples))


class StreamFeed:
    """Rows stay on the host; one chunk at a time travels to the device."""

    def __init__(self, X, y, w, *, batch_size, device, dtype, target_dtype, chunk_rows):
        self.X = X
        self.y = as_tensor(y, device, target_dtype)
        self.w = as_tensor(w, device, dtype)
        self.n_samples = X.shape[0]
        self.batch_size = batch_size
        # Whole batches per chunk, so that chunk boundaries never split a batch.
        self.chunk_rows = max(batch_size, chunk_rows // batch_size * batch_size)
        self.device, self.dtype = device, dtype

    def _chunk(self, s: int) -> Batch:
        e = min(s + self.chunk_rows, self.n_samples)
        x = rows_to_tensor(self.X, s, e, self.device, self.dtype)
        w = None if self.w is None else self.w[s:e]
        return x, self.y[s:e], w

    def chunks(self) -> Iterator[Batch]:
        """The whole set in order, one chunk at a time."""
        for s in range(0, self.n_samples, self.chunk_rows):
            yield self._chunk(s)

    def batches(self, generator: torch.Generator, shuffle: bool) -> Iterator[Batch]:
        """One epoch: chunks in (shuffled) order, rows shuffled within each."""
        starts = torch.arange(0, self.n_samples, self.chunk_rows)
        if shuffle:
            starts = starts[torch.randperm(len(starts), generator=generator)]
        bs = self.batch_size
        for s in starts.tolist():
            x, y, w = self._chunk(s)
            m = x.shape[0]
            order = (
                torch.randperm(m, generator=generator).to(x.device) if shuffle else None
            )
            for b in range(0, m, bs):
                idx = slice(b, b + bs) if order is None else order[b : b + bs]
                yield x[idx], y[idx], (None if w is None else w[idx])


def make_feed(
    X,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    target_dtype: torch.dtype,
    budget_bytes: float | None = None,
):
    """Pick the resident feed when the data fits the budget, else stream it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Anything sliceable by rows: ndarray, memmap, scipy sparse matrix.
    y, sample_weight : ndarray
        Targets and optional weights; always held on the device.
    budget_bytes : float, optional
        Bytes the features may occupy on the device. Defaults to half the free
        accelerator memory, or unlimited for in-memory arrays on the CPU.
    """
    budget = free_device_bytes(device) if budget_bytes is None else budget_bytes
    itemsize = torch.empty((), dtype=dtype).element_size()
    row_bytes = max(1, X.shape[1] * itemsize)
    common = dict(
        batch_size=batch_size, device=device, dtype=dtype, target_dtype=target_dtype
    )
    if is_in_memory(X) and X.shape[0] * row_bytes <= budget:
        return ResidentFeed(X, y, sample_weight, **common)
    chunk_bytes = min(budget, _DEFAULT_CHUNK_BYTES)
    return StreamFeed(
        X, y, sample_weight, chunk_rows=int(chunk_bytes // row_bytes), **common
    )


def iter_row_blocks(X, rows: int, device: torch.device, dtype: torch.dtype):
    """Yield ``X`` as dense device tensors of at most ``rows`` rows (prediction)."""
    n = X.shape[0]
    for s in range(0, n, rows):
        yield rows_to_tensor(X, s, min(s + rows, n), device, dtype)
