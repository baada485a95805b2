"""Turning the ``device`` parameter into a :class:`torch.device`."""

from __future__ import annotations

import re

import torch

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


_DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device_spec(spec) -> None:
    """Raise ``ValueError`` unless ``spec`` names a device kind we know.

    A :class:`torch.device` is held to the same kinds as a string: 'cpu',
    'cuda' (any index) or 'mps'. Others ('meta', 'xla', 'hpu', ...) cannot
    hold a trained network's weights and would fail later inside torch.
    """
    if isinstance(spec, torch.device):
        if spec.type not in _DEVICE_TYPES:
            raise ValueError(
                f"The 'device' parameter must be one of {DEVICE_CHOICES} (or a"
                f" torch.device of those types); got {spec!r}."
            )
        return
    if not isinstance(spec, str) or not _DEVICE_PATTERN.match(spec):
        raise ValueError(
            f"The 'device' parameter must be one of {DEVICE_CHOICES}; got {spec!r}."
        )


def resolve_device(spec) -> torch.device:
    """Resolve ``"auto"`` to CUDA when available (else CPU) and check availability.

    Raises
    ------
    ValueError
        If the requested accelerator does not exist on this machine.
    """
    check_device_spec(spec)
    if isinstance(spec, str) and spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(spec)!r} was requested but no CUDA GPU is available "
                "on this machine (torch.cuda.is_available() is False). Use "
                "device='cpu', or device='auto' to pick CUDA only when present."
            )
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={str(spec)!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) exist."
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            "device='mps' was requested but Apple's MPS backend is not available "
            "on this machine. Use device='cpu' or device='auto'."
        )
    return device
