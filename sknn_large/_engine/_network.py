"""The network builder: one function, one registry of activations."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

# Public activation names -> module factories. `_parameter_constraints` reads its
# option set from here, so adding an entry is all it takes to expose a new one.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


class HandActivation(NamedTuple):
    """An activation as the hand-derived step applies it.

    Attributes
    ----------
    forward : callable
        In place, ``z -> z``; with ``from_input``, ``(z, out) -> out``.
    backward : callable or None
        ``(grad, saved) ->`` the gradient at the activation's input (relu,
        gelu and silu write it into ``grad``); ``saved`` is the activation's
        output, or its input with ``from_input``. None for the identity.
    from_input : bool
        Whether the backward needs the input (the pre-activation): the step
        then keeps it and writes the output into a buffer of its own.
    """

    forward: Callable[..., torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    from_input: bool = False


# Activations the hand-derived step covers: every public one. Their kernels
# are the aten ones autograd itself calls, so both paths round alike. Most
# differentiate from their output (no pre-activation kept); gelu and silu
# need their input.
_aten = torch.ops.aten
_HAND_ACTIVATIONS: dict[str, HandActivation] = {
    "identity": HandActivation(lambda z: z, None),
    "logistic": HandActivation(torch.sigmoid_, _aten.sigmoid_backward),
    "tanh": HandActivation(torch.tanh_, _aten.tanh_backward),
    "relu": HandActivation(
        torch.relu_,
        lambda g, a: _aten.threshold_backward.grad_input(g, a, 0.0, grad_input=g),
    ),
    "leaky_relu": HandActivation(
        lambda z: torch.nn.functional.leaky_relu_(z, 0.01),
        lambda g, a: _aten.leaky_relu_backward(g, a, 0.01, True),
    ),
    "elu": HandActivation(
        lambda z: torch.nn.functional.elu_(z),
        lambda g, a: _aten.elu_backward(g, 1.0, 1.0, 1.0, True, a),
    ),
    # nn.GELU's exact (erf) form, as autograd's GeluBackward0 differentiates it.
    "gelu": HandActivation(
        lambda z, out: _aten.gelu.out(z, out=out),
        lambda g, z: _aten.gelu_backward.grad_input(g, z, grad_input=g),
        from_input=True,
    ),
    "silu": HandActivation(
        lambda z, out: _aten.silu.out(z, out=out),
        lambda g, z: _aten.silu_backward.grad_input(g, z, grad_input=g),
        from_input=True,
    ),
}

# Output activations applied at prediction time; training works on raw scores
# so that losses can use their numerically stable fused forms.
_OUT_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda z: z,
    "logistic": torch.sigmoid,
    "softmax": lambda z: torch.softmax(z, dim=1),
    "exp": torch.exp,
}


class _Linear(nn.Linear):
    """``nn.Linear`` that leaves its parameters uninitialised.

    torch's default initialisation would draw from (and advance) the caller's
    global RNG only to be overwritten by :func:`init_glorot_`. Building on the
    meta device and moving with ``to_empty`` avoids that too, but its first
    use imports torch's symbolic-shape machinery (sympy): half a second of a
    small first fit.
    """

    def reset_parameters(self) -> None:
        return None


def build_mlp(
    n_in: int,
    hidden_layer_sizes: Sequence[int],
    n_out: int,
    *,
    activation: str,
    dropout: float,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Sequential:
    """Build ``Linear -> activation [-> Dropout]`` blocks followed by a linear head.

    Parameters are allocated on ``device`` in ``dtype`` but left
    uninitialised here; see :func:`init_glorot_`.
    """
    layers: list[nn.Module] = []
    widths = [n_in, *hidden_layer_sizes]
    where = dict(device=device, dtype=dtype)
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=False):
        layers.append(_Linear(fan_in, fan_out, **where))
        layers.append(_ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(_Linear(widths[-1], n_out, **where))
    return nn.Sequential(*layers)


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """Return the network's linear layers in forward order."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def init_glorot_(
    module: nn.Module, activation: str, random_state: np.random.RandomState
) -> None:
    """Initialise weights *and* biases exactly as scikit-learn's MLP does.

    Uniform on ``[-b, b]`` with ``b = sqrt(factor / (fan_in + fan_out))``,
    ``factor = 2`` for the logistic activation and ``6`` otherwise, drawn from
    ``random_state`` in scikit-learn's order (each layer's weights, then its
    biases). The same ``random_state`` therefore gives the same starting
    network as ``MLPClassifier`` / ``MLPRegressor``.
    """
    factor = 2.0 if activation == "logistic" else 6.0
    for layer in linear_layers(module):
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(factor / (fan_in + fan_out))
        coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
        intercept = random_state.uniform(-bound, bound, fan_out)
        layer.weight.copy_(torch.from_numpy(coef.T.copy()))
        layer.bias.copy_(torch.from_numpy(intercept))


def get_coefs(module: nn.Module) -> tuple[list, list]:
    """Weights as numpy ``(fan_in, fan_out)`` arrays and biases, sklearn's layout."""
    coefs, intercepts = [], []
    for layer in linear_layers(module):
        coefs.append(layer.weight.detach().T.cpu().numpy().copy())
        intercepts.append(layer.bias.detach().cpu().numpy().copy())
    return coefs, intercepts


@torch.no_grad()
def set_coefs(module: nn.Module, coefs: Sequence, intercepts: Sequence) -> None:
    """Load sklearn-layout weights and biases into the network in place."""
    layers = linear_layers(module)
    if len(layers) != len(coefs) or len(layers) != len(intercepts):
        raise ValueError(
            f"Expected {len(layers)} weight matrices and bias vectors, got "
            f"{len(coefs)} and {len(intercepts)}."
        )
    for layer, w, b in zip(layers, coefs, intercepts, strict=False):
        w = torch.as_tensor(w).T
        b = torch.as_tensor(b).reshape(-1)
        if w.shape != layer.weight.shape or b.shape != layer.bias.shape:
            raise ValueError(
                f"Weight shape {tuple(w.T.shape)} does not match the layer "
                f"({layer.in_features}, {layer.out_features})."
            )
        layer.weight.copy_(w)
        layer.bias.copy_(b)
