"""Where training data lives, and how its rows reach the device.

Memory-mapped input
-------------------
A ``np.memmap`` (or ``np.load(..., mmap_mode="r")``) keeps its pages on disk.
scikit-learn's validation turns it into a plain ``ndarray`` *view* of the same
mapping; :func:`is_memory_mapped` recognises both. After a chunk is copied to
the device its pages are handed back to the kernel (``madvise(MADV_DONTNEED)``
on shared mappings), so the process's resident memory does not grow with the
file: the pages stay in the page cache, which the kernel reclaims at will.
While training on one chunk the kernel is asked to read the next one ahead
(``MADV_WILLNEED``); when training on a GPU a background thread copies it.

This module never imports scikit-learn.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

# Largest share of free accelerator memory the training data may take.
_DEVICE_MEMORY_SHARE = 0.5
# Rows streamed at a time when no budget says otherwise: about 64 MiB of float32
# for 256 features.
_DEFAULT_CHUNK_BYTES = 64 * 2**20
# np.memmap modes whose mapping is shared with the file: dropping their pages
# loses nothing. Copy-on-write ("c") mappings hold private edits and are left be.
_SHARED_MODES = frozenset({"r", "r+", "w+"})
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


# ------------------------------------------------------------ memory mapping


def _memmap_of(X) -> np.memmap | None:
    """The ``np.memmap`` that ``X`` is (or is a view of), if any."""
    a = X
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap):
            return a
        a = a.base
    return None


def _mmap_of(X) -> mmap.mmap | None:
    """The ``mmap.mmap`` buffer underneath ``X``, if any."""
    a = X
    while isinstance(a, np.ndarray):
        a = a.base
    return a if isinstance(a, mmap.mmap) else None


def is_memory_mapped(X) -> bool:
    """Whether ``X`` is an ndarray whose memory is a mapped file.

    True for ``np.memmap`` objects, for arrays from
    ``np.load(path, mmap_mode=...)``, and for plain ``ndarray`` views of them
    such as the one ``sklearn.utils.check_array`` returns.

    Parameters
    ----------
    X : object
        Anything.

    Returns
    -------
    bool
    """
    return isinstance(X, np.ndarray) and _mmap_of(X) is not None


def is_in_memory(X) -> bool:
    """Dense arrays fully in RAM (not memory-mapped, not sparse)."""
    return isinstance(X, np.ndarray) and not is_memory_mapped(X)


def _rows_contiguous(X) -> bool:
    """Each row is one run of bytes (C order, or rows of a C-ordered array)."""
    return (
        X.ndim == 2
        and X.strides[1] == X.itemsize
        and X.strides[0] >= X.shape[1] * X.itemsize
    )


def _advise_rows(X, start: int, stop: int, advice: int) -> None:
    """``madvise`` the pages holding rows ``start:stop`` of a mapped ``X``."""
    owner, buf = _memmap_of(X), _mmap_of(X)
    if owner is None or buf is None or buf.closed or not _rows_contiguous(X):
        return
    if len(buf) == 0:
        return
    base = np.frombuffer(buf, dtype=np.uint8, count=1).ctypes.data
    row_nbytes = X.shape[1] * X.itemsize
    first = X.ctypes.data + start * X.strides[0] - base
    last = X.ctypes.data + (stop - 1) * X.strides[0] + row_nbytes - base
    page = mmap.PAGESIZE
    lo = max(0, first // page * page)
    hi = min(len(buf), -(-last // page) * page)
    if hi > lo:
        try:
            buf.madvise(advice, lo, hi - lo)
        except (OSError, ValueError):  # advice only: a closed map, an odd kernel
            pass


def release_rows(X, start: int, stop: int) -> None:
    """Hand the pages of rows ``start:stop`` of a memory-mapped ``X`` back.

    The pages leave the process's resident set and stay in the page cache; a
    later read maps them again. A no-op for arrays that are not memory-mapped,
    for copy-on-write mappings and on platforms without ``madvise``.

    Parameters
    ----------
    X : ndarray
        The (possibly memory-mapped) array.
    start, stop : int
        Row range that was just read.
    """
    owner = _memmap_of(X)
    if stop <= start or not hasattr(mmap, "MADV_DONTNEED") or owner is None:
        return
    if owner.mode in _SHARED_MODES:
        _advise_rows(X, start, stop, mmap.MADV_DONTNEED)


def _will_read_rows(X, start: int, stop: int) -> None:
    """Ask the kernel to read rows ``start:stop`` ahead, in large requests."""
    if stop > start and hasattr(mmap, "MADV_WILLNEED"):
        _advise_rows(X, start, stop, mmap.MADV_WILLNEED)


def iter_host_blocks(X, rows: int) -> Iterator[np.ndarray]:
    """Yield ``X`` in blocks of at most ``rows`` rows, as host arrays.

    For a memory-mapped ``X`` the blocks are views of the mapping and each
    block's pages are released once the consumer asks for the next one, so a
    full pass (say, a check for NaN) keeps resident memory at one block.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Anything sliceable by rows.
    rows : int
        Rows per block.

    Yields
    ------
    block : ndarray or sparse matrix
        ``X[start:start + rows]``.
    """
    n = X.shape[0]
    rows = max(1, int(rows))
    for s in range(0, n, rows):
        e = min(s + rows, n)
        yield X[s:e]
        release_rows(X, s, e)


def stream_rows(X) -> int:
    """Rows of ``X`` read at a time when streaming it (about 64 MiB)."""
    return rows_for_bytes(X, _DEFAULT_CHUNK_BYTES)


def rows_for_bytes(X, nbytes: float) -> int:
    """How many rows of ``X`` fit in ``nbytes`` (at least one)."""
    itemsize = getattr(getattr(X, "dtype", None), "itemsize", 8)
    return max(1, int(nbytes // max(1, X.shape[1] * itemsize)))


# --------------------------------------------------------- lazy row sources


def is_row_source(X) -> bool:
    """Whether ``X`` is a 2-D numeric array-like read lazily by row slices.

    True for array-likes that hold no memory buffer of their own, such as an
    ``h5py.Dataset``, a ``zarr.Array`` or a Dask array: they are streamed from
    where they live instead of being read whole. NumPy arrays, sparse matrices,
    tensors and anything exposing a memory buffer are not row sources.

    Parameters
    ----------
    X : object
        Anything.

    Returns
    -------
    bool
    """
    if isinstance(X, np.ndarray | torch.Tensor) or sp.issparse(X):
        return False
    if any(
        hasattr(X, attr)
        for attr in ("__array_interface__", "__cuda_array_interface__", "__dlpack__")
    ):
        return False
    shape, dtype = getattr(X, "shape", None), getattr(X, "dtype", None)
    if shape is None or dtype is None or not hasattr(X, "__getitem__"):
        return False
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        return False
    return (
        len(shape) == 2
        and all(isinstance(n, int | np.integer) for n in shape)
        and kind in "biuf"
    )


class RowView:
    """Rows of a row-sliceable source, all of them or a sorted subset.

    It reads ``source[a:b]`` (one contiguous span per request) and returns a
    private, writable NumPy array of ``dtype``, so the feeds treat it like any
    other array sliced by rows while the data stays where it is: in a file, a
    memory map, a remote store.

    Parameters
    ----------
    source : array-like of shape (n_rows, n_features)
        Anything whose row slices ``source[a:b]`` convert to NumPy arrays: a
        memory-mapped array, an ``h5py.Dataset``, a ``zarr.Array``.
    index : array-like of int, default=None
        Increasing row numbers of ``source`` this view holds; all rows if None.
    dtype : dtype, default=None
        Dtype of the arrays returned; the source's if None.
    """

    ndim = 2

    def __init__(self, source, index=None, dtype=None):
        self.source = source
        self.index = None if index is None else np.asarray(index, dtype=np.intp)
        n = source.shape[0] if self.index is None else self.index.shape[0]
        self.shape = (int(n), int(source.shape[1]))
        self.dtype = np.dtype(source.dtype if dtype is None else dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("RowView supports contiguous row slices only")
        start, stop, _ = key.indices(self.shape[0])
        if stop <= start:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        if self.index is None:
            return self._span(start, stop)
        return self._gather(self.index[start:stop])

    def _span(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the source, as a private array."""
        if is_memory_mapped(self.source):
            _will_read_rows(self.source, start, stop)
            block = np.array(self.source[start:stop], self.dtype, order="C", copy=True)
            release_rows(self.source, start, stop)
            return block
        block = np.asarray(self.source[start:stop])
        # Stores (HDF5, zarr) hand back fresh arrays; an ndarray gives a view.
        if isinstance(self.source, np.ndarray):
            return np.array(block, self.dtype, order="C", copy=True)
        return np.asarray(block, self.dtype, order="C")

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (increasing) of the source, as a private array.

        They are read in runs spanning at most ``len(rows)`` source rows: a
        sparse subset (say the 10% held out for validation) then never maps or
        reads much more than the rows it returns.
        """
        out = np.empty((rows.shape[0], self.shape[1]), dtype=self.dtype)
        mapped = is_memory_mapped(self.source)
        i, n = 0, rows.shape[0]
        while i < n:
            lo = int(rows[i])
            j = max(i + 1, int(np.searchsorted(rows, lo + n, side="left")))
            hi = int(rows[j - 1]) + 1
            if mapped:
                # A gather touches only the pages of the wanted rows.
                _will_read_rows(self.source, lo, hi)
                out[i:j] = np.take(self.source, rows[i:j], axis=0)
                release_rows(self.source, lo, hi)
            else:
                out[i:j] = np.asarray(self.source[lo:hi])[rows[i:j] - lo]
            i = j
        return out

    def subset(self, index) -> RowView:
        """The view of rows ``index`` (increasing) of this view."""
        index = np.asarray(index, dtype=np.intp)
        rows = index if self.index is None else self.index[index]
        return RowView(self.source, rows, self.dtype)


# ------------------------------------------------------------------ tensors


def _host_block(X, start: int, stop: int, dtype: torch.dtype) -> np.ndarray:
    """Rows ``start:stop`` as a private, writable, C-ordered host array."""
    block = X[start:stop]
    if sp.issparse(block):
        block = block.toarray()
    np_dtype = _NUMPY_DTYPES.get(dtype)
    mapped = is_memory_mapped(X)
    if mapped:
        _will_read_rows(X, start, stop)
    if mapped or not block.flags.writeable:
        # One pass: read the pages, convert the dtype, own the result.
        block = np.array(block, dtype=np_dtype, order="C", copy=True)
    else:
        block = np.ascontiguousarray(block, dtype=np_dtype)
    if mapped:
        release_rows(X, start, stop)
    return block


def rows_to_tensor(
    X, start: int, stop: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Rows ``start:stop`` of any row-sliceable array as a dense device tensor."""
    return _to_device(_host_block(X, start, stop, dtype), device, dtype)


