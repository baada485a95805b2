"""Training checkpoints: atomic writes, integrity checks and exact resumption.

A checkpoint holds everything the next epoch depends on: the weights, the
optimizer's state, the shuffling and dropout generators, the stopping-rule
counters and curves, and the random state the fit started from (which fixes
the initial weights and the early-stopping split). It is written with
:func:`torch.save` to a temporary file in the same folder, flushed to disk and
moved over the old one with :func:`os.replace`, so a crash mid-write leaves the
previous checkpoint intact; a temporary left by a killed writer is removed by
the next write (see :mod:`sknn_large._io`).

It is read with ``torch.load(weights_only=True)``, torch's restricted loader
that only rebuilds tensors and plain containers, from regular files only. What
was read is then checked before anything is resumed:

- a SHA-256 digest over every value (each tensor's dtype, shape and bytes)
  finds damage: one flipped byte in a weight is enough to refuse the file;
- its structure and every field's type and size are checked, and the weights,
  best weights, optimizer moments and random number generator states must fit
  the network being trained;
- its fingerprint (see :func:`fingerprint`) must be that of this fit: the same
  parameters and the same data.

A checkpoint that fails any of these raises :class:`CheckpointError`, naming
the file; it is left in place, never resumed and never silently replaced.
Deleting it starts the fit afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ._data import iter_host_blocks
from ._engine import TrainState
from ._io import (
    NotARegularFileError,
    atomic_write,
    open_regular,
    remove_stale_temporaries,
)

FORMAT = 2
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
_TOP_KEYS = frozenset(
    {"format", "sha256", "fingerprint", "rng_start", "module", "state"}
)
_RNG_DEVICES = ("cpu", "cuda", "mps")
# fingerprint() reads X in chunks of about 16 MiB (bounded memory for lazy
# sources) and hashes each 1 MiB run of rows on its own, several at once on a
# thread pool when the data are large (hashlib releases the GIL); the runs'
# digests, in order, make the fingerprint, whatever the number of threads.
_HASH_BLOCK_BYTES = 16 * 2**20
_DIGEST_BLOCK_BYTES = 2**20
_PARALLEL_BYTES = 32 * 2**20
_MAX_HASH_THREADS = 8


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed: damaged, malformed, or another fit's.

    The message names the file. The file is left as it is; delete it (or
    choose another ``checkpoint`` path) to train afresh.
    """


# ------------------------------------------------------------------ writing


