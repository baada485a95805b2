"""Writing a model file from a fitted estimator's state."""

from __future__ import annotations

import json
import platform

import numpy as np
import safetensors
import sklearn
import torch
from sklearn.utils.validation import check_is_fitted

from .._io import atomic_write
from ._codec import _Encoder
from ._composite import _ESTIMATORS, KINDS
from ._format import pack
from ._schema import _MACHINE_PARAMS, Kind, Slot


def save(estimator, path) -> None:
    """Write a fitted estimator to ``path`` as a safe model file.

    The file is written to a temporary name in the same folder and renamed into
    place, so ``path`` holds either its previous content or the whole new file,
    never a part.

    Parameters
    ----------
    estimator : estimator
        A fitted :class:`~sknn_large.LargeMLPClassifier`,
        :class:`~sknn_large.LargeMLPRegressor`,
        :class:`~sknn_large.ensemble.LargeMLPEnsembleClassifier`,
        :class:`~sknn_large.ensemble.LargeMLPEnsembleRegressor`,
        :class:`~sknn_large.TabularMLPClassifier` or
        :class:`~sknn_large.TabularMLPRegressor` (not a subclass: pickle those).
    path : str or os.PathLike
        Where to write.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator has not been fitted.
    TypeError
        If it is not one of those classes, or a parameter or fitted attribute
        (a category of a table, say) holds a value that has no JSON form.
    """
    atomic_write(path, to_bytes(estimator))


def to_bytes(estimator) -> bytes:
    """The content of a model file for ``estimator``, as bytes."""
    name = type(estimator).__name__
    if _ESTIMATORS.get(name) is not type(estimator):
        raise TypeError(
            f"save supports {', '.join(_ESTIMATORS)}; got {name}."
            " Use pickle or joblib for other classes."
        )
    check_is_fitted(estimator)
    record, tensors = _record(KINDS[name], estimator)
    payload = json.dumps({"estimator": name, "versions": _versions(), **record})
    return pack(payload, tensors)


def _record(kind: Kind, estimator) -> tuple[dict, dict]:
    """An estimator's entry of a model file (all but its class), and tensors.

    Its parameters and the fitted attributes its kind lists; for a network,
    the ``module.*`` weights; for a composite, one such record per member,
    the member's tensors named under ``<attribute>.[<i>.]``.
    """
    encode = _Encoder()
    params = {
        k: _MACHINE_PARAMS.get(k, v)
        for k, v in estimator.get_params(deep=False).items()
    }
    # The model-file protocol: the estimator says what its fitted state is;
    # a class without one keeps it in its __dict__.
    sknn_state = getattr(estimator, "__sknn_state__", None)
    state = sknn_state() if sknn_state is not None else dict(vars(estimator))
    _check_known(kind, estimator, set(state) - set(params))
    attributes = {k: v for k, v in state.items() if k not in params and k in kind.forms}
    record = {"params": encode(params), "attributes": encode(attributes)}
    tensors = {}
    if kind.network:
        tensors.update(
            (f"module.{k}", v.detach().cpu().contiguous())
            for k, v in state["module_"].state_dict().items()
        )
    tensors.update(encode.tensors)
    if kind.slots:
        record["members"] = {}
        for name, slot in kind.slots.items():
            record["members"][name] = _slot_records(name, slot, state[name], tensors)
    return record, tensors


def _check_known(kind: Kind, estimator, names: set[str]) -> None:
    # A fitted attribute the schema does not know would be lost on the way:
    # refuse to write a file whose model could not predict after loading.
    # (scikit-learn's metadata-routing requests are settings, not fitted
    # state, and are not stored, as before.)
    known = set(kind.forms) | set(kind.slots) | kind.derived | {"_metadata_request"}
    unknown = sorted(
        n
        for n in names - known
        if n.endswith("_") or (n.startswith("_") and not n.startswith("__"))
    )
    if unknown:
        raise TypeError(
            f"A model file does not know the fitted attributes {unknown} of"
            f" {type(estimator).__name__}: use pickle or joblib for it."
        )


def _slot_records(name: str, slot: Slot, value, tensors: dict):
    """The records of one slot's members; their tensors go into ``tensors``."""
    values = value if slot.many else [value]
    if slot.many and not isinstance(value, list):
        raise TypeError(f"{name} is not a list of estimators.")
    records = []
    for i, member in enumerate(values):
        if member is None and slot.optional:
            records.append(None)
            continue
        if type(member) is not slot.cls:
            raise TypeError(
                f"{name} holds a {type(member).__name__}, not a {slot.cls.__name__}."
            )
        check_is_fitted(member)
        record, own = _record(KINDS[slot.cls.__name__], member)
        records.append({"estimator": slot.cls.__name__, **record})
        prefix = f"{name}.{i}." if slot.many else f"{name}."
        tensors.update((prefix + k, v) for k, v in own.items())
    return records if slot.many else records[0]


def _versions() -> dict[str, str]:
    from .._version import __version__

    return {
        "sknn_large": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }
