"""The schema of a model file's fitted attributes, and the checks of their values.

Which attributes exist and the JSON form of each come from here, not from
the file; decoded values are checked against what ``fit`` would set. A
:class:`Kind` gathers this for one estimator class; this module has the
kinds of the two networks, ``_composite`` those built of members.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.preprocessing import LabelBinarizer

from .._classifier import LargeMLPClassifier
from .._data import EpochOrder
from .._engine import STOCHASTIC, TrainConfig, TrainState, build_mlp, from_torch_state
from .._engine._network import _OUT_ACTIVATIONS
from .._estimator import hidden_sizes as _hidden_sizes
from .._regressor import LargeMLPRegressor
from ._codec import _ARRAY_KINDS, _TORCH_FLOATS
from ._errors import ModelFileError, _corrupt


@dataclass(frozen=True)
class Slot:
    """A fitted attribute of a composite that holds nested estimators.

    Its members are stored as records of their own (as a file of theirs
    would hold them), their tensors under the prefix ``<attribute>.`` or
    ``<attribute>.<i>.``. The class of a member comes from here, never from
    the file.
    """

    cls: type  # the one class its members have
    many: bool = False  # a list of members; else one member
    optional: bool = False  # the one member may be None (see the kind's check)
    count: Callable | None = None  # estimator -> how many members fit makes
    # Parameters the composite and its member share by name are equal, but
    # for these, which fit chooses for the member itself.
    derived: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Kind:
    """What a model file may hold for one estimator class, and its checks.

    ``forms`` names the fitted attributes stored as JSON (each with the JSON
    forms it may take), ``required`` those that must be there, ``kinds`` the
    dtype kinds of the arrays in them; ``slots`` the attributes holding
    members, ``derived`` the fitted attributes rebuilt on load rather than
    stored. ``check(estimator, attributes, tensors)`` checks the decoded
    attributes (members already rebuilt) against each other and the
    parameters, and may complete them (the network from its ``module.*``
    tensors when ``network``).
    """

    cls: type
    forms: Mapping[str, frozenset[str]]
    required: frozenset[str]
    check: Callable[..., None]
    kinds: Mapping[str, str] = field(default_factory=dict)
    slots: Mapping[str, Slot] = field(default_factory=dict)
    derived: frozenset[str] = frozenset()
    network: bool = False


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
_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
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


def _check_attribute_names(kind: Kind, attributes: dict) -> None:
    # The schema, not the file, says which attributes exist.
    bad = [k for k in attributes if k not in kind.forms]
    missing = kind.required - set(attributes)
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


def _decode_attribute(decode, kind: Kind, name: str, raw):
    # The form is checked on the raw JSON, before anything is built from it.
    forms = kind.forms[name]
    if _json_form(raw) not in forms:
        raise _corrupt(
            f"attribute {name!r} is a {_json_form(raw)}, not {sorted(forms)}."
        )
    if name in kind.kinds:
        return decode(raw, kinds=kind.kinds[name])
    return decode(raw)


def _check_network(est, attributes: dict, tensors: dict[str, torch.Tensor]) -> None:
    """The check of a network's kind: attributes, weights, training state."""
    if attributes.get("loss", est.loss) != est.loss:
        raise _corrupt("its loss is not the estimator's.")
    _check_attributes(est, attributes)
    attributes["module_"] = _rebuild_module(est, attributes, tensors)
    _check_train_state(est, attributes)


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