def write_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` with its digest, so readers see the old or new file only."""
    sealed = dict(payload)
    sealed.pop("sha256", None)
    sealed["sha256"] = digest(sealed)
    buffer = io.BytesIO()
    torch.save(sealed, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def make_payload(
    module: torch.nn.Module,
    state: TrainState,
    *,
    fingerprint: str,
    rng_start: dict,
    global_rng: tuple[str, torch.Tensor] | None,
) -> dict:
    """Everything needed to resume training after ``state.n_iter`` epochs."""
    fields = {name: _cpu(getattr(state, name)) for name in _STATE_CHECKS}
    fields["generator"] = state.generator.get_state()
    fields["dropout_rng"] = (
        None if global_rng is None else (global_rng[0], global_rng[1].cpu())
    )
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "rng_start": rng_start,
        "module": _cpu(module.state_dict()),
        "state": fields,
    }


def _cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


# ------------------------------------------------------------------ digest


def digest(payload) -> str:
    """SHA-256 over a payload's structure and values, tensors byte by byte.

    Parameters
    ----------
    payload : dict
        Nested dicts, lists and tuples of tensors, numbers, strings, None.

    Returns
    -------
    str
        The hex digest. Two payloads have the same digest only if they hold
        the same keys, container types, scalar values and tensors (dtype,
        shape and bytes).
    """
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


def _put(h, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        _put(h, f"tensor:{t.dtype}:{list(t.shape)}".encode())
        raw = t.reshape(-1).view(torch.uint8).numpy()
        h.update(raw.nbytes.to_bytes(8, "little"))
        h.update(raw)
    elif isinstance(obj, dict):
        _put(h, f"dict:{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        _put(h, f"{type(obj).__name__}:{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        _put(h, f"{type(obj).__name__}:{obj!r}".encode())
    else:
        raise TypeError(f"A checkpoint cannot hold a {type(obj).__name__}.")


# ------------------------------------------------------------------ reading


def read(path: str | os.PathLike) -> dict:
    """Load and check a checkpoint written by :func:`write_atomic`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    dict
        The payload, its digest verified and every field's type checked, with
        ``"path"`` added (the file it came from, for later error messages).

    Raises
    ------
    CheckpointError
        If the file is not a regular file, not a checkpoint, damaged (its
        digest does not match), from another sknn_large format, or malformed.
    OSError
        If it cannot be opened (missing, a folder, no permission).
    """
    name = os.fspath(path)
    payload = _load(name)
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(f"{name!r} is not an sknn_large checkpoint.")
    version = payload["format"]
    if version != FORMAT:
        raise CheckpointError(
            f"The checkpoint {name!r} is in format {version!r}, not the format"
            f" {FORMAT} this sknn_large reads (it has no integrity check, or comes"
            " from another version): delete it to train afresh."
        )
    expected = payload.get("sha256")
    try:
        body = {k: v for k, v in payload.items() if k != "sha256"}
        actual = digest(body)
    except (TypeError, RecursionError) as exc:
        raise _malformed(name, f"it holds an unexpected value ({exc})") from exc
    if not isinstance(expected, str) or not hmac.compare_digest(
        actual.encode(), expected.encode()
    ):
        raise CheckpointError(
            f"The checkpoint {name!r} is damaged: its contents do not match their"
            " SHA-256 digest. It was not resumed; delete it to train afresh."
        )
    _check_structure(name, payload)
    return {**payload, "path": name}


def _load(name: str):
    try:
        fd, _ = open_regular(name)
    except NotARegularFileError as exc:
        raise CheckpointError(str(exc)) from exc
    with os.fdopen(fd, "rb") as f:
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise CheckpointError(
                f"{name!r} is not a readable sknn_large checkpoint: {exc}"
            ) from exc


def load_for_resume(path, fingerprint: str) -> dict | None:
    """The checkpoint at ``path`` if this fit may resume from it, else None.

    Parameters
    ----------
    path : str, os.PathLike or None
        The estimator's ``checkpoint`` parameter.
    fingerprint : str
        This fit's :func:`fingerprint`.

    Returns
    -------
    dict or None
        The checked payload (see :func:`read`); None if ``path`` is None or no
        checkpoint exists there. Temporaries left there by killed writers are
        removed either way.

    Raises
    ------
    CheckpointError
        If the checkpoint is damaged or malformed, or was written by a fit with
        other parameters or data.
    """
    if not path:
        return None
    remove_stale_temporaries(path)
    if not os.path.lexists(path):
        return None
    payload = read(path)
    if not hmac.compare_digest(payload["fingerprint"], fingerprint):
        raise CheckpointError(
            f"The checkpoint {os.fspath(path)!r} was written by a fit with other"
            " parameters or data; delete it or choose another path."
        )
    return payload


def _malformed(name: str, problem: str) -> CheckpointError:
    return CheckpointError(
        f"The checkpoint {name!r} is malformed: {problem}. It was not resumed;"
        " delete it to train afresh."
    )


def _check_structure(name: str, payload: dict) -> None:
    """Every field has the type and size :func:`make_payload` gives it."""
    keys = set(payload)
    if keys != _TOP_KEYS:
        missing, extra = sorted(_TOP_KEYS - keys), sorted(keys - _TOP_KEYS, key=str)
        raise _malformed(name, f"missing fields {missing}, unexpected fields {extra}")
    if not isinstance(payload["fingerprint"], str):
        raise _malformed(name, "its fingerprint is not a string")
    try:
        rng_from_payload(payload["rng_start"])
    except Exception as exc:
        raise _malformed(name, f"its starting random state is invalid ({exc})") from exc
    module = payload["module"]
    if not (
        isinstance(module, dict)
        and module
        and all(isinstance(k, str) and _is_float_tensor(v) for k, v in module.items())
    ):
        raise _malformed(name, "its weights are not a mapping of names to tensors")
    state = payload["state"]
    if not isinstance(state, dict) or set(state) != _STATE_KEYS:
        got = sorted(state, key=str) if isinstance(state, dict) else type(state)
        raise _malformed(name, f"its training state has fields {got}")
    wrong = [k for k, check in _STATE_CHECKS.items() if not check(state[k])]
    if wrong:
        raise _malformed(name, f"its training state fields {wrong} are invalid")
    for field in ("generator", "dropout_rng"):
        problem = _rng_problem(state[field], field == "generator")
        if problem:
            raise _malformed(name, f"its {field} state {problem}")


def _rng_problem(value, plain: bool) -> str | None:
    """Why ``value`` is not a valid generator state, or None."""
    if value is None and not plain:
        return None
    if not plain:
        if not (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and value[0] in _RNG_DEVICES
        ):
            return "is not a (device, state) pair"
        device, value = value
    else:
        device = "cpu"
    if not (
        isinstance(value, torch.Tensor)
        and value.dtype == torch.uint8
        and value.ndim == 1
    ):
        return "is not a byte tensor"
    if device == "cpu":
        try:
            torch.Generator().set_state(value)
        except Exception as exc:  # torch checks the size and contents
            return f"is invalid ({exc})"
    elif value.numel() == 0:
        return "is empty"
    return None


# ------------------------------------------------------------------ restoring


def restore_state(payload: dict, module: torch.nn.Module, state: TrainState) -> None:
    """Load a payload's weights into ``module`` and its counters into ``state``.

    Parameters
    ----------
    payload : dict
        A payload returned by :func:`read` (or :func:`load_for_resume`).
    module : torch.nn.Module
        The freshly built network of this fit; its architecture is the one
        the checkpoint must fit.
    state : TrainState
        The training state to overwrite.

    Raises
    ------
    CheckpointError
        Naming the file, if the weights, best weights or optimizer moments do
        not fit ``module``. Nothing is changed in that case.
    """
    name = payload.get("path", "<checkpoint>")
    saved = payload["state"]
    _check_fits(name, payload["module"], saved, module)
    module.load_state_dict(payload["module"])
    device = next(module.parameters()).device
    for field in _STATE_CHECKS:
        value = saved[field]
        if field == "best_params" and value is not None:
            value = [p.to(device) for p in value]
        setattr(state, field, value)
    state.generator.set_state(saved["generator"])
    rng = saved["dropout_rng"]
    state.dropout_rng = None if rng is None else tuple(rng)


def _check_fits(name: str, weights: dict, saved: dict, module: torch.nn.Module):
    expected = module.state_dict()
    if set(weights) != set(expected):
        raise _malformed(
            name,
            f"its weights {sorted(weights)} do not match this network's"
            f" {sorted(expected)}",
        )
    for key, ref in expected.items():
        got = weights[key]
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise _malformed(
                name,
                f"its weight {key!r} is {tuple(got.shape)} {got.dtype}; this"
                f" network's is {tuple(ref.shape)} {ref.dtype}",
            )
    shapes = [p.shape for p in module.parameters()]
    best = saved["best_params"]
    if best is not None and [b.shape for b in best] != shapes:
        raise _malformed(name, "its best weights do not fit this network")
    problem = _optimizer_problem(saved["optimizer_state"], shapes)
    if problem:
        raise _malformed(name, f"its optimizer state {problem}")


def _optimizer_problem(opt, shapes: list) -> str | None:
    """Why a torch optimizer ``state_dict`` cannot belong to this network."""
    if opt is None:
        return None
    groups, moments = opt.get("param_groups"), opt.get("state")
    if set(opt) != {"param_groups", "state"} or not isinstance(groups, list):
        return "is not an optimizer state_dict"
    if not isinstance(moments, dict):
        return "has no per-parameter state"
    ids = []
    for group in groups:
        if not (isinstance(group, dict) and isinstance(group.get("params"), list)):
            return "has a malformed parameter group"
        if not all(_is_int(i) for i in group["params"]):
            return "names parameters by something other than numbers"
        if not all(_is_setting(v) for k, v in group.items() if k != "params"):
            return "has a setting of an unexpected type"
        ids.extend(group["params"])
    if sorted(ids) != list(range(len(shapes))):
        return f"covers parameters {sorted(ids)}, not this network's {len(shapes)}"
    # Which id is which parameter is the engine's business; each id's moments
    # must share one shape, and those shapes must be the network's.
    found = []
    for key, values in moments.items():
        if key not in ids or not isinstance(values, dict):
            return "has moments for unknown parameters"
        sizes = set()
        for value in values.values():
            if isinstance(value, torch.Tensor):
                if not value.is_floating_point():
                    return "has a non-float moment"
                if value.ndim:
                    sizes.add(tuple(value.shape))
            elif not (value is None or _is_real(value)):
                return "has a moment of an unexpected type"
        if len(sizes) > 1:
            return "has moments of different shapes for one parameter"
        found.extend(sizes)
    if Counter(found) - Counter(tuple(s) for s in shapes):
        return "has moments whose shapes do not fit this network"
    return None


# ------------------------------------------------------------ random states


def rng_to_payload(rng: np.random.RandomState) -> dict:
    """A NumPy RandomState's exact state as tensors and numbers."""
    name, keys, pos, has_gauss, gauss = rng.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def rng_from_payload(p: dict) -> np.random.RandomState:
    """Rebuild the RandomState saved by :func:`rng_to_payload`.

    Raises
    ------
    ValueError
        If ``p`` is not such a state (wrong fields, types or sizes).
    """
    if not (
        isinstance(p, dict)
        and set(p) == {"name", "keys", "pos", "has_gauss", "gauss"}
        and p["name"] == "MT19937"
        and isinstance(p["keys"], torch.Tensor)
        and p["keys"].dtype == torch.int64
        and tuple(p["keys"].shape) == (624,)
        and _is_int(p["pos"])
        and 0 <= p["pos"] <= 624
        and p["has_gauss"] in (0, 1)
        and _is_real(p["gauss"])
    ):
        raise ValueError("not an MT19937 state of 624 keys")
    keys = p["keys"].numpy()
    if keys.min() < 0 or keys.max() >= 2**32:
        raise ValueError("its keys are not 32-bit")
    rng = np.random.RandomState()
    rng.set_state(
        ("MT19937", keys.astype(np.uint32), p["pos"], p["has_gauss"], p["gauss"])
    )
    return rng


# ------------------------------------------------------------ field checks


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _is_count(value) -> bool:
    return _is_int(value) and value >= 0


def _is_setting(value) -> bool:
    # What torch optimizers keep in a parameter group: numbers, flags, names.
    if value is None or isinstance(value, (bool, str)) or _is_real(value):
        return True
    if isinstance(value, torch.Tensor):  # a tensor learning rate
        return value.numel() == 1
    return isinstance(value, (tuple, list)) and all(_is_real(v) for v in value)


def _is_float_tensor(value) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _optional(check):
    return lambda value: value is None or check(value)


def _list_of(check):
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


# TrainState fields carried by a checkpoint, each with the check its value
# must pass (the RNG states are checked separately, by trying them).
_STATE_CHECKS = {
    "dropout_seed": _is_int,
    "n_iter": _is_count,
    "t": _is_count,
    "loss": _optional(_is_real),
    "loss_curve": _list_of(_is_real),
    "best_loss": _optional(_is_real),
    "validation_scores": _optional(_list_of(_is_real)),
    "best_validation_score": _optional(_is_real),
    "no_improvement_count": _is_count,
    "optimizer_state": _optional(lambda v: isinstance(v, dict)),
    "best_params": _optional(_list_of(_is_float_tensor)),
}
_STATE_KEYS = frozenset(_STATE_CHECKS) | {"generator", "dropout_rng"}


# ------------------------------------------------------------ fingerprint


def fingerprint(params: dict, X, y, sample_weight, classes) -> str:
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
