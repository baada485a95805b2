"""Training feeds: batches of rows on the device.

Two row feeds share one interface (``batches``, ``chunks``):

* :class:`ResidentFeed` holds the whole training set on the device and draws
  batches by index from one permutation per epoch (no host work per batch).
* :class:`StreamFeed` keeps the data where it is (a memory-mapped file, a
  sparse matrix, anything sliceable by rows) and moves one chunk of rows at a
  time. Memory stays bounded by a few chunks, not by the data set.

The engine trains a stack of ``K`` members and asks its feed for stacked
batches ``(x (K, B, F), y (K, B, ...), w (K, B) or None, counts or None)``:

* :class:`SharedFeed` wraps a row feed: every member sees the same batches
  (a plain fit, ``K = 1``, sees exactly the row feed's batches).
* :class:`StackFeed` holds one resident ``X`` and gives each member its own
  rows (a cross-validation fold), its own order and its own weights.

Shuffling guarantee of the streaming feed
-----------------------------------------
Each epoch draws a fresh permutation of the *chunks* (contiguous runs of
``chunk_rows`` rows, a whole number of batches), then a fresh permutation of
the rows *inside* each chunk. So every row is seen exactly once per epoch and
the order of chunks is uniform, but a batch only ever mixes rows of one chunk:
it is a two-level shuffle, not a uniform permutation of all rows. Data stored
in a meaningful order (sorted by target, by time) should be shuffled once on
disk, or streamed in smaller chunks, for the batches to look i.i.d. With
``shuffle=False`` chunks and rows go in file order and the batches equal those
of the resident feed.

This module never imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from . import _sources
from ._sources import (
    SPARSE,
    _host_block,
    _to_device,
    _will_read_rows,
    as_source,
    as_tensor,
    rows_to_tensor,
)

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]

# Sparse input whose dense form stays under this many bytes trains resident.
_SPARSE_RESIDENT_BYTES = 256 * 2**20


def _prefetched(
    load: Callable[[int], np.ndarray], starts: list[int]
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, load(start))`` in order, reading the next chunk in a thread.

    The reader thread only copies rows with NumPy (which releases the GIL), so
    reading the file overlaps with training on the previous chunk. It makes no
    torch calls (a second thread entering torch's OpenMP pool oversubscribes
    the cores) and no random draws: results are deterministic.
    """
    if len(starts) <= 1:
        for s in starts:
            yield s, load(s)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sknn-prefetch")
    pending: Future | None = None
    try:
        pending = pool.submit(load, starts[0])
        for i, s in enumerate(starts):
            chunk = pending.result()
            pending = pool.submit(load, starts[i + 1]) if i + 1 < len(starts) else None
            yield s, chunk
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=True)


# -------------------------------------------------------------------- feeds


def take_rows(x, y, w, idx) -> Batch:
    """Rows ``idx`` (a slice or an index tensor) of features, targets, weights."""
    if isinstance(idx, slice):
        return x[idx], y[idx], (None if w is None else w[idx])
    # index_select, not x[idx]: advanced indexing measured up to 1000x slower
    # per batch on a busy 2-core CPU (its parallel kernel contends for cores).
    w = None if w is None else w.index_select(0, idx)
    return x.index_select(0, idx), y.index_select(0, idx), w


# Rows a shuffled epoch gathers at a time: one gather per block of batches
# rather than per batch (a gather's fixed cost is most of a small batch's),
# with the copy's memory bounded.
_GATHER_BYTES = 4 * 2**20


# Row indices a restored EpochOrder may redraw (epochs x rows) before it is
# saved as its current order instead: about a second of replay.
_REPLAY_LIMIT = 2**26


def _copy_random_state(rng: np.random.RandomState) -> np.random.RandomState:
    twin = np.random.RandomState()
    twin.set_state(rng.get_state())
    return twin


