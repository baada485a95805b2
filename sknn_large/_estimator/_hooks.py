"""What runs around the epochs: checkpoints, callbacks, the progress bar.

Each becomes an engine hook of the member being trained, so it fires the
same way for a plain fit and for every member of a stacked fit.
"""

from __future__ import annotations

import copy
import logging
import os

from .. import _checkpoint, _progress
from .._engine import STOCHASTIC

_log = logging.getLogger("sknn_large")

# ------------------------------------------------------------ checkpoints


def fingerprint(est, X, Y, sample_weight, validation=None) -> str | None:
    """What must match for a checkpoint to resume this fit (None: no checkpoint).

    Parameters and data alike, the validation set passed to ``fit`` included
    (see :func:`~sknn_large._checkpoint.fingerprint`);
    computed once per fit, before the network is built, so a ``RandomState``
    is hashed in the state the fit starts from.
    """
    if not est.checkpoint:
        return None
    classes = getattr(est, "classes_", None)
    return _checkpoint.fingerprint(
        est.get_params(), X, Y, sample_weight, classes, validation
    )


def checkpoint_to_resume(est, fp: str | None, incremental: bool) -> dict | None:
    """The checkpoint this fit resumes from, or None."""
    if fp is None or incremental:
        return None
    return _checkpoint.load_for_resume(est.checkpoint, fp)


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


def progress_bar(est, incremental: bool):
    """A live bar for verbose=1 in a terminal or notebook; else None.

    Elsewhere (logs, CI, captured output) verbose=1 prints scikit-learn's
    per-iteration lines, and verbose>=2 always does. A stacked fit shares one
    bar between its members (:class:`StackProgress`).
    """
    if (
        est.verbose != 1
        or incremental
        or est.solver not in STOCHASTIC
        or not _progress.interactive()
    ):
        return None
    return _progress.EpochProgress(est.max_iter)


class StackProgress:
    """One live bar for a stacked fit: the leading member's epoch and loss.

    Members of a stack cannot each own a terminal line, so the bar follows
    whichever member has run the most epochs (its loss and validation score
    are shown) and ends with the slowest member. Each member's estimator
    feeds it through its epoch-end hook.
    """

    def __init__(self, total: int):
        self.bar = _progress.EpochProgress(total)
        self.lead = 0

    def __call__(self, module, state) -> bool:
        if state.n_iter > self.lead:
            self.lead = state.n_iter
            self.bar(module, state)
        return False

    def close(self) -> None:
        """End the bar's line."""
        self.bar.close()


def stack_progress(estimators):
    """A :class:`StackProgress` if any estimator would show a live bar, else None."""
    shown = [e for e in estimators if progress_bar(e, incremental=False) is not None]
    return StackProgress(max(e.max_iter for e in shown)) if shown else None


def epoch_hooks(est, fp, ctx, incremental: bool, rng_start, bar):
    """The (begin, end) engine hooks of one member's training call."""
    ends = []
    if fp is not None and not incremental:
        ends.append(_checkpoint_hook(est, fp, rng_start))
    begin = None
    # Epoch subtasks only when a callback listens: publishing each epoch's
    # weights for it costs a copy per epoch, a lot beside a tiny network's.
    if ctx is not None and getattr(est, "_skl_callbacks", None):
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
