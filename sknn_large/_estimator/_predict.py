"""Prediction and pickling, shared by the classifier and the regressor."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_predict_range
from .._data import iter_row_blocks
from .._engine import threads_for
from .._engine._network import _OUT_ACTIVATIONS, _Linear
from ._inputs import validate_input

# Rows per block when predicting: memory stays bounded whatever the input size.
# CPU blocks stay small enough for the activations to live in cache (measured
# 37% faster over 1M rows than 65536-row blocks); GPUs want big launches.
_PREDICT_ROWS = {"cpu": 8192}
_PREDICT_ROWS_ACCELERATOR = 65536


class PredictMixin:
    """Raw network outputs in blocks of rows, the output activation, pickling."""

    def _raw_output(self, X) -> np.ndarray:
        """Network outputs before the output activation, in blocks of rows."""
        X = validate_input(
            self,
            X,
            accept_sparse=["csr", "csc"],
            dtype=(np.float64, np.float32),
            reset=False,
        )
        module = self.module_
        param = next(module.parameters())
        check_predict_range(param.dtype, X)
        module.eval()
        # float64 rows are predicted in float64, as scikit-learn's MLP does: a
        # row's output then does not depend on how many rows share the call
        # (float32 sums differ in the last bit with the count).
        in_float64 = (
            param.device.type == "cpu"
            and X.dtype == np.float64
            and param.dtype == torch.float32
        )
        dtype = torch.float64 if in_float64 else param.dtype
        block = _PREDICT_ROWS.get(param.device.type, _PREDICT_ROWS_ACCELERATOR)
        rows = min(X.shape[0], block)
        # One preallocated result: a list of per-block outputs kept the
        # allocator from reusing the blocks' activations (+1 GB over 1M rows).
        out = np.empty((X.shape[0], self.n_outputs_), dtype=self._output_dtype)
        with torch.inference_mode(), threads_for(module, rows):
            forward = _float64_forward(module) if in_float64 else module
            start = 0
            for xb in iter_row_blocks(X, block, param.device, dtype):
                stop = start + xb.shape[0]
                out[start:stop] = forward(xb).cpu().numpy()
                start = stop
        return out

    def _output(self, raw: np.ndarray) -> np.ndarray:
        """Apply ``out_activation_`` to raw outputs."""
        fn = _OUT_ACTIVATIONS[self.out_activation_]
        return fn(torch.from_numpy(raw)).numpy()

    def __getstate__(self):
        # Tensors travel on the CPU so a CUDA-trained model loads anywhere.
        state = dict(super().__getstate__())  # never edit the live __dict__
        module = state.get("module_")
        if module is not None and next(module.parameters()).device.type != "cpu":
            state["module_"] = copy.deepcopy(module).cpu()
        if "_state" in state:
            state["_state"] = _state_to_cpu(state["_state"])
        return state


def _float64_forward(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module``'s forward pass in float64, its weights cast for this call.

    The network is a ``Sequential`` of linear layers and parameter-free
    layers (activations, dropout), so only the linear layers' weights need
    a float64 copy; the same numbers as a float64 copy of the whole module,
    without deep-copying it at every call (0.3-0.5 ms of a one-row
    ``predict``). Anything else is deep-copied.
    """
    children = list(module.children()) if isinstance(module, nn.Sequential) else []
    simple = children and all(
        type(c) in (nn.Linear, _Linear) or next(c.parameters(), None) is None
        for c in children
    )
    if not simple:
        return copy.deepcopy(module).double()
    steps = [
        functools.partial(F.linear, weight=c.weight.double(), bias=_double(c.bias))
        if isinstance(c, nn.Linear)
        else c
        for c in children
    ]

    def forward(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return forward


def _double(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.double()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def _state_to_cpu(state):
    out = copy.copy(state)
    out.optimizer_state = _to_cpu(state.optimizer_state)
    out.best_params = _to_cpu(state.best_params)
    return out
