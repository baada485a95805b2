"""ONNX export of fitted estimators, alone or inside scikit-learn pipelines.

One converter, registered with `skl2onnx <https://onnx.ai/sklearn-onnx/>`_,
writes the network as ONNX operators (``MatMul``, ``Add``, the activation, the
output activation) from the trained weights. :func:`to_onnx` converts one
estimator; :func:`register_onnx_converters` lets ``skl2onnx.to_onnx`` convert a
whole :class:`~sklearn.pipeline.Pipeline` that ends in one of sknn_large's
estimators. onnx and skl2onnx are imported only here, when these are called.

The graph computes in float32 whatever the training precision. Its outputs
follow skl2onnx's conventions: classifiers give ``label`` (int64 labels, or
strings for string classes; an int64 indicator matrix for multilabel targets)
and ``probabilities`` (float32, one column per class); regressors give
``variable`` of shape ``(n_samples, n_outputs)``. The batch size is dynamic.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._classifier import LargeMLPClassifier
from ._regressor import LargeMLPRegressor

_ALIASES = {
    LargeMLPClassifier: "SknnLargeMLPClassifier",
    LargeMLPRegressor: "SknnLargeMLPRegressor",
}
# Options skl2onnx's classifier parser understands (zipmap adds a ZipMap node).
_CLASSIFIER_OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [False, True],
    "output_class_labels": [False, True],
}


def to_onnx(estimator, *, target_opset=None, zipmap: bool = False):
    """Convert a fitted estimator to an ONNX model.

    Parameters
    ----------
    estimator : LargeMLPClassifier or LargeMLPRegressor
        The fitted estimator.
    target_opset : int, optional
        ONNX opset to target; skl2onnx's latest by default.
    zipmap : bool, default=False
        Classifiers only: return probabilities as a list of ``{class: p}``
        dicts (skl2onnx's ZipMap) instead of a ``(n_samples, n_classes)``
        tensor.

    Returns
    -------
    onnx.ModelProto
        A model with one input ``X`` (float32, ``(n_samples, n_features_in_)``,
        any number of rows) and the outputs described in this module's notes.

    Raises
    ------
    ImportError
        If skl2onnx is not installed (``pip install skl2onnx onnxruntime``).
    TypeError
        For classifiers whose labels have no exact int64 or string form: floats
        that are not whole numbers, integers beyond int64's range. Whole-number
        float labels (0.0, 1.0, ...) are exported as int64.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> from sklearn.datasets import load_iris
    >>> from sknn_large import LargeMLPClassifier
    >>> from sknn_large._onnx import to_onnx
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LargeMLPClassifier(max_iter=5, device="cpu", random_state=0).fit(X, y)
    >>> onx = to_onnx(clf)
    >>> session = ort.InferenceSession(onx.SerializeToString())
    >>> label, proba = session.run(None, {"X": X.astype(np.float32)})
    >>> bool(np.abs(proba - clf.predict_proba(X)).max() < 1e-5)
    True
    """
    from skl2onnx import to_onnx as skl2onnx_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    check_is_fitted(estimator)
    register_onnx_converters()
    options = None
    if isinstance(estimator, LargeMLPClassifier):
        options = {id(estimator): {"zipmap": zipmap}}
    return skl2onnx_to_onnx(
        estimator,
        initial_types=[("X", FloatTensorType([None, estimator.n_features_in_]))],
        target_opset=target_opset,
        options=options,
    )


def register_onnx_converters() -> None:
    """Teach skl2onnx to convert LargeMLPClassifier and LargeMLPRegressor.

    After this call, ``skl2onnx.to_onnx`` converts any pipeline that contains
    them, e.g. ``make_pipeline(StandardScaler(), LargeMLPClassifier())``.
    Calling it again is harmless. Classifiers accept skl2onnx's ``zipmap``,
    ``nocl`` (labels as class indices) and ``output_class_labels`` options.
    """
    from skl2onnx import update_registered_converter

    update_registered_converter(
        LargeMLPClassifier,
        _ALIASES[LargeMLPClassifier],
        _classifier_shapes,
        _convert,
        options=_CLASSIFIER_OPTIONS,
    )
    update_registered_converter(
        LargeMLPRegressor,
        _ALIASES[LargeMLPRegressor],
        _regressor_shapes,
        _convert,
    )


# ------------------------------------------------------------ shape calculators


def _is_multilabel(est) -> bool:
    # Binary targets have one logistic output, multiclass softmax outputs:
    # several logistic outputs are a multilabel indicator.
    return est.out_activation_ == "logistic" and est.n_outputs_ > 1


def _labels(scope, est) -> np.ndarray:
    """The label values the graph outputs: classes_, or indices with ``nocl``."""
    from skl2onnx.common.utils_classifier import get_label_classes

    return _exact_labels(np.asarray(get_label_classes(scope, est)))


_INT64 = np.iinfo(np.int64)


def _exact_labels(classes: np.ndarray) -> np.ndarray:
    """Class labels as ONNX holds them (int64 or strings), converted exactly.

    Whole-number floats (0.0, 1.0, common in user data) become int64; labels
    with no exact int64 or string form (fractions, integers beyond int64, a
    mix of strings and numbers) are refused rather than rounded or wrapped.
    """
    if classes.dtype.kind == "U":
        return classes
    if classes.dtype.kind == "O":
        if all(isinstance(c, str) for c in classes):
            return classes
        if not all(isinstance(c, (int, np.integer)) for c in classes):
            raise TypeError(
                "ONNX class labels are int64 or strings; this classifier's labels"
                f" mix types ({sorted({type(c).__name__ for c in classes})}). Refit"
                " it on labels of one type to export it."
            )
        classes = np.array([int(c) for c in classes], dtype=object)
    if classes.dtype.kind == "f":
        whole = np.isfinite(classes) & (classes == np.floor(classes))
        if not whole.all():
            raise TypeError(
                "ONNX class labels are int64 or strings; this classifier has float"
                f" labels that are not whole numbers ({classes[~whole][:3]}). Refit"
                " it on integer or string labels to export it."
            )
    if classes.size and (classes.min() < _INT64.min or classes.max() > _INT64.max):
        raise TypeError(
            "ONNX class labels are int64 or strings; this classifier has labels"
            f" outside int64's range ({classes.min()} to {classes.max()}), which"
            " would wrap around. Refit it on smaller integers or strings."
        )
    with np.errstate(invalid="ignore"):  # checked on the next line
        out = classes.astype(np.int64)
    if not (out == classes).all():  # float64 rounding near int64's limits
        raise TypeError(
            "ONNX class labels are int64 or strings; this classifier's float labels"
            " have no exact int64 form. Refit it on integer or string labels."
        )
    return out


def _classifier_shapes(operator) -> None:
    from skl2onnx.common.data_types import (
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    est = operator.raw_operator
    n, k = operator.inputs[0].get_first_dimension(), len(est.classes_)
    labels = _labels(operator.scope_inst, est)
    label_type = StringTensorType if labels.dtype.kind in "UO" else Int64TensorType
    operator.outputs[0].type = label_type([n, k] if _is_multilabel(est) else [n])
    operator.outputs[1].type = FloatTensorType([n, k])


def _regressor_shapes(operator) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    est = operator.raw_operator
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, est.n_outputs_])


# ------------------------------------------------------------------ converter


class _Graph:
    """Adds nodes and constants to skl2onnx's container under unique names."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def name(self, hint: str) -> str:
        return self.scope.get_unique_variable_name(hint)

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import TensorProto

        value = np.asarray(value)
        if value.dtype.kind in "UO":
            dtype, content = TensorProto.STRING, [str(v).encode() for v in value]
        elif value.dtype.kind in "biu":
            dtype, content = TensorProto.INT64, value.astype(np.int64).ravel()
        else:
            dtype, content = TensorProto.FLOAT, value.astype(np.float32).ravel()
        name = self.name(hint)
        self.container.add_initializer(name, dtype, list(value.shape), content)
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs):
        output = output or self.name(op_type.lower())
        self.container.add_node(
            op_type,
            inputs,
            [output],
            name=self.scope.get_unique_operator_name(op_type),
            **attrs,
        )
        return output


