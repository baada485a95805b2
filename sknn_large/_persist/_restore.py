"""Rebuilding an estimator from a model file's checked contents."""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

from .._device import resolve_device
from ._codec import _ALLOCATION_FACTOR, _Budget, _Decoder, _Encoder
from ._composite import _ESTIMATORS, KINDS
from ._errors import ModelFileError, _as_dict, _corrupt
from ._format import _check_metadata, _parse, read_file
from ._schema import (
    _MACHINE_PARAMS,
    _PARAM_TAGS,
    Kind,
    Slot,
    _check_attribute_names,
    _decode_attribute,
)

# The tensors a record owns itself; any other name belongs to a member.
_OWN_TENSORS = ("module.", "state.")


def load(path, *, device="cpu"):
    """Load a model written by :func:`save`.

    Nothing in the file is unpickled or executed, so a file from an untrusted
    source cannot run code; loading allocates no more than a small multiple of
    the file's size, and the loaded model does not keep the ``checkpoint``
    path of the machine that saved it (it is None). The loaded estimator
    predicts exactly as the saved one did and can go on training
    (``partial_fit``, ``warm_start``).

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    device : str or torch.device, default='cpu'
        Where the network (every network of an ensemble) is placed for
        prediction: 'cpu', 'auto', 'cuda', 'cuda:N' or 'mps'. A model trained
        on a GPU loads on a CPU-only machine. Further training moves it to the
        estimator's ``device`` parameter.

    Returns
    -------
    estimator : estimator
        The fitted estimator: a :class:`~sknn_large.LargeMLPClassifier` or
        :class:`~sknn_large.LargeMLPRegressor`, one of their ensembles
        (:mod:`sknn_large.ensemble`), or a
        :class:`~sknn_large.TabularMLPClassifier` or
        :class:`~sknn_large.TabularMLPRegressor`, with all its members.

    Raises
    ------
    ModelFileError
        If the file is not an sknn_large model file, is truncated or corrupted,
        was modified after it was written, uses a newer format version, or is
        not a regular file (a FIFO, socket or device).
    OSError
        If the file cannot be read (missing, a folder, no permission).
    ValueError
        If ``device`` names an accelerator this machine does not have.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large import LargeMLPClassifier
    >>> from sknn_large._persist import load, save
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LargeMLPClassifier(max_iter=5, device="cpu", random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "iris.safetensors")
    >>> save(clf, path)
    >>> loaded = load(path)
    >>> bool((loaded.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    target = resolve_device(device)
    return from_bytes(read_file(path), device=target)


def from_bytes(data: bytes, *, device="cpu"):
    """Rebuild an estimator from the bytes of a model file (see :func:`load`)."""
    target = resolve_device(device)
    tensors, metadata = _parse(data)
    payload = _check_metadata(metadata, tensors)
    try:
        name = payload.get("estimator")
        if name not in _ESTIMATORS:
            raise ModelFileError(
                f"The model file names an unknown estimator {str(name)[:80]!r}."
            )
        budget = _Budget(_ALLOCATION_FACTOR * len(data))
        estimator = _rebuild(KINDS[name], payload, tensors, budget)
        _place(KINDS[name], estimator, target)
        _try_predict(estimator)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"The model file's contents are inconsistent: {type(exc).__name__}: {exc}"
        ) from exc
    return estimator


def _rebuild(
    kind: Kind, record: dict, tensors: dict[str, torch.Tensor], budget, where=""
):
    """The estimator a record describes, through ``__sknn_restore__``.

    A record is the payload of a file, or a member's entry in ``members``:
    the class's parameters, fitted attributes and, for a composite, its
    members' records. The fitted attributes are decoded and checked as a
    plain dict (schema, types, sizes, the members rebuilt and checked
    against the composite, a network against its weights), and only then
    handed to the estimator, which checks them against its parameters; its
    ValueError becomes a :class:`ModelFileError` in :func:`from_bytes`.
    ``tensors`` are the record's own and its members', named as in a file of
    its own (``where`` is the prefix they have in the file); ``budget`` is
    shared by every record of the file.
    """
    record = _as_dict(record, "a record")
    if record.get("estimator") != kind.cls.__name__:
        raise ModelFileError(
            f"The model file names {str(record.get('estimator'))[:80]!r} where"
            f" it must hold a {kind.cls.__name__}."
        )
    own = {k: v for k, v in tensors.items() if k.startswith(_OWN_TENSORS)}
    decode = _Decoder(own, budget)
    params = _as_dict(decode(record["params"], tags=_PARAM_TAGS), "params")
    # Paths of the machine that wrote the file are not this machine's to use.
    params.update((k, v) for k, v in _MACHINE_PARAMS.items() if k in params)
    estimator = kind.cls(**params)
    # Nothing is built from parameters that fail their constraints;
    # __sknn_restore__ checks them again, with the checks across parameters.
    estimator._validate_params()
    raw = _as_dict(record["attributes"], "attributes")
    _check_attribute_names(kind, raw)
    attributes = {
        name: _decode_attribute(decode, kind, name, raw[name]) for name in raw
    }
    members, claimed = _rebuild_members(kind, estimator, record, tensors, budget, where)
    attributes.update(members)
    kind.check(estimator, attributes, own)
    _adopt(estimator, attributes)
    unused = set(tensors) - claimed - decode.used
    if kind.network:
        unused -= {k for k in own if k.startswith("module.")}
    if unused:
        raise ModelFileError(
            "The model file has unexpected tensors:"
            f" {[where + k for k in sorted(unused)[:20]]}."
        )
    return estimator


def _rebuild_members(kind: Kind, est, record: dict, tensors, budget, where: str):
    """Each slot's members from their records, and the tensors they took."""
    if not kind.slots:
        if "members" in record:
            raise _corrupt(f"a {kind.cls.__name__} has no members.")
        return {}, set()
    raw = _as_dict(record.get("members"), "the members")
    if set(raw) != set(kind.slots):
        raise _corrupt(f"members {sorted(raw)[:10]}, not {sorted(kind.slots)}.")
    members, claimed = {}, set()
    for name, slot in kind.slots.items():
        entries, prefixes = _entries(name, slot, est, raw[name])
        rebuilt = []
        for entry, prefix in zip(entries, prefixes, strict=True):
            if entry is None:
                rebuilt.append(None)
                continue
            mine = {k: v for k, v in tensors.items() if k.startswith(prefix)}
            claimed |= set(mine)
            sub = {k[len(prefix) :]: v for k, v in mine.items()}
            member = _rebuild(
                KINDS[slot.cls.__name__], entry, sub, budget, where + prefix
            )
            _check_shared(est, member, slot)
            rebuilt.append(member)
        members[name] = rebuilt if slot.many else rebuilt[0]
    return members, claimed


