"""Rebuilding an estimator from a model file's checked contents."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._device import resolve_device
from .._engine import build_mlp
from .._estimator import hidden_sizes as _hidden_sizes
from ._codec import _ALLOCATION_FACTOR, _Decoder
from ._errors import ModelFileError, _as_dict, _corrupt
from ._format import _check_metadata, _parse, read_file
from ._schema import (
    _ESTIMATORS,
    _MACHINE_PARAMS,
    _PARAM_TAGS,
    _check_attribute_names,
    _check_attributes,
    _check_train_state,
    _decode_attribute,
)


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
    return from_bytes(read_file(path), device=target)


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


def _rebuild(payload: dict, tensors: dict[str, torch.Tensor], budget: int):
    """The estimator a checked payload describes, through ``__sknn_restore__``.

    The fitted attributes are decoded and checked as a plain dict (schema,
    types, sizes, the network against its weights, the training state), and
    only then handed to the estimator, which checks them against its
    parameters; its ValueError becomes a :class:`ModelFileError` in
    :func:`from_bytes`.
    """
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
    # Nothing is built from parameters that fail their constraints;
    # __sknn_restore__ checks them again, with the checks across parameters.
    estimator._validate_params()
    raw = _as_dict(payload["attributes"], "attributes")
    _check_attribute_names(cls, raw)
    attributes = {name: _decode_attribute(decode, name, raw[name]) for name in raw}
    if attributes.get("loss", estimator.loss) != estimator.loss:
        raise _corrupt("its loss is not the estimator's.")
    _check_attributes(estimator, attributes)
    attributes["module_"] = _rebuild_module(estimator, attributes, tensors)
    _check_train_state(estimator, attributes)
    estimator.__sknn_restore__(attributes)
    unused = (
        set(tensors) - decode.used - {k for k in tensors if k.startswith("module.")}
    )
    if unused:
        raise ModelFileError(
            f"The model file has unexpected tensors: {sorted(unused)}."
        )
    return estimator


def _rebuild_module(
    est, attributes: dict, tensors: dict[str, torch.Tensor]
) -> torch.nn.Module:
    """The network from the parameters, checked against the stored weights."""
    with torch.device("meta"):  # shapes only: nothing is allocated yet
        module = build_mlp(
            attributes["n_features_in_"],
            _hidden_sizes(est.hidden_layer_sizes),
            attributes["n_outputs_"],
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
    dtype = attributes["_param_dtype"][0]
    for name, ref in expected.items():
        got = weights[name]
        if got.shape != ref.shape or got.dtype != dtype:
            raise ModelFileError(
                f"The model file's weight {name!r} is {tuple(got.shape)} {got.dtype};"
                f" the architecture needs {tuple(ref.shape)} {dtype}."
            )
    module.load_state_dict(weights, assign=True)
    return module


def _try_predict(est) -> None:
    # The last check: the model answers one row before anyone else asks it to.
    # coefs_ are in the dtype of the data fit saw, as predictions are.
    X = np.zeros((1, est.n_features_in_), dtype=est.coefs_[0].dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # feature names: X here has none
        est.predict(X)