def _convert(scope, operator, container) -> None:
    from onnx import TensorProto

    est = operator.raw_operator
    g = _Graph(scope, container)
    x = g.op("Cast", [operator.inputs[0].full_name], to=TensorProto.FLOAT)
    raw = _network(g, est.module_, x)
    if isinstance(est, LargeMLPRegressor):
        out = operator.outputs[0].full_name
        if est.out_activation_ == "exp":
            g.op("Exp", [raw], out)
        else:
            g.op("Identity", [raw], out)
        return
    label, proba = (v.full_name for v in operator.outputs[:2])
    _classifier_head(g, est, raw, label, proba)


def _network(g: _Graph, module: nn.Module, x: str) -> str:
    """The hidden layers and the output layer, from the trained module."""
    for layer in module:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().cpu().to(torch.float32).numpy().T
            b = layer.bias.detach().cpu().to(torch.float32).numpy()
            x = g.op("Add", [g.op("MatMul", [x, g.const("coef", w)]), g.const("b", b)])
        elif not isinstance(layer, (nn.Dropout, nn.Identity)):
            x = _activation(g, layer, x)
    return x


def _activation(g: _Graph, layer: nn.Module, x: str) -> str:
    if isinstance(layer, nn.ReLU):
        return g.op("Relu", [x])
    if isinstance(layer, nn.Sigmoid):
        return g.op("Sigmoid", [x])
    if isinstance(layer, nn.Tanh):
        return g.op("Tanh", [x])
    if isinstance(layer, nn.LeakyReLU):
        return g.op("LeakyRelu", [x], alpha=float(layer.negative_slope))
    if isinstance(layer, nn.ELU):
        return g.op("Elu", [x], alpha=float(layer.alpha))
    if isinstance(layer, nn.SiLU):
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if isinstance(layer, nn.GELU):
        return _gelu(g, x, layer.approximate)
    raise NotImplementedError(f"No ONNX form for the layer {layer!r}.")


