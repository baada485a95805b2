"""Writing a checkpoint atomically, its digest, reading and resuming it."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
from pathlib import Path

import torch

from .._engine import TrainState
from .._io import (
    NotARegularFileError,
    atomic_write,
    open_regular,
    remove_stale_temporaries,
)
from ._validate import (
    _STATE_CHECKS,
    CheckpointError,
    _check_fits,
    _check_structure,
    _malformed,
)

FORMAT = 2


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


# The first bytes of a zip archive, which is what torch.save writes. A file
# without them would go to torch's legacy loader, whose pickle reads lengths
# from the file before it can fail: four damaged bytes made it allocate
# 67 MB for a 22 kB file (found by tests/test_safety_fuzz.py).
_ZIP_MAGIC = b"PK\x03\x04"


def _load(name: str):
    try:
        fd, _ = open_regular(name)
    except NotARegularFileError as exc:
        raise CheckpointError(str(exc)) from exc
    with os.fdopen(fd, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            raise CheckpointError(
                f"{name!r} is not a readable sknn_large checkpoint: it does not"
                " begin as torch.save's zip archive does."
            )
        f.seek(0)
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
        value = saved.get(field)  # None: a field older checkpoints lack
        if field == "best_params" and value is not None:
            value = [p.to(device) for p in value]
        setattr(state, field, value)
    state.generator.set_state(saved["generator"])
    rng = saved["dropout_rng"]
    state.dropout_rng = None if rng is None else tuple(rng)
