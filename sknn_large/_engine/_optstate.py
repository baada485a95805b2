"""Optimizer state in torch.optim's ``state_dict`` layout, to and from the stack.

The engine keeps each member's optimizer buffers as flat vectors (the stack's
layout). Fitted models, checkpoints and model files hold them as the
``state_dict`` torch's optimizer would produce for the network (two parameter
groups: weights, then biases; tensors in ``module.parameters()`` shapes), so
files written before the one engine still load and continue.
"""

from __future__ import annotations

import torch
from torch import nn

from ._config import TrainConfig
from ._network import linear_layers
from ._solvers import _SOLVERS


def _params_by_index(module: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters in torch's state_dict numbering: every weight, then biases."""
    layers = linear_layers(module)
    return [la.weight for la in layers] + [la.bias for la in layers]


def _to_flat(tensors: list[torch.Tensor], module: nn.Module) -> torch.Tensor:
    """Per-parameter tensors (state_dict numbering) as one stack-layout vector."""
    n = len(linear_layers(module))
    ws = [t.T.reshape(-1) for t in tensors[:n]]
    return torch.cat(ws + [t.reshape(-1) for t in tensors[n:]])


def _from_flat(flat: torch.Tensor, module: nn.Module) -> list[torch.Tensor]:
    out, offset = [], 0
    params = _params_by_index(module)
    n = len(params) // 2
    for i, p in enumerate(params):
        size = p.numel()
        part = flat[offset : offset + size]
        out.append(part.view(p.shape[1], p.shape[0]).T if i < n else part)
        offset += size
    return [t.detach().cpu().clone().contiguous() for t in out]


def to_torch_state(
    module: nn.Module,
    cfg: TrainConfig,
    buffers: dict[str, torch.Tensor],
    n_steps: float,
    lr: float,
) -> dict:
    """One member's buffers as torch.optim's ``state_dict`` (on the CPU)."""
    solver = _SOLVERS[cfg.solver]
    n_layers = len(linear_layers(module))
    names = solver.kept_buffers(cfg)
    per_name = {name: _from_flat(buffers[name], module) for name in names}
    state = {}
    for i in range(2 * n_layers):
        entry = {name: per_name[name][i] for name in names}
        if solver.counts_steps:
            entry["step"] = torch.tensor(float(n_steps), dtype=torch.float32)
        if entry:
            state[i] = entry
    groups = [
        {"params": list(range(n_layers)), "lr": lr},
        {"params": list(range(n_layers, 2 * n_layers)), "lr": lr},
    ]
    return {"state": state, "param_groups": groups}


def from_torch_state(
    saved: dict, module: nn.Module, cfg: TrainConfig
) -> tuple[dict[str, torch.Tensor], float, float]:
    """(flat buffers, step count, learning rate) from a ``state_dict``.

    Raises
    ------
    ValueError
        If ``saved`` does not describe this network's optimizer state.
    """
    solver = _SOLVERS[cfg.solver]
    params = _params_by_index(module)
    groups, moments = _parts(saved, len(params))
    lr = groups[0].get("lr", cfg.learning_rate_init)
    # Zero is a rate too: a cosine schedule ends there.
    if not isinstance(lr, int | float) or isinstance(lr, bool) or not 0 <= lr < 1e308:
        raise ValueError("the optimizer's learning rate is not a finite rate >= 0")
    steps, buffers = 0.0, {}
    for name in solver.buffers:
        found = [moments.get(i, {}).get(name) for i in range(len(params))]
        if all(t is None for t in found):
            continue
        if not all(_fits(t, p) for t, p in zip(found, params, strict=True)):
            raise ValueError(f"the optimizer's {name!r} does not fit the network")
        buffers[name] = _to_flat(
            [t.to(p) for t, p in zip(found, params, strict=True)], module
        )
    for entry in moments.values():
        if "step" in entry:
            steps = _step_count(entry["step"])
    return buffers, steps, float(lr)


def _parts(saved, n_params: int) -> tuple[list[dict], dict]:
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    moments = saved.get("state") if isinstance(saved, dict) else None
    if not (
        isinstance(groups, list)
        and len(groups) == 2
        and all(isinstance(g, dict) for g in groups)
        and isinstance(moments, dict)
        and all(isinstance(m, dict) for m in moments.values())
    ):
        raise ValueError("the optimizer state is not a state_dict of two groups")
    ids = [i for g in groups for i in g.get("params", [])]
    if sorted(ids) != list(range(n_params)) or not set(moments) <= set(ids):
        raise ValueError("the optimizer's parameters do not match the network")
    return groups, moments


def _fits(t, param: torch.Tensor) -> bool:
    return (
        isinstance(t, torch.Tensor) and t.is_floating_point() and t.shape == param.shape
    )


def _step_count(step) -> float:
    value = float(step) if isinstance(step, torch.Tensor | int | float) else -1.0
    if isinstance(step, torch.Tensor) and step.numel() != 1:
        value = -1.0
    if not value >= 0:
        raise ValueError("the optimizer's step count is not a count")
    return value