def _gelu(g: _Graph, x: str, approximate: str) -> str:
    # torch's GELU: 0.5 x (1 + erf(x / sqrt 2)), or its tanh approximation.
    half = g.const("half", np.array(0.5, dtype=np.float32))
    one = g.const("one", np.array(1.0, dtype=np.float32))
    if approximate == "tanh":
        c = g.const("c", np.array(np.sqrt(2 / np.pi), dtype=np.float32))
        k = g.const("k", np.array(0.044715, dtype=np.float32))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Mul", [c, g.op("Add", [x, g.op("Mul", [k, cube])])])
        gate = g.op("Tanh", [inner])
    else:
        root2 = g.const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
        gate = g.op("Erf", [g.op("Div", [x, root2])])
    return g.op("Mul", [g.op("Mul", [half, x]), g.op("Add", [one, gate])])


def _classifier_head(g: _Graph, est, raw: str, label: str, proba: str) -> None:
    """Probabilities and labels as predict_proba and predict compute them."""
    from onnx import TensorProto

    half = np.array(0.5, dtype=np.float32)  # LabelBinarizer's threshold
    if est.out_activation_ == "softmax":
        g.op("Softmax", [raw], proba, axis=1)
        index = g.op("ArgMax", [proba], axis=1, keepdims=0)
    elif _is_multilabel(est):
        g.op("Sigmoid", [raw], proba)
        hot = g.op("Greater", [proba, g.const("half", half)])
        g.op("Cast", [hot], label, to=TensorProto.INT64)
        return
    else:  # binary: one logistic output p, probabilities [1 - p, p]
        p = g.op("Sigmoid", [raw])
        one = g.const("one", np.array(1.0, dtype=np.float32))
        g.op("Concat", [g.op("Sub", [one, p]), p], proba, axis=1)
        flat = g.op("Reshape", [p, g.const("flat", np.array([-1]))])
        positive = g.op("Greater", [flat, g.const("half", half)])
        index = g.op("Cast", [positive], to=TensorProto.INT64)
    classes = g.const("classes", _labels(g.scope, est))
    g.op("Gather", [classes, index], label, axis=0)
