"""Training checkpoints: atomic writes and exact resumption.

A checkpoint holds everything the next epoch depends on: the weights, the
optimizer's state, the shuffling and dropout generators, the stopping-rule
counters and curves, and the random state the fit started from (which fixes
the initial weights and the early-stopping split). It is written with
:func:`torch.save` to a temporary file in the same folder, flushed to disk and
moved over the old one with :func:`os.replace`, so a crash mid-write leaves the
previous checkpoint intact. It is read with ``torch.load(weights_only=True)``,
torch's restricted loader that only rebuilds tensors and plain containers.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from ._engine import TrainState
from ._io import atomic_write

FORMAT = 1


def write_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` to ``path`` so that readers see the old or new file only."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def read(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`write_atomic`, refusing other files."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable sknn_large checkpoint: {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not an sknn_large checkpoint.")
    return payload


def _cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


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
    """Rebuild the RandomState saved by :func:`rng_to_payload`."""
    rng = np.random.RandomState()
    keys = p["keys"].numpy().astype(np.uint32)
    rng.set_state((p["name"], keys, p["pos"], p["has_gauss"], p["gauss"]))
    return rng


_STATE_FIELDS = (
    "dropout_seed",
    "n_iter",
    "t",
    "loss",
    "loss_curve",
    "best_loss",
    "validation_scores",
    "best_validation_score",
    "no_improvement_count",
    "optimizer_state",
    "best_params",
)


def make_payload(
    module: torch.nn.Module,
    state: TrainState,
    *,
    fingerprint: str,
    rng_start: dict,
    global_rng: tuple[str, torch.Tensor],
) -> dict:
    """Everything needed to resume training after ``state.n_iter`` epochs."""
    fields = {name: _cpu(getattr(state, name)) for name in _STATE_FIELDS}
    fields["generator"] = state.generator.get_state()
    fields["dropout_rng"] = (global_rng[0], global_rng[1].cpu())
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "rng_start": rng_start,
        "module": _cpu(module.state_dict()),
        "state": fields,
    }


def restore_state(payload: dict, module: torch.nn.Module, state: TrainState) -> None:
    """Load a payload's weights into ``module`` and its counters into ``state``."""
    module.load_state_dict(payload["module"])
    saved = payload["state"]
    device = next(module.parameters()).device
    for name in _STATE_FIELDS:
        value = saved[name]
        if name == "best_params" and value is not None:
            value = [p.to(device) for p in value]
        setattr(state, name, value)
    state.generator.set_state(saved["generator"])
    state.dropout_rng = tuple(saved["dropout_rng"])
