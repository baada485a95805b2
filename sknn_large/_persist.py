"""Model files that are safe to share: weights in safetensors, the rest in JSON.

A model file is one `safetensors <https://github.com/huggingface/safetensors>`_
file, readable by any safetensors tool. Its tensors are the network's weights
(``module.*``) and the training state (``state.*``: optimizer moments, random
number generator states, best weights), so a loaded model predicts exactly as
the saved one did and ``partial_fit`` / ``warm_start`` carry on where it
stopped. Its ``__metadata__`` holds four strings:

``format``
    Always ``"sknn_large"``.
``format_version``
    An integer; a file newer than this library reads is refused, not guessed at.
``payload``
    JSON: the estimator's class, its parameters, its fitted attributes and the
    versions of the libraries that wrote it.
``sha256``
    A digest of the payload and of every tensor's name, dtype, shape and bytes,
    so that a flipped or cut byte is found before anything is rebuilt.

Loading parses the file with the safetensors library and JSON only. Nothing in
a file is unpickled, imported or executed: the JSON decoder rebuilds a fixed
list of plain types, the estimator class comes from a fixed registry, and the
network is rebuilt by the library's own builder and checked, tensor by tensor,
against the weights found. Every problem with a file's contents raises
:class:`ModelFileError`; a model is returned only after it has predicted.

What a file can make ``load`` do is bounded by the file itself:

- only regular files are opened (a FIFO would block, ``/dev/zero`` never
  ends), and the header is read and checked (format, version, a tensor table
  that exactly tiles the rest of the file) before the body is read;
- which fitted attributes exist, and the JSON form of each, come from the
  estimator's schema (``_ATTRIBUTE_FORMS``), not from the file;
- everything decoding allocates beyond the parsed JSON is charged against
  ``_ALLOCATION_FACTOR`` times the file's size, before it is allocated, and a
  string dtype may not be wider than its longest value;
- parameters that name paths of the machine that wrote the file
  (``checkpoint``) are neither written nor restored.

The digest is a checksum, not a signature: anyone who edits a file can
recompute it. It finds damage; the checks above are what make a crafted
file harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import platform
import re
import warnings
from dataclasses import fields
from numbers import Integral, Real

import numpy as np
import safetensors
import safetensors.torch
import sklearn
import torch
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.validation import check_is_fitted

from ._classifier import LargeMLPClassifier
from ._device import resolve_device
from ._engine import (
    _LOSSES,
    STOCHASTIC,
    TrainConfig,
    TrainState,
    build_mlp,
    from_torch_state,
)
from ._engine._network import _OUT_ACTIVATIONS
from ._estimator import hidden_sizes as _hidden_sizes
from ._io import NotARegularFileError, atomic_write, open_regular, read_exactly
from ._regressor import LargeMLPRegressor

FORMAT = "sknn_large"
FORMAT_VERSION = 1

# The only classes a file can name; nothing is imported by name from a file.
_ESTIMATORS = {cls.__name__: cls for cls in (LargeMLPClassifier, LargeMLPRegressor)}
# Fitted attributes a loaded model must have (beyond those checked by predicting).
_REQUIRED = {
    "n_features_in_",
    "n_outputs_",
    "n_layers_",
    "out_activation_",
    "device_",
    "n_iter_",
    "t_",
    "loss_",
    "loss_curve_",
    "_param_dtype",
    "_output_dtype",
    "_state",
}
_REQUIRED_CLASSIFIER = {"classes_", "_label_binarizer"}
# Derived from module_ on load rather than stored twice.
_DERIVED = {"module_", "coefs_", "intercepts_"}
_TORCH_FLOATS = {
    str(dt).removeprefix("torch."): dt
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}
_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# Array dtype kinds a file may hold in JSON: bool, ints, floats, str, object.
_ARRAY_KINDS = "biufUO"
# Decoding may allocate at most this many bytes per byte of the file, in all:
# JSON spends at least two characters per number, so every legitimate array
# costs far less, and a crafted dtype such as '<U50000000' is refused up front.
_ALLOCATION_FACTOR = 4
# As safetensors itself: a header this large is not a model file's.
_MAX_HEADER_BYTES = 100_000_000
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# Parameters that name paths on the machine that wrote the file: never
# written, never restored (a loaded model must not choose where to write).
_MACHINE_PARAMS = {"checkpoint": None}
# Tags a parameter value may carry; weights and fitted state never are one.
_PARAM_TAGS = frozenset(
    {
        "__scalar__",
        "__tuple__",
        "__dict__",
        "__ndarray__",
        "__device__",
        "__random_state__",
    }
)
_LABEL_BINARIZER_FIELDS = {
    "neg_label",
    "pos_label",
    "sparse_output",
    "y_type_",
    "sparse_input_",
    "classes_",
}


class ModelFileError(ValueError):
    """A model file cannot be loaded: the one error :func:`load` raises for it.

    Raised when the file is not an sknn_large model file (another file type, or
    a safetensors file without sknn_large metadata), when it is truncated or
    corrupted, when its contents were modified after it was written, and when it
    was written in a newer format version than this sknn_large reads. Nothing is
    half-loaded: the error is raised before a model is returned.
    """


# ------------------------------------------------------------------ saving


def save(estimator, path) -> None:
    """Write a fitted estimator to ``path`` as a safe model file.

    The file is written to a temporary name in the same folder and renamed into
    place, so ``path`` holds either its previous content or the whole new file,
    never a part.

    Parameters
    ----------
    estimator : LargeMLPClassifier or LargeMLPRegressor
        A fitted estimator (not a subclass: pickle those).
    path : str or os.PathLike
        Where to write.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator has not been fitted.
    TypeError
        If it is not one of sknn_large's estimators, or a parameter holds a
        value that has no JSON form.
    """
    atomic_write(path, to_bytes(estimator))


def to_bytes(estimator) -> bytes:
    """The content of a model file for ``estimator``, as bytes."""
    if _ESTIMATORS.get(type(estimator).__name__) is not type(estimator):
        raise TypeError(
            f"save supports {', '.join(_ESTIMATORS)}; got {type(estimator).__name__}."
            " Use pickle or joblib for other classes."
        )
    check_is_fitted(estimator)
    encode = _Encoder()
    params = {**estimator.get_params(deep=False), **_MACHINE_PARAMS}
    attributes = {
        k: v
        for k, v in vars(estimator).items()
        if k not in params and k not in _DERIVED and k in _ATTRIBUTE_FORMS
    }
    payload = json.dumps(
        {
            "estimator": type(estimator).__name__,
            "versions": _versions(),
            "params": encode(params),
            "attributes": encode(attributes),
        }
    )
    tensors = {
        f"module.{k}": v.detach().cpu().contiguous()
        for k, v in estimator.module_.state_dict().items()
    }
    tensors.update(encode.tensors)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "payload": payload,
        "sha256": _digest(payload, tensors),
    }
    return safetensors.torch.save(tensors, metadata=metadata)


def _versions() -> dict[str, str]:
    from ._version import __version__

    return {
        "sknn_large": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------- loading


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
        Where the network is placed for prediction: 'cpu', 'auto', 'cuda',
        'cuda:N' or 'mps'. A model trained on a GPU loads on a CPU-only machine.
        Further training moves it to the estimator's ``device`` parameter.

    Returns
    -------
    estimator : LargeMLPClassifier or LargeMLPRegressor
        The fitted estimator.

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
    try:
        fd, size = open_regular(path)
    except NotARegularFileError as exc:
        raise ModelFileError(f"Not a model file: {exc}") from exc
    try:
        # The header says what the body must be: check it before reading more.
        head = read_exactly(fd, 8)
        n = _header_length(head, size)
        _check_header(_decode_header(read_exactly(fd, n)), size - 8 - n)
        os.lseek(fd, 0, os.SEEK_SET)
        data = read_exactly(fd, size)
    finally:
        os.close(fd)
    return from_bytes(data, device=target)


def from_bytes(data: bytes, *, device="cpu"):
    """Rebuild an estimator from the bytes of a model file (see :func:`load`)."""
    target = resolve_device(device)
    tensors, metadata = _parse(data)
    payload = _check_metadata(metadata, tensors)
    try:
        estimator = _rebuild(payload, tensors, budget=_ALLOCATION_FACTOR * len(data))
        estimator.module_.to(target)
        _try_predict(estimator)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"The model file's contents are inconsistent: {type(exc).__name__}: {exc}"
        ) from exc
    return estimator


def _header_length(head: bytes, size: int) -> int:
    """The header's length from the first 8 bytes, checked against the size."""
    if len(head) < 8:
        raise _unreadable("it is shorter than a safetensors header")
    n = int.from_bytes(head[:8], "little")
    if n > min(size - 8, _MAX_HEADER_BYTES):
        raise _unreadable(
            f"its header claims {n} bytes but the file has {size - 8} after it"
        )
    return n


