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
"""

from __future__ import annotations

import hashlib
import hmac
import json
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

from ._base import _hidden_sizes
from ._classifier import LargeMLPClassifier
from ._device import resolve_device
from ._engine import _LOSSES, _SOLVERS, TrainState, build_mlp
from ._engine._network import _OUT_ACTIVATIONS
from ._engine._optim import make_optimizer
from ._io import atomic_write
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
    params = estimator.get_params(deep=False)
    attributes = {
        k: v
        for k, v in vars(estimator).items()
        if k not in params and k not in _DERIVED
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
    from . import __version__

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
    source cannot run code. The loaded estimator predicts exactly as the saved
    one did and can go on training (``partial_fit``, ``warm_start``).

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
        was modified after it was written, or uses a newer format version.
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
    with open(path, "rb") as f:
        data = f.read()
    return from_bytes(data, device=device)


def from_bytes(data: bytes, *, device="cpu"):
    """Rebuild an estimator from the bytes of a model file (see :func:`load`)."""
    target = resolve_device(device)
    tensors, metadata = _parse(data)
    payload = _check_metadata(metadata, tensors)
    try:
        estimator = _rebuild(payload, tensors)
        estimator.module_.to(target)
        _try_predict(estimator)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"The model file's contents are inconsistent: {type(exc).__name__}: {exc}"
        ) from exc
    return estimator


def _parse(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata; safetensors checks the header against the size."""
    try:
        tensors = safetensors.torch.load(bytes(data))
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except Exception as exc:
        raise ModelFileError(
            "Not a readable model file: it is truncated, corrupted, or not a"
            f" safetensors file ({type(exc).__name__}: {exc})."
        ) from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(
            "Not an sknn_large model file: a safetensors file without sknn_large's"
            " metadata (was it written by sknn_large.save?)."
        )
    return tensors, metadata


