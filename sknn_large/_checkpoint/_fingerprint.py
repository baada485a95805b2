"""The fingerprint of a fit: its parameters and every value of its data."""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch

from .._data import iter_host_blocks
from ._file import _put

# Parameters a checkpoint may be resumed across: they do not change the steps.
FREE_PARAMS = frozenset(
    {
        "verbose",
        "max_iter",
        "checkpoint",
        "checkpoint_every",
        "warm_start",
        "cuda_graphs",  # replays the same steps: resuming either way is exact
    }
)
# fingerprint() reads X in chunks of about 16 MiB (bounded memory for lazy
# sources) and hashes each 1 MiB run of rows on its own, several at once on a
# thread pool when the data are large (hashlib releases the GIL); the runs'
# digests, in order, make the fingerprint, whatever the number of threads.
_HASH_BLOCK_BYTES = 16 * 2**20
_DIGEST_BLOCK_BYTES = 2**20
_PARALLEL_BYTES = 32 * 2**20
_MAX_HASH_THREADS = 8


def fingerprint(params: dict, X, y, sample_weight, classes, validation=None) -> str:
    """What must match for a checkpoint to resume a fit: parameters and data.

    The parameters that do not change the training steps (:data:`FREE_PARAMS`:
    ``verbose``, ``max_iter``, ``checkpoint``, ...) are left out; every other
    parameter, and every value of ``X``, ``y``, ``sample_weight`` and
    ``classes``, goes into one SHA-256 digest. ``X`` is read a block of rows
    at a time (about 16 MiB), so a memory-mapped or lazy source is streamed,
    never loaded whole; hashing runs at about 1-2 GB/s on one core, less than
    one epoch's reading and arithmetic over the same data.

    Parameters
    ----------
    params : dict
        The estimator's ``get_params()``, taken before fitting draws from a
        ``random_state`` that is a RandomState (its state is hashed).
    X : ndarray, sparse matrix or row source of shape (n_samples, n_features)
        The validated training inputs: a NumPy array (memory-mapped or not), a
        SciPy sparse matrix, or any object with ``shape`` whose row slices
        ``X[a:b]`` convert to NumPy arrays.
    y : ndarray
        The validated (encoded) targets.
    sample_weight : ndarray or None
        The sample weights training uses (class weights included), or None.
    classes : array-like or None
        The classifier's classes, or None for a regressor.
    validation : tuple or None, default=None
        The validated validation set ``(X_val, y_val, sample_weight_val)``
        passed to ``fit``, hashed like the training data; None (no set) adds
        nothing, so fits without one keep their fingerprints.

    Returns
    -------
    str
        A hex digest; equal fingerprints mean the same parameters and data.
    """
    h = hashlib.sha256()
    _put(h, b"sknn_large fingerprint 2")
    kept = {k: v for k, v in params.items() if k not in FREE_PARAMS}
    _put(h, _canonical(kept).encode())
    inputs = (
        ("X", X),
        ("y", y),
        ("sample_weight", sample_weight),
        ("classes", None if classes is None else np.asarray(classes)),
    )
    if validation is not None:
        names = ("X_val", "y_val", "sample_weight_val")
        inputs += tuple(zip(names, validation, strict=True))
    threads = min(_MAX_HASH_THREADS, os.cpu_count() or 1)
    pool = None
    if threads > 1 and _nbytes(X) >= _PARALLEL_BYTES:
        pool = ThreadPoolExecutor(threads, thread_name_prefix="sknn-fingerprint")
    try:
        for label, values in inputs:
            _put(h, label.encode())
            _hash_values(h, values, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    return h.hexdigest()


def _nbytes(X) -> int:
    if X is None or sp.issparse(X) or not hasattr(X, "shape"):
        return 0
    itemsize = getattr(getattr(X, "dtype", None), "itemsize", 8)
    return math.prod(int(n) for n in X.shape) * itemsize


def _canonical(value) -> str:
    """A text form of a parameter value that is the same in every process."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, np.generic):
        return _canonical(value.item())
    if isinstance(value, (list, tuple)):
        items = ",".join(_canonical(v) for v in value)
        return f"{type(value).__name__}[{items}]"
    if isinstance(value, dict):
        items = sorted(f"{_canonical(k)}={_canonical(v)}" for k, v in value.items())
        return "dict{" + ",".join(items) + "}"
    if isinstance(value, np.ndarray):
        return f"ndarray:{value.dtype.str}:{_canonical(value.tolist())}"
    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, gauss = value.get_state()
        key_digest = hashlib.sha256(keys.tobytes()).hexdigest()
        return f"RandomState:{name}:{key_digest}:{pos}:{has_gauss}:{gauss!r}"
    if isinstance(value, torch.device):
        return f"device:{value}"
    if isinstance(value, os.PathLike):
        return f"path:{os.fspath(value)}"
    text = repr(value)
    # A default repr holds a memory address, different in every process.
    if " at 0x" in text:
        text = ""
    return f"{type(value).__module__}.{type(value).__qualname__}:{text}"


def _hash_values(h, values, pool=None) -> None:
    if values is None:
        _put(h, b"none")
        return
    if sp.issparse(values):
        _hash_sparse(h, values)
        return
    if not hasattr(values, "shape"):
        values = np.asarray(values)
    shape = tuple(int(n) for n in values.shape)
    dtype = getattr(values, "dtype", None)
    dtype = None if dtype is None else np.dtype(dtype)
    _put(h, f"dense:{shape}:{None if dtype is None else dtype.str}".encode())
    if len(shape) == 0:
        h.update(_run_digest(_as_block(values, dtype)))
        return
    row_bytes = math.prod(shape[1:]) * (8 if dtype is None else max(dtype.itemsize, 1))
    run = max(1, _DIGEST_BLOCK_BYTES // max(1, row_bytes))
    chunk = run * max(1, _HASH_BLOCK_BYTES // max(1, run * row_bytes))
    for block in iter_host_blocks(values, chunk):
        block = _as_block(block, dtype)
        runs = [block[i : i + run] for i in range(0, block.shape[0], run)]
        digests = pool.map(_run_digest, runs) if pool and len(runs) > 1 else None
        for digest in digests or map(_run_digest, runs):
            h.update(digest)


def _as_block(block, dtype) -> np.ndarray:
    block = np.asarray(block)
    if dtype is not None and block.dtype != dtype:
        block = block.astype(dtype)
    return block


def _run_digest(block: np.ndarray) -> bytes:
    """SHA-256 of one run of rows, by value whatever its memory layout."""
    if block.dtype.kind == "O":
        # Object arrays hold pointers; hash what they point to instead.
        return hashlib.sha256(repr(block.tolist()).encode()).digest()
    raw = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
    return hashlib.sha256(raw).digest()


def _hash_sparse(h, X) -> None:
    # One canonical form (CSR, sorted indices, no duplicates, int64 indices)
    # so that equal matrices give equal fingerprints however they were built.
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    _put(h, f"csr:{X.shape}:{X.dtype.str}:{X.nnz}".encode())
    rows = max(1, _HASH_BLOCK_BYTES // 8)
    for part, dtype in ((X.indptr, np.int64), (X.indices, np.int64), (X.data, None)):
        for start in range(0, part.shape[0], rows):
            block = part[start : start + rows]
            if dtype is not None:
                block = block.astype(dtype, copy=False)
            h.update(np.ascontiguousarray(block).view(np.uint8))