def _decode_header(raw: bytes) -> dict:
    try:
        header = json.loads(raw)
    except Exception as exc:  # ValueError, UnicodeError, RecursionError
        raise _unreadable(f"its header is not JSON ({type(exc).__name__})") from exc
    if not isinstance(header, dict):
        raise _unreadable("its header is not a JSON object")
    return header


def _check_header(header: dict, body_bytes: int) -> dict:
    """Check the metadata's format and the tensor table; return the metadata.

    Every tensor must have a known dtype and a shape whose size is exactly its
    byte range, the ranges must tile the body, and the names must be the ones
    :func:`save` writes: so nothing larger than the file is ever allocated.
    """
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(
            "Not an sknn_large model file: a safetensors file without sknn_large's"
            " metadata (was it written by sknn_large.save?)."
        )
    _check_version(metadata)
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (
            isinstance(name, str)
            and re.fullmatch(r"(module|state)\.[A-Za-z0-9_.]{1,200}", name)
            and isinstance(info, dict)
            and set(info) == {"dtype", "shape", "data_offsets"}
            and isinstance(info["dtype"], str)
            and info["dtype"] in _SAFETENSORS_ITEMSIZE
            and _is_int_list(info["shape"])
            and _is_int_list(info["data_offsets"])
            and len(info["data_offsets"]) == 2
        ):
            raise _corrupt(f"its tensor table entry {str(name)[:80]!r} is malformed.")
        begin, end = info["data_offsets"]
        numel = math.prod(info["shape"])
        if end - begin != numel * _SAFETENSORS_ITEMSIZE[info["dtype"]]:
            raise _corrupt(f"tensor {name!r} does not fill its byte range.")
        spans.append((begin, end))
    spans.sort()
    edge = 0
    for begin, end in spans:
        if begin != edge:
            raise _corrupt("the tensors' byte ranges overlap or leave gaps.")
        edge = end
    if edge != body_bytes:
        raise _corrupt(
            f"the tensors take {edge} bytes but the file holds {body_bytes}."
        )
    return metadata