def _check_metadata(metadata: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Check the format version and the digest; return the decoded payload."""
    version = metadata.get("format_version", "")
    if not (isinstance(version, str) and re.fullmatch("[0-9]{1,9}", version)):
        raise _corrupt(f"bad format version {version!r}.")
    if int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"The model file uses format version {int(version)}, newer than the"
            f" {FORMAT_VERSION} this sknn_large reads: upgrade sknn_large to load it."
        )
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


def _rebuild(payload: dict, tensors: dict[str, torch.Tensor]):
    cls = _ESTIMATORS.get(payload.get("estimator"))
    if cls is None:
        raise ModelFileError(
            f"The model file names an unknown estimator {payload.get('estimator')!r}."
        )
    decode = _Decoder(tensors)
    params = decode(payload["params"])
    estimator = cls(**_as_dict(params, "params"))
    estimator._validate_params()
    estimator._check_params(incremental=False)
    attributes = _as_dict(decode(payload["attributes"]), "attributes")
    _check_attribute_names(cls, attributes, params)
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


def _check_attribute_names(cls, attributes: dict, params: dict) -> None:
    # A file may add attributes, never replace a method or a class attribute.
    bad = [
        k
        for k in attributes
        if not k.isidentifier()
        or k.startswith("__")
        or hasattr(cls, k)
        or k in params
        or k in _DERIVED
    ]
    required = _REQUIRED | (
        _REQUIRED_CLASSIFIER if cls is LargeMLPClassifier else set()
    )
    missing = required - set(attributes)
    if bad or missing:
        raise ModelFileError(
            "The model file's fitted attributes are wrong:"
            f" not allowed {sorted(bad)}, missing {sorted(missing)}."
        )


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
        if est.solver not in _SOLVERS:
            raise _corrupt("an L-BFGS model has optimizer moments.")
        _check_optimizer_state(est, state.optimizer_state)


def _check_optimizer_state(est, saved) -> None:
    """Load the moments into a fresh optimizer, checking them on the way."""
    optimizer = make_optimizer(est.module_, est._train_config(1, incremental=True))
    fresh = optimizer.state_dict()
    groups, moments = saved.get("param_groups"), saved.get("state")
    if not (
        isinstance(groups, list)
        and isinstance(moments, dict)
        and len(groups) == len(fresh["param_groups"])
        and all(
            _group_fits(g, f)
            for g, f in zip(groups, fresh["param_groups"], strict=True)
        )
    ):
        raise _corrupt("the optimizer's settings do not fit the network.")
    ids = {i for g in groups for i in g["params"]}
    if not set(moments) <= ids or not all(
        isinstance(m, dict) for m in moments.values()
    ):
        raise _corrupt("the optimizer's moments do not match its parameters.")
    optimizer.load_state_dict(saved)
    for p, values in optimizer.state.items():
        if not all(_moment_fits(v, p) for v in values.values()):
            raise _corrupt("the optimizer's moments do not fit the network.")


def _group_fits(group, fresh: dict) -> bool:
    # Same keys' kinds as a fresh group; numeric settings (lr, betas) must be there.
    if not isinstance(group, dict) or not isinstance(group.get("params"), list):
        return False
    if len(group["params"]) != len(fresh["params"]) or not all(
        _is_int(i) for i in group["params"]
    ):
        return False
    for key, ref in fresh.items():
        if key == "params":
            continue
        if key not in group:
            if _is_real(ref) or isinstance(ref, tuple):
                return False
        elif not _same_kind(key, group[key], ref):
            return False
    return True


def _same_kind(key: str, value, ref) -> bool:
    if key in _DEVICE_DEPENDENT_FLAGS:
        return value is None or isinstance(value, bool)
    if _is_real(ref):
        return _is_real(value)
    if isinstance(ref, tuple):
        return (
            isinstance(value, tuple)
            and len(value) == len(ref)
            and all(_is_real(v) for v in value)
        )
    # Flags (maximize, differentiable, nesterov...) follow from the parameters.
    return type(value) is type(ref) and value == ref


def _moment_fits(value, param: torch.Tensor) -> bool:
    if value is None or _is_real(value):
        return True
    return (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and (value.ndim == 0 or value.shape == param.shape)
    )


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
_DEVICE_DEPENDENT_FLAGS = ("fused", "foreach", "capturable")
# What fit() sets, by name: a loaded attribute must pass its check.
_ATTRIBUTE_CHECKS = {
    "n_features_in_": _is_count,
    "feature_names_in_": _is_names,
    "n_outputs_": _is_count,
    "n_layers_": _is_count,
    "out_activation_": lambda v: isinstance(v, str) and v in _OUT_ACTIVATIONS,
    "device_": _instance(torch.device),
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
    """JSON back to the fixed set of types :class:`_Encoder` writes."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.used: set[str] = set()
        self._tags = {
            "__scalar__": self._scalar,
            "__tuple__": lambda v: tuple(self._list(v)),
            "__dict__": self._dict,
            "__tensor__": self._tensor,
            "__ndarray__": self._ndarray,
            "__torch_dtype__": lambda v: _TORCH_FLOATS[v],
            "__numpy_dtype__": self._numpy_dtype,
            "__device__": lambda v: torch.device(_str(v)),
            "__generator__": self._generator,
            "__random_state__": self._random_state,
            "__train_state__": self._train_state,
            "__label_binarizer__": self._label_binarizer,
        }

    def __call__(self, obj):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self(v) for v in obj]
        if not isinstance(obj, dict):
            raise _corrupt(f"unexpected {obj!r}.")
        tags = [k for k in obj if k.startswith("__")]
        if not tags:
            return {k: self(v) for k, v in obj.items()}
        if len(obj) != 1 or tags[0] not in self._tags:
            raise _corrupt(f"unknown entry {sorted(obj)}.")
        return self._tags[tags[0]](obj[tags[0]])

    def _list(self, value) -> list:
        if not isinstance(value, list):
            raise _corrupt(f"expected a list, got {value!r}.")
        return [self(v) for v in value]

    def _dict(self, pairs) -> dict:
        return {self(k): self(v) for k, v in self._list_of_pairs(pairs)}

    def _list_of_pairs(self, pairs) -> list:
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise _corrupt("a mapping is malformed.")
        return pairs

    def _tensor(self, name) -> torch.Tensor:
        if not isinstance(name, str) or name not in self.tensors:
            raise _corrupt(f"no tensor named {name!r}.")
        self.used.add(name)
        return self.tensors[name]

    def _scalar(self, value):
        dtype_str, item = self._list(value)
        return self._array_dtype(dtype_str).type(item)

    def _ndarray(self, value) -> np.ndarray:
        dtype_str, shape, values = self._list(value)
        dtype = self._array_dtype(dtype_str)
        if dtype.kind == "O":
            out = np.empty(len(values), dtype=object)
            out[:] = [_json_scalar(v) for v in values]
        else:
            out = np.array(values, dtype=dtype)
        if list(out.shape) != shape:
            raise _corrupt("an array has the wrong shape.")
        return out

    @staticmethod
    def _array_dtype(dtype_str) -> np.dtype:
        dtype = np.dtype(_str(dtype_str))
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
            raise _corrupt(f"dtype {dtype_str!r}.")
        return dtype

    @staticmethod
    def _numpy_dtype(value) -> np.dtype:
        dtype = np.dtype(_str(value))
        if dtype not in _NUMPY_FLOATS:
            raise _corrupt(f"output dtype {value!r}.")
        return dtype

    def _generator(self, value) -> torch.Generator:
        generator = torch.Generator()
        generator.set_state(self(value))
        return generator

    def _random_state(self, value) -> np.random.RandomState:
        rs = np.random.RandomState()
        rs.set_state(self(value))
        return rs

    def _train_state(self, value) -> TrainState:
        kwargs = _as_dict(self(value), "the training state")
        # Fields added to TrainState later take their defaults in older files.
        names = {f.name for f in fields(TrainState)}
        if not set(kwargs) <= names or "generator" not in kwargs:
            raise _corrupt("the training state is malformed.")
        return TrainState(**kwargs)

    def _label_binarizer(self, value) -> LabelBinarizer:
        attrs = _as_dict(self(value), "the label encoder")
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


def _json_scalar(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise _corrupt("an object array holds a non-scalar.")