class EpochOrder:
    """scikit-learn's MLP epoch order, drawn from its NumPy random state.

    Each epoch the previous epoch's order is permuted by
    ``rng.shuffle(np.arange(n))``, as ``sklearn.utils.shuffle`` does to
    ``sample_idx`` in scikit-learn's training loop: the same ``random_state``
    (drawn in the same order: initial weights, early-stopping split, then the
    epochs) gives the same batches as ``MLPClassifier`` / ``MLPRegressor``.

    Saved (pickled or in a model file) as the random state it started from
    and the number of epochs drawn, a few kilobytes whatever ``n``; a restored
    order replays its draws when it is next used. Past ``_REPLAY_LIMIT`` drawn
    row indices, it is saved as its current state and order instead, so that
    a long ``partial_fit`` history does not make the replay slow.

    Parameters
    ----------
    rng : numpy.random.RandomState
        Drawn from, epoch by epoch.
    n : int
        Rows per epoch.
    epochs_done : int, default=0
        Epochs already trained (a resumed fit): their draws are replayed.
    """

    def __init__(self, rng: np.random.RandomState, n: int, epochs_done: int = 0):
        self.n, self.start, self.done, self.base = n, _copy_random_state(rng), 0, None
        self.rng, self.order = rng, np.arange(n)
        for _ in range(epochs_done):
            self.next()

    @classmethod
    def replay(
        cls,
        start: np.random.RandomState,
        n: int,
        done: int,
        order: np.ndarray | None = None,
    ) -> EpochOrder:
        """The order that has drawn ``done`` epochs from ``start`` after ``order``."""
        self = cls.__new__(cls)
        self.__setstate__({"n": n, "start": start, "done": done, "base": order})
        return self

    def __getstate__(self) -> dict:
        if self.order is not None and self.done * self.n > _REPLAY_LIMIT:
            base = self.order.copy()
            return {
                "n": self.n,
                "start": _copy_random_state(self.rng),
                "done": 0,
                "base": base,
            }
        return {"n": self.n, "start": self.start, "done": self.done, "base": self.base}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.rng = self.order = None

    def next(self) -> np.ndarray:
        """The next epoch's row order."""
        if self.order is None:
            done, self.done = self.done, 0
            self.rng = _copy_random_state(self.start)
            self.order = np.arange(self.n) if self.base is None else self.base.copy()
            for _ in range(done):
                self.next()
        perm = np.arange(self.n)
        self.rng.shuffle(perm)
        self.order = self.order[perm]
        self.done += 1
        return self.order