def _check_attributes(est, attributes: dict) -> None:
    """Each fitted attribute has the type and value ``fit`` would give it.

    ``est`` is the estimator the parameters make; ``attributes`` the decoded
    fitted attributes. Whether the output activation fits the loss is the
    estimator's own check, in ``__sknn_restore__``.
    """
    wrong = [
        name
        for name, check in _ATTRIBUTE_CHECKS.items()
        if name in attributes and not check(attributes[name])
    ]
    if wrong:
        raise ModelFileError(f"The model file's fitted attributes {wrong} are wrong.")
    n_hidden = len(_hidden_sizes(est.hidden_layer_sizes))
    names = attributes.get("feature_names_in_")
    if (
        attributes["n_layers_"] != n_hidden + 2
        or (names is not None and names.shape != (attributes["n_features_in_"],))
        or (isinstance(est, LargeMLPClassifier) and not _classes_fit(attributes))
    ):
        raise ModelFileError(
            "The model file's fitted attributes contradict each other (layers,"
            " feature names, classes or outputs)."
        )


def _classes_fit(attributes: dict) -> bool:
    # The label encoder is the one fit() makes, and agrees with classes_ and outputs.
    lb, classes = attributes["_label_binarizer"], attributes["classes_"]
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
    attributes["classes_"] = lb.classes_  # one object, as after fit
    n_outputs = 1 if lb.y_type_ == "binary" else classes.size
    return attributes["n_outputs_"] == n_outputs and (lb.y_type_ == "binary") == (
        classes.size <= 2 and lb.y_type_ != "multilabel-indicator"
    )


def _check_train_state(est, attributes: dict) -> None:
    """The training state has fit()'s types and fits the network.

    ``attributes`` holds the decoded fitted attributes, the rebuilt
    ``module_`` included; ``est`` gives the parameters.
    """
    state, module = attributes["_state"], attributes["module_"]
    wrong = [
        f.name
        for f in fields(state)
        if f.name in _STATE_CHECKS and not _STATE_CHECKS[f.name](getattr(state, f.name))
    ]
    if wrong:
        raise ModelFileError(f"The model file's training state {wrong} is wrong.")
    if state.dropout_rng is not None and state.dropout_rng[0] == "cpu":
        torch.Generator().set_state(state.dropout_rng[1])  # raises if malformed
    params = list(module.parameters())
    if state.best_params is not None and [b.shape for b in state.best_params] != [
        p.shape for p in params
    ]:
        raise ModelFileError("The model file's best weights do not fit the network.")
    if state.optimizer_state is not None:
        if est.solver not in STOCHASTIC:
            raise _corrupt("an L-BFGS model has optimizer moments.")
        _check_optimizer_state(est, module, state.optimizer_state)


def _check_optimizer_state(est, module, saved) -> None:
    """The moments are an optimizer state of this solver for this network."""
    cfg = TrainConfig(
        solver=est.solver,
        loss="squared_error",
        momentum=est.momentum,
        learning_rate_init=est.learning_rate_init,
    )
    try:
        from_torch_state(saved, module, cfg)
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
    "validation_loss_curve_": _optional(_list_of(_is_real)),
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
    "validation_loss_curve_": frozenset({"list", "NoneType"}),
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
    "validation_loss_curve": _optional(_list_of(_is_real)),
    "best_validation_score": _optional(_is_real),
    "no_improvement_count": _is_int,
    "optimizer_state": _optional(_instance(dict)),
    "best_params": _optional(_list_of(_instance(torch.Tensor))),
    "converged": _instance(bool),
    "interrupted": _instance(bool),
    "diverged": _instance(bool),
    "messages": _list_of(_instance(str)),
    "epoch_order": _optional(_instance(EpochOrder)),
}


def _network_kind(cls, required: frozenset[str]) -> Kind:
    return Kind(
        cls=cls,
        forms=_ATTRIBUTE_FORMS,
        required=frozenset(required),
        check=_check_network,
        kinds=_ARRAY_ATTRIBUTE_KINDS,
        derived=frozenset(_DERIVED),
        network=True,
    )


NETWORK_KINDS = {
    "LargeMLPClassifier": _network_kind(
        LargeMLPClassifier, _REQUIRED | _REQUIRED_CLASSIFIER
    ),
    "LargeMLPRegressor": _network_kind(LargeMLPRegressor, _REQUIRED),
}