def _entries(name: str, slot: Slot, est, value) -> tuple[list, list[str]]:
    """A slot's member records and the prefixes of their tensors."""
    if not slot.many:
        if value is None and not slot.optional:
            raise _corrupt(f"its {name} is missing.")
        return [value], [f"{name}."]
    if not isinstance(value, list) or len(value) != slot.count(est):
        n = len(value) if isinstance(value, list) else "no list of"
        raise ModelFileError(
            f"The model file holds {n} {name} where its parameters make"
            f" {slot.count(est)}."
        )
    return value, [f"{name}.{i}." for i in range(len(value))]


def _check_shared(est, member, slot: Slot) -> None:
    # A member is made with the composite's values of the parameters they
    # share by name (but those fit derives): compared in their JSON form.
    outer = est.get_params(deep=False)
    inner = member.get_params(deep=False)
    for name in (set(outer) & set(inner)) - slot.derived - set(_MACHINE_PARAMS):
        if _json(outer[name]) != _json(inner[name]):
            raise ModelFileError(
                f"The model file's {type(member).__name__} has {name}="
                f"{str(inner[name])[:40]}, but its {type(est).__name__} has"
                f" {str(outer[name])[:40]}."
            )


def _json(value) -> str:
    return json.dumps(_Encoder()(value))


def _adopt(estimator, attributes: dict) -> None:
    """Hand the checked state over through the model-file protocol."""
    restore = getattr(estimator, "__sknn_restore__", None)
    if restore is not None:
        restore(attributes)
    else:  # a class without one keeps its fitted state in its __dict__
        vars(estimator).update(attributes)


def _members(kind: Kind, estimator):
    for name, slot in kind.slots.items():
        value = getattr(estimator, name)
        for member in value if slot.many else [value]:
            if member is not None:
                yield KINDS[slot.cls.__name__], member


def _place(kind: Kind, estimator, device: torch.device) -> None:
    """Every network of the model onto ``device``."""
    if kind.network:
        estimator.module_.to(device)
    for sub_kind, member in _members(kind, estimator):
        _place(sub_kind, member, device)


def _try_predict(est) -> None:
    # The last check: the model answers one row before anyone else asks it to.
    # A network's coefs_ are in the dtype of the data fit saw, as predictions are.
    dtype = est.coefs_[0].dtype if hasattr(est, "coefs_") else np.float64
    X = np.zeros((1, est.n_features_in_), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # feature names: X here has none
        est.predict(X)
