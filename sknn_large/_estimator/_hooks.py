"""What runs around the epochs: checkpoints, callbacks, the progress bar.

Each becomes an engine hook of the member being trained, so it fires the
same way for a plain fit and for every member of a stacked fit.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np

from .. import _checkpoint, _progress
from .._engine import STOCHASTIC

_log = logging.getLogger("sknn_large")

# Parameters a checkpoint may be resumed across: they do not change the steps.
_FREE_PARAMS = frozenset(
    {
        "verbose",
        "max_iter",
        "checkpoint",
        "checkpoint_every",
        "warm_start",
        "cuda_graphs",  # replays the same steps: resuming either way is exact
    }
)


# ------------------------------------------------------------ checkpoints


def fingerprint(est, X) -> str:
    """What must match for a checkpoint to resume this fit."""
    params = {k: v for k, v in est.get_params().items() if k not in _FREE_PARAMS}
    classes = getattr(est, "classes_", None)
    classes = None if classes is None else np.asarray(classes).tolist()
    return repr((sorted(params.items(), key=str), X.shape, classes))


def checkpoint_to_resume(est, X, incremental: bool) -> dict | None:
    """The checkpoint this fit resumes from, or None."""
    if not est.checkpoint or incremental or not Path(est.checkpoint).exists():
        return None
    payload = _checkpoint.read(est.checkpoint)
    if payload["fingerprint"] != fingerprint(est, X):
        raise ValueError(
            f"The checkpoint {os.fspath(est.checkpoint)!r} was written by a fit "
            "with other parameters or data; delete it or choose another path."
        )
    return payload


def resume_from(est, payload: dict) -> None:
    """Load a checkpoint's weights and training state into ``est``."""
    _checkpoint.restore_state(payload, est.module_, est._state)
    _log.info(
        "Resuming from checkpoint %s after epoch %d",
        os.fspath(est.checkpoint),
        est._state.n_iter,
    )


def _checkpoint_hook(est, fingerprint: str, rng_start: dict):
    def hook(module, state):
        if state.n_iter % est.checkpoint_every == 0:
            payload = _checkpoint.make_payload(
                module,
                state,
                fingerprint=fingerprint,
                rng_start=rng_start,
                global_rng=state.dropout_rng,
            )
            _checkpoint.write_atomic(est.checkpoint, payload)

    return hook


# ------------------------------------------------------------ callbacks


def begin_callbacks(est, X, y, incremental: bool):
    """Open scikit-learn's callback context (scikit-learn >= 1.9 only)."""
    if not hasattr(est, "_init_callback_context"):
        return None
    epochs = 0
    if est.solver in STOCHASTIC:
        epochs = 1 if incremental else est.max_iter
    ctx = est._init_callback_context(max_subtasks=epochs)
    ctx.call_on_fit_task_begin(estimator=est, X=X, y=y)
    return ctx


def end_callbacks(est, ctx, X, y) -> None:
    """Close the callback context opened by :func:`begin_callbacks`."""
    if ctx is not None:
        ctx.call_on_fit_task_end(estimator=est, X=X, y=y, reconstruction_attributes={})


def _callback_hooks(est, ctx):
    """Epoch hooks that report each epoch as a callback subtask."""
    current = {}

    def begin(state):
        current["epoch"] = ctx.subcontext(task_name="epoch")
        current["epoch"].call_on_fit_task_begin(estimator=est)

    def end(module, state):
        return current.pop("epoch").call_on_fit_task_end(
            estimator=est,
            metadata={"loss": state.loss},
            reconstruction_attributes=lambda: {"module_": copy.deepcopy(module)},
        )

    return begin, end


# ------------------------------------------------------------ progress


def progress_bar(est, incremental: bool, stacked: bool = False):
    """A live bar for verbose=1 in a terminal or notebook; else None.

    Elsewhere (logs, CI, captured output, members of a stacked fit, which
    cannot share one terminal line) verbose=1 prints scikit-learn's
    per-iteration lines, and verbose>=2 always does.
    """
    if (
        est.verbose != 1
        or incremental
        or stacked
        or est.solver not in STOCHASTIC
        or not _progress.interactive()
    ):
        return None
    return _progress.EpochProgress(est.max_iter)


def epoch_hooks(est, X, ctx, incremental: bool, rng_start, bar):
    """The (begin, end) engine hooks of one member's training call."""
    ends = []
    if est.checkpoint and not incremental:
        ends.append(_checkpoint_hook(est, fingerprint(est, X), rng_start))
    begin = None
    if ctx is not None:
        begin, end = _callback_hooks(est, ctx)
        ends.append(end)
    if bar is not None:
        ends.append(bar)
    if not ends:
        return begin, None

    def on_epoch_end(module, state):
        # Every hook runs each epoch; any of them may ask to stop.
        return any([hook(module, state) for hook in ends])

    return begin, on_epoch_end
