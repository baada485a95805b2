"""A one-line live progress bar for ``verbose=1`` in terminals and notebooks."""

from __future__ import annotations

import sys
import time
import weakref

# Bars that have drawn a line not yet ended (see end_line).
_OPEN: weakref.WeakSet = weakref.WeakSet()


def interactive() -> bool:
    """Whether stdout is a terminal or a Jupyter kernel's stream."""
    out = sys.stdout
    if getattr(out, "isatty", None) and out.isatty():
        return True
    return type(out).__module__.startswith("ipykernel")


class EpochProgress:
    """Redraws ``[####....] epoch 12/200  loss ...  val ...  ETA 3s`` in place.

    Used as an epoch-end hook; it never asks training to stop. The time left
    is estimated from the epochs after the first one drawn: the first carries
    one-time costs (threads starting, memory being allocated, data moving to
    the device) that would inflate the estimate many times over. It assumes
    all ``max_iter`` epochs run, so it is an upper bound when training stops
    early.

    Call :meth:`close` (or :func:`end_line`) when training ends, before any
    warning is issued: it ends the bar's line so that the next output starts
    on a line of its own.
    """

    width = 24

    def __init__(self, total: int):
        self.total = max(1, total)
        self.first = None  # (time, epoch) when the first drawn epoch ended
        self.drawn = False

    def __call__(self, module, state) -> bool:
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, state.n_iter)
        filled = min(self.width, int(self.width * state.n_iter / self.total))
        line = "\r[%s%s] epoch %d/%d  loss %.6f" % (
            "#" * filled,
            "." * (self.width - filled),
            state.n_iter,
            self.total,
            state.loss,
        )
        if state.validation_scores:
            line += "  val %.4f" % state.validation_scores[-1]
        line += "  ETA %s " % self._eta(now, state.n_iter)
        print(line, end="", flush=True)
        self.drawn = True
        _OPEN.add(self)
        return False

    def _eta(self, now: float, n_iter: int) -> str:
        start, first_epoch = self.first
        done = n_iter - first_epoch
        if done <= 0:
            return "--"  # no steady epoch measured yet
        left = max(0, self.total - n_iter)
        return "%.0fs" % ((now - start) / done * left)

    def close(self) -> None:
        """End the bar's line so later output starts on a fresh one.

        Safe to call more than once; prints nothing if no epoch was drawn.
        """
        _OPEN.discard(self)
        if self.drawn:
            print(flush=True)
            self.drawn = False


def end_line() -> None:
    """End the line of every bar still drawing, so that what follows starts afresh.

    For code that reports after training (warnings, messages) without holding
    the bar: call it first. A no-op when no bar is drawing.
    """
    for bar in list(_OPEN):
        bar.close()