class ResidentFeed:
    """The whole training set on the device; batches by index."""

    def __init__(self, X, y, w, *, batch_size, device, dtype, target_dtype):
        self.X = as_tensor(X, device, dtype)
        self.y = as_tensor(y, device, target_dtype)
        self.w = as_tensor(w, device, dtype)
        self.n_samples = self.X.shape[0]
        self.batch_size = batch_size
        self._block_buffers: tuple | None = None

    def _take(self, idx) -> Batch:
        return take_rows(self.X, self.y, self.w, idx)

    def _gather(self, idx: torch.Tensor, block: int) -> Batch:
        """Rows ``idx`` into buffers kept for the next block and epoch.

        A fresh multi-megabyte tensor per block costs a page fault per 4 KiB
        on first touch (3.6 ms for 4 MiB, measured, against 0.2 ms for the
        gather itself). The batches of one block are consumed before the
        next block overwrites them.
        """
        bufs = self._block_buffers
        if bufs is None or bufs[0].shape[0] < block:
            # Ordinary tensors even inside the training loop's inference
            # mode: another group of members may train outside it.
            with torch.inference_mode(False):
                bufs = tuple(
                    None if t is None else t.new_empty((block, *t.shape[1:]))
                    for t in (self.X, self.y, self.w)
                )
            self._block_buffers = bufs
        n = idx.shape[0]
        return tuple(
            None if t is None else torch.index_select(t, 0, idx, out=buf[:n])
            for t, buf in zip((self.X, self.y, self.w), bufs, strict=True)
        )

    def batches(
        self, generator: torch.Generator, shuffle: bool, order: EpochOrder | None = None
    ) -> Iterator[Batch]:
        """One epoch of mini-batches, shuffled by ``order`` or else ``generator``.

        Shuffled batches are views of a block buffer the feed reuses: each is
        valid until the next one is drawn past its block (copy to keep one).
        """
        n, bs = self.n_samples, self.batch_size
        if not shuffle:
            for s in range(0, n, bs):
                yield self._take(slice(s, s + bs))
            return
        if order is None:
            perm = torch.randperm(n, generator=generator).to(self.X.device)
        else:
            perm = torch.from_numpy(order.next()).to(self.X.device)
        row_bytes = max(1, self.X.shape[1] * self.X.element_size())
        block = max(bs, _GATHER_BYTES // row_bytes // bs * bs)
        for s in range(0, n, block):
            x, y, w = self._gather(perm[s : s + block], block)
            for b in range(0, x.shape[0], bs):
                yield take_rows(x, y, w, slice(b, b + bs))

    # What chunks() yields: the whole set at once.
    n_chunks = 1

    def chunks(self) -> Iterator[Batch]:
        """The whole set in order, as one chunk (full-batch solvers)."""
        yield self._take(slice(0, self.n_samples))


class StreamFeed:
    """Rows stay on the host; one chunk at a time travels to the device.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Anything sliceable by rows (``X[a:b]``): ndarray, memory-mapped array,
        scipy sparse matrix.
    y, w : ndarray
        Targets and optional sample weights, held on the device whole.
    batch_size : int
        Rows per mini-batch.
    device, dtype, target_dtype : torch.device, torch.dtype
        Where the chunks go, and as what.
    chunk_rows : int
        Rows per chunk, rounded down to a whole number of batches.
    prefetch : bool, default=None
        Read the next chunk in a background thread while the current one
        trains. None (the default) does so when training on an accelerator,
        whose host cores are otherwise idle; on the CPU the reader would
        compete with training for the same cores, so the kernel is only asked
        to read the next chunk of a memory-mapped file ahead.
    """

    def __init__(
        self,
        X,
        y,
        w,
        *,
        batch_size,
        device,
        dtype,
        target_dtype,
        chunk_rows,
        prefetch=None,
    ):
        self.X = X
        self.y = as_tensor(y, device, target_dtype)
        self.w = as_tensor(w, device, dtype)
        self.n_samples = X.shape[0]
        self.batch_size = batch_size
        # Whole batches per chunk, so that chunk boundaries never split a batch.
        self.chunk_rows = max(batch_size, chunk_rows // batch_size * batch_size)
        self.device, self.dtype = device, dtype
        self.prefetch = device.type != "cpu" if prefetch is None else prefetch

    def _read(self, s: int) -> np.ndarray:
        e = min(s + self.chunk_rows, self.n_samples)
        return _host_block(self.X, s, e, self.dtype)

    def _chunk(self, s: int, block: np.ndarray) -> Batch:
        e = s + block.shape[0]
        x = _to_device(block, self.device, self.dtype)
        w = None if self.w is None else self.w[s:e]
        return x, self.y[s:e], w

    def _stream(self, starts: list[int]) -> Iterator[Batch]:
        if not self.prefetch:
            for i, s in enumerate(starts):
                block = self._read(s)
                if i + 1 < len(starts):
                    nxt = starts[i + 1]
                    _will_read_rows(
                        self.X, nxt, min(nxt + self.chunk_rows, self.n_samples)
                    )
                yield self._chunk(s, block)
            return
        for s, block in _prefetched(self._read, starts):
            yield self._chunk(s, block)

    @property
    def n_chunks(self) -> int:
        """How many chunks :meth:`chunks` yields."""
        return -(-self.n_samples // self.chunk_rows)

    def chunks(self) -> Iterator[Batch]:
        """The whole set in order, one chunk at a time."""
        yield from self._stream(list(range(0, self.n_samples, self.chunk_rows)))

    def batches(
        self, generator: torch.Generator, shuffle: bool, order: EpochOrder | None = None
    ) -> Iterator[Batch]:
        """One epoch: chunks in (shuffled) order, rows shuffled within each.

        ``order`` is ignored: streamed rows shuffle chunk then row, from
        ``generator``.
        """
        starts = torch.arange(0, self.n_samples, self.chunk_rows)
        if shuffle:
            starts = starts[torch.randperm(len(starts), generator=generator)]
        bs = self.batch_size
        for x, y, w in self._stream(starts.tolist()):
            m = x.shape[0]
            order = (
                torch.randperm(m, generator=generator).to(x.device) if shuffle else None
            )
            for b in range(0, m, bs):
                idx = slice(b, b + bs) if order is None else order[b : b + bs]
                yield take_rows(x, y, w, idx)


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

    In-memory arrays within the budget become a :class:`ResidentFeed`, and so
    do sparse matrices whose dense form is under 256 MiB (and the budget).
    Memory-mapped arrays (even when they would fit), larger sparse matrices
    and anything larger than the budget are streamed by a :class:`StreamFeed` in
    chunks of at most ``min(budget_bytes, 64 MiB)``.

    Parameters
    ----------
    X : Source or array-like of shape (n_samples, n_features)
        Anything sliceable by rows: ndarray, memmap, scipy sparse matrix,
        :class:`RowView`.
    y, sample_weight : ndarray
        Targets and optional weights; always held on the device.
    budget_bytes : float, optional
        Bytes the features may occupy on the device. Defaults to half the free
        accelerator memory, or unlimited for in-memory arrays on the CPU.
    """
    budget = (
        _sources.free_device_bytes(device) if budget_bytes is None else budget_bytes
    )
    itemsize = torch.empty((), dtype=dtype).element_size()
    row_bytes = max(1, X.shape[1] * itemsize)
    common = dict(
        batch_size=batch_size, device=device, dtype=dtype, target_dtype=target_dtype
    )
    source = as_source(X)
    X = source.X
    dense_bytes = X.shape[0] * row_bytes
    if source.resident and dense_bytes <= budget:
        return ResidentFeed(X, y, sample_weight, **common)
    if source.kind == SPARSE and dense_bytes <= min(budget, _SPARSE_RESIDENT_BYTES):
        # Densified once: streaming re-densifies a chunk per pass, which
        # costs L-BFGS (thousands of passes) far more than the memory.
        return ResidentFeed(X.toarray(), y, sample_weight, **common)
    chunk_bytes = min(budget, _sources._DEFAULT_CHUNK_BYTES)
    return StreamFeed(
        X, y, sample_weight, chunk_rows=int(chunk_bytes // row_bytes), **common
    )


def iter_row_blocks(X, rows: int, device: torch.device, dtype: torch.dtype):
    """Yield ``X`` as dense device tensors of at most ``rows`` rows (prediction)."""
    n = X.shape[0]
    for s in range(0, n, rows):
        yield rows_to_tensor(X, s, min(s + rows, n), device, dtype)


# ------------------------------------------------------------ stacked feeds


class SharedFeed:
    """Every member of the stack trains on the same batches of a row feed.

    The batch order is drawn from the first member's generator, so a single
    member (a plain ``fit``) sees exactly the row feed's batches.

    Parameters
    ----------
    feed : ResidentFeed or StreamFeed
        The rows, targets and weights.
    """

    def __init__(self, feed):
        self.feed = feed

    def n_rows(self, member) -> int:
        """Rows a member trains on per epoch."""
        return self.feed.n_samples

    def epoch(self, members) -> Iterator[tuple]:
        """One epoch of stacked batches (no per-member padding)."""
        first = members[0]
        k = len(members)
        st = first.state
        for x, y, w in self.feed.batches(
            st.generator, first.cfg.shuffle, st.epoch_order
        ):
            if k == 1:
                yield x[None], y[None], None if w is None else w[None], None
                continue
            xs = x.unsqueeze(0).expand(k, *x.shape)
            ys = y.unsqueeze(0).expand(k, *y.shape)
            ws = None if w is None else w.unsqueeze(0).expand(k, *w.shape)
            yield xs, ys, ws, None

    def member_feed(self, member):
        """The row feed a full-batch solver reads."""
        return self.feed


class StackFeed:
    """One resident ``X`` on the device; each member trains on its own rows.

    Members' ``rows`` index ``X``; their ``sample_weight`` (if any) align with
    ``rows``. Each epoch every member draws its own permutation from its own
    generator, as :class:`ResidentFeed` does, and members with fewer rows
    are padded with zero-weight rows once they run out.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        On the training device, in the training dtype.
    y : Tensor of shape (n_samples,) or (n_samples, n_outputs)
        Targets (class indices for the softmax log-loss).
    batch_size : int
        Rows per member per step.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.X, self.y, self.batch_size = X, y, batch_size

    def n_rows(self, member) -> int:
        """Rows a member trains on per epoch."""
        return int(member.rows.shape[0])

    def _order(self, members):
        device, dtype = self.X.device, self.X.dtype
        sizes = [int(m.rows.shape[0]) for m in members]
        width = max(sizes)
        rows = torch.zeros(len(members), width, dtype=torch.long, device=device)
        weights = torch.zeros(len(members), width, dtype=dtype, device=device)
        for k, m in enumerate(members):
            n = sizes[k]
            if not m.cfg.shuffle:
                perm = torch.arange(n)
            elif m.state.epoch_order is not None:
                perm = torch.from_numpy(m.state.epoch_order.next())
            else:
                perm = torch.randperm(n, generator=m.state.generator)
            perm = perm.to(device)
            rows[k, :n] = m.rows.to(device)[perm]
            weights[k, :n] = (
                1.0 if m.sample_weight is None else m.sample_weight.to(device)[perm]
            )
        uniform = len(set(sizes)) == 1 and all(m.sample_weight is None for m in members)
        return rows, (None if uniform else weights), torch.tensor(sizes, device=device)

    def epoch(self, members) -> Iterator[tuple]:
        """One epoch of stacked batches."""
        rows, weights, sizes = self._order(members)
        k, bs = len(members), self.batch_size
        for s in range(0, rows.shape[1], bs):
            idx = rows[:, s : s + bs]
            b = idx.shape[1]
            flat = idx.reshape(-1)
            x = self.X.index_select(0, flat).view(k, b, -1)
            y = self.y.index_select(0, flat).view(k, b, *self.y.shape[1:])
            if weights is None:
                yield x, y, None, None
                continue
            counts = (sizes - s).clamp(0, b)
            yield x, y, weights[:, s : s + bs], counts

    def gather_padded(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Rows ``parts[k]`` of ``X`` for each member, ``(K, n_max, F)``."""
        width = max(p.shape[0] for p in parts)
        idx = torch.zeros(len(parts), width, dtype=torch.long, device=self.X.device)
        for k, p in enumerate(parts):
            idx[k, : p.shape[0]] = p.to(self.X.device)
        return self.X.index_select(0, idx.reshape(-1)).view(len(parts), width, -1)

    def member_feed(self, member):
        """A resident row feed of one member's rows (full-batch solvers)."""
        rows = member.rows.to(self.X.device)
        w = member.sample_weight
        feed = ResidentFeed.__new__(ResidentFeed)
        feed.X = self.X.index_select(0, rows)
        feed.y = self.y.index_select(0, rows)
        feed.w = None if w is None else w.to(self.X)
        feed.n_samples, feed.batch_size = feed.X.shape[0], self.batch_size
        feed._block_buffers = None
        return feed
