"""Choosing a device for a worker of a parallel or distributed search.

When a search (``GridSearchCV(n_jobs=-1)``, ``cross_validate``) runs its fits
in several workers, each worker resolves ``device="auto"`` on its own. Left to
``torch``, every worker would pick ``cuda:0`` and the other GPUs would idle.
:func:`worker_device` looks at what the worker's scheduler says about it and
spreads workers over the GPUs the process can see:

1. **Ray** assigns GPUs to a task or actor that asks for them
   (``num_gpus=...``) and reports them in ``ray.get_gpu_ids()``; Ray also
   restricts ``CUDA_VISIBLE_DEVICES`` to them. The first assigned GPU is used.
   Fractional requests (``num_gpus=0.5``) make tasks share one GPU.
2. **One visible GPU.** When ``CUDA_VISIBLE_DEVICES`` leaves the process one
   GPU (the convention of dask-cuda's ``LocalCUDACluster``, of
   ``dask worker --resources GPU=1`` started per GPU, and of most job
   schedulers) that GPU is ``cuda:0``.
3. **Several visible GPUs** are shared out round-robin by the worker's slot:
   a Dask worker's ``name`` (an integer in a ``LocalCluster``), else the
   number of a pool process (joblib's ``LokyProcess-3``, multiprocessing's
   ``ForkPoolWorker-3``). A process that is no worker gets what
   ``device="auto"`` always gives, ``cuda`` (the current device, ``cuda:0``
   by default).
4. Without CUDA the answer is the CPU.

Dask and Ray are looked up only when already imported by the worker (they
always are inside their own workers); this module imports neither.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import zlib
from dataclasses import dataclass

import torch

from ._device import resolve_device

_POOL_PROCESS_NAME = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class WorkerInfo:
    """What the environment says about the current worker.

    Attributes
    ----------
    framework : str
        ``"ray"``, ``"dask"``, ``"pool"`` (a numbered pool process) or
        ``"none"``.
    slot : int or None
        A small integer distinguishing this worker from its siblings.
    gpu_ids : tuple of str
        GPUs the scheduler assigned to this worker (Ray), as it names them.
    """

    framework: str = "none"
    slot: int | None = None
    gpu_ids: tuple[str, ...] = ()


def _visible_devices() -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` as a list, or None when it is not set."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [d.strip() for d in value.split(",") if d.strip()]


def _ray_info() -> WorkerInfo | None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        ids = tuple(str(i) for i in ray.get_gpu_ids())
    except Exception:  # not inside a task or actor
        return None
    return WorkerInfo("ray", None, ids) if ids else None


def _slot_from_name(name) -> int:
    if isinstance(name, int):
        return name
    text = str(name)
    if text.isdigit():
        return int(text)
    match = _POOL_PROCESS_NAME.search(text)
    if match:
        return int(match.group(1))
    return zlib.crc32(text.encode())


def _dask_info() -> WorkerInfo | None:
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except (ValueError, AttributeError):  # not running on a Dask worker
        return None
    return WorkerInfo("dask", _slot_from_name(worker.name))


def _pool_info() -> WorkerInfo | None:
    process = multiprocessing.current_process()
    if multiprocessing.parent_process() is None:
        return None
    match = _POOL_PROCESS_NAME.search(process.name)
    if match is None:
        return None
    # Pool processes count from 1.
    return WorkerInfo("pool", int(match.group(1)) - 1)


def current_worker() -> WorkerInfo:
    """Describe the worker this code runs in (Ray, Dask, a process pool, none).

    Returns
    -------
    WorkerInfo
        The first of Ray (with assigned GPUs), Dask, a numbered pool process
        that matches; ``WorkerInfo()`` otherwise.
    """
    for probe in (_ray_info, _dask_info, _pool_info):
        info = probe()
        if info is not None:
            return info
    return WorkerInfo()


def choose_cuda_index(
    info: WorkerInfo, n_devices: int, visible: list[str] | None
) -> int:
    """The CUDA ordinal a worker should use; pure logic, for testing.

    Parameters
    ----------
    info : WorkerInfo
        From :func:`current_worker`.
    n_devices : int
        ``torch.cuda.device_count()`` (at least 1).
    visible : list of str or None
        ``CUDA_VISIBLE_DEVICES`` split on commas, None when unset.

    Returns
    -------
    int
        An ordinal in ``range(n_devices)``.
    """
    if info.gpu_ids:
        first = info.gpu_ids[0]
        if visible is not None and first in visible:
            return visible.index(first) % n_devices
        if visible is None and first.isdigit():
            return int(first) % n_devices
        return 0
    if n_devices == 1 or info.slot is None:
        return 0
    return info.slot % n_devices


def worker_device(spec="auto") -> torch.device:
    """Resolve ``spec`` to a device, spreading workers over visible GPUs.

    Anything but ``"auto"`` is resolved as the estimators' ``device``
    parameter is. ``"auto"`` gives the CPU when CUDA is unavailable, else the
    GPU picked by the rules in this module's documentation: Ray's assignment,
    the single GPU a worker was given through ``CUDA_VISIBLE_DEVICES``, or a
    round-robin over the visible GPUs by worker slot.

    Parameters
    ----------
    spec : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
        :class:`torch.device`.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> from sknn_large._parallel import worker_device
    >>> worker_device("cpu")
    device(type='cpu')
    """
    if not (isinstance(spec, str) and spec == "auto"):
        return resolve_device(spec)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    info = current_worker()
    if info == WorkerInfo():
        # Not a worker: exactly what device="auto" has always meant.
        return resolve_device("auto")
    index = choose_cuda_index(info, torch.cuda.device_count(), _visible_devices())
    return torch.device("cuda", index)


__all__ = ["WorkerInfo", "choose_cuda_index", "current_worker", "worker_device"]
