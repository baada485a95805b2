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
from ._format import pack
from ._schema import _ATTRIBUTE_FORMS, _DERIVED, _ESTIMATORS, _MACHINE_PARAMS


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
    # The model-file protocol: the estimator says what its fitted state is.
    state = estimator.__sknn_state__()
    attributes = {
        k: v
        for k, v in state.items()
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
        for k, v in state["module_"].state_dict().items()
    }
    tensors.update(encode.tensors)
    return pack(payload, tensors)


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