def _to_device(block: np.ndarray, device: torch.device, dtype: torch.dtype):
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


# ------------------------------------------------------------ the protocol

# The kinds of X, decided in one place (:func:`source_kind`).
DENSE, SPARSE, MAPPED, LAZY = "dense", "sparse", "mapped", "lazy"


def source_kind(X) -> str:
    """Which kind of source ``X`` is: dense, sparse, mapped or lazy.

    * ``"sparse"``: a SciPy sparse matrix (streamed, densified per chunk);
    * ``"lazy"``: a row source without a memory buffer (``h5py``, ``zarr``,
      Dask, a :class:`RowView`), read by row slices where it lives;
    * ``"mapped"``: a memory-mapped array (or a view of one), read in place;
    * ``"dense"``: anything else array-like, held in memory.
    """
    if sp.issparse(X):
        return SPARSE
    if isinstance(X, RowView) or is_row_source(X):
        return LAZY
    if is_memory_mapped(X):
        return MAPPED
    return DENSE


class Source:
    """A validated ``X`` and how its rows are read: the one input protocol.

    Every consumer (the training feeds, the early-stopping split, validation,
    stacking) asks a source instead of testing the array's type.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Validated rows: an ndarray, a sparse matrix, a memory-mapped array or
        a :class:`RowView`.
    """

    def __init__(self, X):
        self.X = X
        self.kind = source_kind(X)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_samples, n_features)``."""
        return self.X.shape

    @property
    def streams(self) -> bool:
        """Whether rows are read from where they live (never copied whole)."""
        return self.kind in (MAPPED, LAZY)

    @property
    def resident(self) -> bool:
        """Whether the rows are a dense array in memory."""
        return self.kind == DENSE

    def take(self, index: np.ndarray) -> Source:
        """Rows ``index``: a sorted view for streamed data, else a copy.

        Streamed data keeps file order (reads stay sequential), so the rows
        come back sorted; in memory they keep the order of ``index``.
        """
        if self.streams:
            view = self.X if isinstance(self.X, RowView) else RowView(self.X)
            return Source(view.subset(np.sort(index)))
        return Source(self.X[index])

    def stream_rows(self) -> int:
        """Rows read at a time when streaming (about 64 MiB)."""
        return stream_rows(self.X)


def as_source(X) -> Source:
    """``X`` as a :class:`Source` (a source is returned as it is)."""
    return X if isinstance(X, Source) else Source(X)
