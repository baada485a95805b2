"""Prediction and pickling, shared by the classifier and the regressor."""

from __future__ import annotations

import copy

import numpy as np
import torch

from .._checks import check_predict_range
from .._data import iter_row_blocks
from .._engine import threads_for
from .._engine._network import _OUT_ACTIVATIONS
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
        cpu = param.device.type == "cpu"
        if cpu and X.dtype == np.float64 and param.dtype == torch.float32:
            # float64 rows are predicted in float64, as scikit-learn's MLP
            # does: a row's output then does not depend on how many rows share
            # the call (float32 sums differ in the last bit with the count).
            module = copy.deepcopy(module).double()
            param = next(module.parameters())
        block = _PREDICT_ROWS.get(param.device.type, _PREDICT_ROWS_ACCELERATOR)
        rows = min(X.shape[0], block)
        # One preallocated result: a list of per-block outputs kept the
        # allocator from reusing the blocks' activations (+1 GB over 1M rows).
        out = np.empty((X.shape[0], self.n_outputs_), dtype=self._output_dtype)
        with torch.inference_mode(), threads_for(module, rows):
            start = 0
            for xb in iter_row_blocks(X, block, param.device, param.dtype):
                stop = start + xb.shape[0]
                out[start:stop] = module(xb).cpu().numpy()
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
