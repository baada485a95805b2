"""The checks of a checkpoint's contents, and random states as tensors."""

from __future__ import annotations

from collections import Counter
from numbers import Integral, Real

import numpy as np
import torch

_TOP_KEYS = frozenset(
    {"format", "sha256", "fingerprint", "rng_start", "module", "state"}
)
_RNG_DEVICES = ("cpu", "cuda", "mps")


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed: damaged, malformed, or another fit's.

    The message names the file. The file is left as it is; delete it (or
    choose another ``checkpoint`` path) to train afresh.
    """


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
    if not isinstance(state, dict) or not (
        _STATE_KEYS - _LATER_STATE_KEYS <= set(state) <= _STATE_KEYS
    ):
        got = sorted(state, key=str) if isinstance(state, dict) else type(state)
        raise _malformed(name, f"its training state has fields {got}")
    wrong = [k for k, check in _STATE_CHECKS.items() if not check(state.get(k))]
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
    "validation_loss_curve": _optional(_list_of(_is_real)),
    "best_validation_score": _optional(_is_real),
    "no_improvement_count": _is_count,
    "optimizer_state": _optional(lambda v: isinstance(v, dict)),
    "best_params": _optional(_list_of(_is_float_tensor)),
}
_STATE_KEYS = frozenset(_STATE_CHECKS) | {"generator", "dropout_rng"}
# Fields checkpoints written by earlier versions lack (restored as None).
_LATER_STATE_KEYS = frozenset({"validation_loss_curve"})