def _is_int_list(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _unreadable(why: str) -> ModelFileError:
    return ModelFileError(
        "Not a readable model file: it is truncated, corrupted, or not a"
        f" safetensors file ({why})."
    )


def _parse(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata, the header checked before the tensors are built."""
    n = _header_length(data[:8], len(data))
    metadata = _check_header(_decode_header(data[8 : 8 + n]), len(data) - 8 - n)
    try:
        tensors = safetensors.torch.load(bytes(data))
    except Exception as exc:
        raise _unreadable(f"{type(exc).__name__}: {exc}") from exc
    return tensors, metadata


def _check_version(metadata: dict) -> None:
    version = metadata.get("format_version", "")
    if not (isinstance(version, str) and re.fullmatch("[0-9]{1,9}", version)):
        raise _corrupt(f"bad format version {version!r}.")
    if int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"The model file uses format version {int(version)}, newer than the"
            f" {FORMAT_VERSION} this sknn_large reads: upgrade sknn_large to load it."
        )


def _check_metadata(metadata: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Check the format version and the digest; return the decoded payload."""
    _check_version(metadata)
    payload = metadata.get("payload")
    expected = metadata.get("sha256")
    if not isinstance(payload, str) or not isinstance(expected, str):
        raise _corrupt("its payload or digest is missing.")
    actual = _digest(payload, tensors)
    if not hmac.compare_digest(actual.encode(), expected.encode()):
        raise ModelFileError(
            "The model file is corrupted or was modified after it was written: its"
            " contents do not match their SHA-256 digest."
        )
    try:
        decoded = json.loads(payload)
    except Exception as exc:  # ValueError, or RecursionError when nested deeply
        raise _corrupt(f"bad JSON payload ({exc}).") from exc
    if not isinstance(decoded, dict):
        raise _corrupt("the payload is not an object.")
    return decoded


def _digest(payload: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the payload and of each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()

    def put(part) -> None:
        part = memoryview(part).cast("B")
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)

    put(payload.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        put(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        put(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _rebuild(payload: dict, tensors: dict[str, torch.Tensor], budget: int):
    cls = _ESTIMATORS.get(payload.get("estimator"))
    if cls is None:
        raise ModelFileError(
            f"The model file names an unknown estimator {payload.get('estimator')!r}."
        )
    decode = _Decoder(tensors, budget)
    params = _as_dict(decode(payload["params"], tags=_PARAM_TAGS), "params")
    # Paths of the machine that wrote the file are not this machine's to use.
    params.update((k, v) for k, v in _MACHINE_PARAMS.items() if k in params)
    estimator = cls(**params)
    estimator._validate_params()
    estimator._check_params(incremental=False)
    raw = _as_dict(payload["attributes"], "attributes")
    _check_attribute_names(cls, raw)
    attributes = {name: _decode_attribute(decode, name, raw[name]) for name in raw}
    if attributes.get("loss", estimator.loss) != estimator.loss:
        raise _corrupt("its loss is not the estimator's.")
    vars(estimator).update(attributes)
    _check_attributes(estimator)
    estimator.module_ = _rebuild_module(estimator, tensors)
    _check_train_state(estimator)
    estimator._publish_weights()
    unused = (
        set(tensors) - decode.used - {k for k in tensors if k.startswith("module.")}
    )
    if unused:
        raise ModelFileError(
            f"The model file has unexpected tensors: {sorted(unused)}."
        )
    return estimator


def _as_dict(obj, what: str) -> dict:
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise _corrupt(f"{what} is not a mapping of names.")
    return obj


def _check_attribute_names(cls, attributes: dict) -> None:
    # The schema, not the file, says which attributes exist.
    bad = [k for k in attributes if k not in _ATTRIBUTE_FORMS]
    required = _REQUIRED | (
        _REQUIRED_CLASSIFIER if cls is LargeMLPClassifier else set()
    )
    missing = required - set(attributes)
    if bad or missing:
        raise ModelFileError(
            "The model file's fitted attributes are wrong:"
            f" not allowed {sorted(bad)[:20]}, missing {sorted(missing)}."
        )


def _json_form(value) -> str:
    """The JSON type of a raw value, or its tag for a tagged object."""
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if isinstance(key, str) and key.startswith("__"):
            return key
    return type(value).__name__


def _decode_attribute(decode, name: str, raw):
    # The form is checked on the raw JSON, before anything is built from it.
    forms = _ATTRIBUTE_FORMS[name]
    if _json_form(raw) not in forms:
        raise _corrupt(
            f"attribute {name!r} is a {_json_form(raw)}, not {sorted(forms)}."
        )
    if name in _ARRAY_ATTRIBUTE_KINDS:
        return decode(raw, kinds=_ARRAY_ATTRIBUTE_KINDS[name])
    return decode(raw)


def _check_attributes(est) -> None:
    """Each fitted attribute has the type and value ``fit`` would give it."""
    wrong = [
        name
        for name, check in _ATTRIBUTE_CHECKS.items()
        if name in vars(est) and not check(vars(est)[name])
    ]
    if wrong:
        raise ModelFileError(f"The model file's fitted attributes {wrong} are wrong.")
    n_hidden = len(_hidden_sizes(est.hidden_layer_sizes))
    names = getattr(est, "feature_names_in_", None)
    if (
        est.n_layers_ != n_hidden + 2
        or (names is not None and names.shape != (est.n_features_in_,))
        or (isinstance(est, LargeMLPClassifier) and not _classes_fit(est))
        or est.out_activation_ != _LOSSES[est._loss_name()].out_activation
    ):
        raise ModelFileError(
            "The model file's fitted attributes contradict each other (layers,"
            " feature names, classes, outputs or output activation)."
        )


def _classes_fit(est) -> bool:
    # The label encoder is the one fit() makes, and agrees with classes_ and outputs.
    lb, classes = est._label_binarizer, est.classes_
    if not (
        (lb.neg_label, lb.pos_label, lb.sparse_output) == (0, 1, False)
        and lb.y_type_ in ("binary", "multiclass", "multilabel-indicator")
        and isinstance(lb.sparse_input_, bool)
        and isinstance(classes, np.ndarray)
        and classes.ndim == 1
        and classes.size >= 1
        and np.array_equal(classes, lb.classes_)
        and np.array_equal(classes, np.unique(classes))
    ):
        return False
    est.classes_ = lb.classes_  # one object, as after fit
    n_outputs = 1 if lb.y_type_ == "binary" else classes.size
    return est.n_outputs_ == n_outputs and (lb.y_type_ == "binary") == (
        classes.size <= 2 and lb.y_type_ != "multilabel-indicator"
    )


def _rebuild_module(est, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The network from the parameters, checked against the stored weights."""
    with torch.device("meta"):  # shapes only: nothing is allocated yet
        module = build_mlp(
            est.n_features_in_,
            _hidden_sizes(est.hidden_layer_sizes),
            est.n_outputs_,
            activation=est.activation,
            dropout=est.dropout,
        )
    expected = module.state_dict()
    weights = {k[7:]: v for k, v in tensors.items() if k.startswith("module.")}
    if set(weights) != set(expected):
        raise ModelFileError(
            "The model file's weights do not match its architecture: expected"
            f" {sorted(expected)}, found {sorted(weights)}."
        )
    dtype = est._param_dtype[0]
    for name, ref in expected.items():
        got = weights[name]
        if got.shape != ref.shape or got.dtype != dtype:
            raise ModelFileError(
                f"The model file's weight {name!r} is {tuple(got.shape)} {got.dtype};"
                f" the architecture needs {tuple(ref.shape)} {dtype}."
            )
    module.load_state_dict(weights, assign=True)
    return module


def _check_train_state(est) -> None:
    """The training state has fit()'s types and fits the network."""
    state = est._state
    wrong = [
        f.name
        for f in fields(state)
        if f.name in _STATE_CHECKS and not _STATE_CHECKS[f.name](getattr(state, f.name))
    ]
    if wrong:
        raise ModelFileError(f"The model file's training state {wrong} is wrong.")
    if state.dropout_rng is not None and state.dropout_rng[0] == "cpu":
        torch.Generator().set_state(state.dropout_rng[1])  # raises if malformed
    params = list(est.module_.parameters())
    if state.best_params is not None and [b.shape for b in state.best_params] != [
        p.shape for p in params
    ]:
        raise ModelFileError("The model file's best weights do not fit the network.")
    if state.optimizer_state is not None:
        if est.solver not in STOCHASTIC:
            raise _corrupt("an L-BFGS model has optimizer moments.")
        _check_optimizer_state(est, state.optimizer_state)


def _check_optimizer_state(est, saved) -> None:
    """The moments are an optimizer state of this solver for this network."""
    cfg = TrainConfig(
        solver=est.solver,
        loss="squared_error",
        momentum=est.momentum,
        learning_rate_init=est.learning_rate_init,
    )
    try:
        from_torch_state(saved, est.module_, cfg)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise _corrupt(f"{exc}.") from exc


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _is_count(value) -> bool:
    return _is_int(value) and value >= 1


def _optional(check):
    return lambda value: value is None or check(value)


def _list_of(check):
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _instance(*types):
    return lambda value: isinstance(value, types)


def _is_rng_state(value) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and value[0] in ("cpu", "cuda", "mps")
        and isinstance(value[1], torch.Tensor)
        and value[1].dtype == torch.uint8
        and value[1].ndim == 1
    )


def _is_param_dtype(value) -> bool:
    floats = _TORCH_FLOATS.values()
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and value[0] in (torch.float32, torch.float64)
        and (value[1] is None or value[1] in floats)
    )


def _is_names(value) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.ndim == 1
        and all(isinstance(v, str) for v in value)
    )


# Optimizer flags that depend on the device trained on, not on the parameters.
# What fit() sets, by name: a loaded attribute must pass its check.
_ATTRIBUTE_CHECKS = {
    "n_features_in_": _is_count,
    "feature_names_in_": _is_names,
    "n_outputs_": _is_count,
    "n_layers_": _is_count,
    "out_activation_": lambda v: isinstance(v, str) and v in _OUT_ACTIVATIONS,
    "device_": lambda v: isinstance(v, torch.device) and v.type in _DEVICE_TYPES,
    "n_iter_": _is_int,
    "t_": _is_int,
    "loss_": _optional(_is_real),
    "loss_curve_": _list_of(_is_real),
    "best_loss_": _optional(_is_real),
    "validation_scores_": _optional(_list_of(_is_real)),
    "best_validation_score_": _optional(_is_real),
    "_no_improvement_count": _is_int,
    "_param_dtype": _is_param_dtype,
    "_output_dtype": lambda v: isinstance(v, np.dtype) and v in _NUMPY_FLOATS,
    "_state": _instance(TrainState),
    "_label_binarizer": _instance(LabelBinarizer),
    "classes_": _instance(np.ndarray),
}
_INT_FORMS = frozenset({"int", "__scalar__"})
_REAL_FORMS = frozenset({"int", "float", "NoneType", "__scalar__"})
# The schema of the fitted attributes: each name's JSON form (its type or tag)
# is checked before its value is decoded; a name not listed is refused.
_ATTRIBUTE_FORMS = {
    "n_features_in_": _INT_FORMS,
    "feature_names_in_": frozenset({"__ndarray__"}),
    "n_outputs_": _INT_FORMS,
    "n_layers_": _INT_FORMS,
    "out_activation_": frozenset({"str"}),
    "device_": frozenset({"__device__"}),
    "n_iter_": _INT_FORMS,
    "t_": _INT_FORMS,
    "loss_": _REAL_FORMS,
    "loss_curve_": frozenset({"list"}),
    "best_loss_": _REAL_FORMS,
    "validation_scores_": frozenset({"list", "NoneType"}),
    "best_validation_score_": _REAL_FORMS,
    "_no_improvement_count": _INT_FORMS,
    "_param_dtype": frozenset({"__tuple__"}),
    "_output_dtype": frozenset({"__numpy_dtype__"}),
    "_state": frozenset({"__train_state__"}),
    "_label_binarizer": frozenset({"__label_binarizer__"}),
    "classes_": frozenset({"__ndarray__"}),
    "loss": frozenset({"str"}),  # the classifier's fixed loss, set by __init__
}
# Array dtype kinds allowed for the array attributes (names are objects).
_ARRAY_ATTRIBUTE_KINDS = {"feature_names_in_": "OU", "classes_": _ARRAY_KINDS}
_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_TEXT = re.compile(r"(cpu|mps|cuda)(:[0-9]{1,4})?")
# The same for the engine's TrainState fields.
_STATE_CHECKS = {
    "generator": _instance(torch.Generator),
    "dropout_seed": _is_int,
    "dropout_rng": _optional(_is_rng_state),
    "n_iter": _is_int,
    "t": _is_int,
    "loss": _optional(_is_real),
    "loss_curve": _list_of(_is_real),
    "best_loss": _optional(_is_real),
    "validation_scores": _optional(_list_of(_is_real)),
    "best_validation_score": _optional(_is_real),
    "no_improvement_count": _is_int,
    "optimizer_state": _optional(_instance(dict)),
    "best_params": _optional(_list_of(_instance(torch.Tensor))),
    "converged": _instance(bool),
    "interrupted": _instance(bool),
    "diverged": _instance(bool),
    "messages": _list_of(_instance(str)),
}


def _try_predict(est) -> None:
    # The last check: the model answers one row before anyone else asks it to.
    X = np.zeros((1, est.n_features_in_), dtype=est._output_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # feature names: X here has none
        est.predict(X)


# ----------------------------------------------------------------- JSON codec


class _Encoder:
    """Python values to JSON; tensors are set aside and named by reference.

    Plain dicts keep their form when every key is a string not starting with
    ``__``; everything else is a one-key object whose key is a ``__tag__``.
    """

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def __call__(self, obj):
        if isinstance(obj, np.generic):
            return {"__scalar__": [obj.dtype.str, obj.item()]}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self(v) for v in obj]
        if isinstance(obj, tuple):
            return {"__tuple__": [self(v) for v in obj]}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self(v) for k, v in obj.items()}
            return {"__dict__": [[self(k), self(v)] for k, v in obj.items()]}
        return self._tagged(obj)

    def _tagged(self, obj):
        if isinstance(obj, torch.Tensor):
            name = f"state.{len(self.tensors)}"
            self.tensors[name] = obj.detach().cpu().contiguous()
            return {"__tensor__": name}
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": [obj.dtype.str, list(obj.shape), self(obj.tolist())]}
        if isinstance(obj, torch.dtype):
            return {"__torch_dtype__": str(obj).removeprefix("torch.")}
        if isinstance(obj, np.dtype):
            return {"__numpy_dtype__": obj.str}
        if isinstance(obj, torch.device):
            return {"__device__": str(obj)}
        if isinstance(obj, torch.Generator):
            return {"__generator__": self(obj.get_state())}
        if isinstance(obj, np.random.RandomState):
            return {"__random_state__": self(obj.get_state(legacy=True))}
        if isinstance(obj, TrainState):
            return {"__train_state__": self(_dataclass_dict(obj))}
        if isinstance(obj, LabelBinarizer):
            return {"__label_binarizer__": self(vars(obj))}
        raise TypeError(f"A model file cannot hold a {type(obj).__name__}: {obj!r}")


def _dataclass_dict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


class _Decoder:
    """JSON back to the fixed set of types :class:`_Encoder` writes.

    Everything it allocates beyond the parsed JSON itself (arrays) is charged
    to ``budget`` bytes, checked before the allocation: a file cannot make it
    allocate more than a small multiple of its own size.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], budget: int):
        self.tensors = tensors
        self.used: set[str] = set()
        self.budget = budget
        self._allowed = None  # tags allowed in the value being decoded
        self._kinds = _ARRAY_KINDS  # array dtype kinds allowed there
        self._tags = {
            "__scalar__": self._scalar,
            "__tuple__": lambda v: tuple(self._list(v)),
            "__dict__": self._dict,
            "__tensor__": self._tensor,
            "__ndarray__": self._ndarray,
            "__torch_dtype__": self._torch_dtype,
            "__numpy_dtype__": self._numpy_dtype,
            "__device__": self._device,
            "__generator__": self._generator,
            "__random_state__": self._random_state,
            "__train_state__": self._train_state,
            "__label_binarizer__": self._label_binarizer,
        }

    def __call__(self, obj, *, tags=None, kinds=None):
        """Decode ``obj``, allowing only ``tags`` and array dtype ``kinds``."""
        saved = self._allowed, self._kinds
        self._allowed = tags if tags is not None else self._allowed
        self._kinds = kinds if kinds is not None else self._kinds
        try:
            return self._decode(obj)
        finally:
            self._allowed, self._kinds = saved

    def _decode(self, obj):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self._decode(v) for v in obj]
        if not isinstance(obj, dict):
            raise _corrupt(f"unexpected {type(obj).__name__}.")
        tags = [k for k in obj if k.startswith("__")]
        if not tags:
            return {k: self._decode(v) for k, v in obj.items()}
        tag = tags[0]
        if (
            len(obj) != 1
            or tag not in self._tags
            or (self._allowed is not None and tag not in self._allowed)
        ):
            raise _corrupt(f"unexpected entry {sorted(obj)[:5]}.")
        return self._tags[tag](obj[tag])

    def _charge(self, nbytes: int) -> None:
        if nbytes > self.budget:
            raise _corrupt(
                f"it asks for {nbytes} bytes, more than its size can justify."
            )
        self.budget -= nbytes

    def _list(self, value) -> list:
        if not isinstance(value, list):
            raise _corrupt(f"expected a list, got a {type(value).__name__}.")
        return [self._decode(v) for v in value]

    def _dict(self, pairs) -> dict:
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise _corrupt("a mapping is malformed.")
        out = {}
        for key, value in pairs:
            key = self._decode(key)
            if not isinstance(key, (bool, int, float, str, np.generic, tuple)):
                raise _corrupt("a mapping has a key that is not a scalar.")
            out[key] = self._decode(value)
        return out

    def _tensor(self, name) -> torch.Tensor:
        if not isinstance(name, str) or name not in self.tensors:
            raise _corrupt(f"no tensor named {str(name)[:80]!r}.")
        self.used.add(name)
        return self.tensors[name]

    def _scalar(self, value):
        dtype_str, item = self._pair(value)
        dtype = self._array_dtype(dtype_str)
        if dtype.kind == "O" or not isinstance(item, (bool, int, float, str)):
            raise _corrupt("a scalar is malformed.")
        return dtype.type(item)

    @staticmethod
    def _pair(value) -> list:
        if not isinstance(value, list) or len(value) != 2:
            raise _corrupt("a tagged value is malformed.")
        return value

    def _ndarray(self, value) -> np.ndarray:
        if not isinstance(value, list) or len(value) != 3:
            raise _corrupt("an array is malformed.")
        dtype_str, shape, values = value
        dtype = self._array_dtype(dtype_str)
        # One dimension: every array a fitted model holds is a list of labels,
        # names or keys.
        if not (
            isinstance(values, list)
            and isinstance(shape, list)
            and shape == [len(values)]
            and all(v is None or isinstance(v, (bool, int, float, str)) for v in values)
        ):
            raise _corrupt("an array is malformed.")
        if dtype.kind == "U":
            # A string dtype wider than its longest value is a request for
            # memory, not a label: '<U536870911' asks for 2 GiB per element.
            longest = max([len(v) for v in values if isinstance(v, str)] or [0])
            if dtype.itemsize // 4 > max(1, longest):
                raise _corrupt(
                    f"an array's dtype {dtype.str!r} is wider than its values."
                )
        self._charge(len(values) * (8 if dtype.kind == "O" else dtype.itemsize))
        if dtype.kind == "O":
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        return np.array(values, dtype=dtype)

    def _array_dtype(self, dtype_str) -> np.dtype:
        text = _str(dtype_str)
        # Only the plain forms '<i8', '|b1', '<U12', '|O': no structured,
        # sub-array or exotic dtypes, and no widths numpy would reject.
        if not re.fullmatch(r"[<>|=]?[biufUO][0-9]{0,10}", text):
            raise _corrupt(f"dtype {text[:40]!r}.")
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _corrupt(f"dtype {text[:40]!r}.") from exc
        if dtype.kind not in self._kinds or (
            dtype.kind in "biuf" and dtype.itemsize > 8
        ):
            raise _corrupt(f"dtype {text[:40]!r}.")
        return dtype

    @staticmethod
    def _torch_dtype(value) -> torch.dtype:
        if not isinstance(value, str) or value not in _TORCH_FLOATS:
            raise _corrupt(f"torch dtype {str(value)[:40]!r}.")
        return _TORCH_FLOATS[value]

    @staticmethod
    def _numpy_dtype(value) -> np.dtype:
        if value not in ("<f4", "<f8", ">f4", ">f8", "=f4", "=f8"):
            raise _corrupt(f"output dtype {str(value)[:40]!r}.")
        return np.dtype(value)

    @staticmethod
    def _device(value) -> torch.device:
        if not isinstance(value, str) or not _DEVICE_TEXT.fullmatch(value):
            raise _corrupt(f"device {str(value)[:40]!r}.")
        return torch.device(value)

    def _generator(self, value) -> torch.Generator:
        state = self._decode(value)
        if not (
            isinstance(state, torch.Tensor)
            and state.dtype == torch.uint8
            and state.ndim == 1
        ):
            raise _corrupt("a generator state is not a byte tensor.")
        generator = torch.Generator()
        generator.set_state(state)
        return generator

    def _random_state(self, value) -> np.random.RandomState:
        state = self._decode(value)
        if not (
            isinstance(state, tuple)
            and len(state) == 5
            and state[0] == "MT19937"
            and isinstance(state[1], np.ndarray)
            and state[1].shape == (624,)
        ):
            raise _corrupt("a random state is malformed.")
        rs = np.random.RandomState()
        rs.set_state(state)
        return rs

    def _train_state(self, value) -> TrainState:
        kwargs = _as_dict(self._decode(value), "the training state")
        # Fields added to TrainState later take their defaults in older files.
        names = {f.name for f in fields(TrainState)}
        if not set(kwargs) <= names or "generator" not in kwargs:
            raise _corrupt("the training state is malformed.")
        return TrainState(**kwargs)

    def _label_binarizer(self, value) -> LabelBinarizer:
        attrs = _as_dict(self._decode(value), "the label encoder")
        if set(attrs) != _LABEL_BINARIZER_FIELDS:
            raise _corrupt("the label encoder is malformed.")
        lb = LabelBinarizer(
            neg_label=attrs["neg_label"],
            pos_label=attrs["pos_label"],
            sparse_output=attrs["sparse_output"],
        )
        lb._validate_params()
        vars(lb).update(attrs)
        return lb


def _corrupt(message: str) -> ModelFileError:
    return ModelFileError(f"Corrupted model file: {message}")


def _str(value) -> str:
    if not isinstance(value, str):
        raise _corrupt(f"expected a string, got {value!r}.")
    return value
