"""A one-line live progress bar for ``verbose=1`` in terminals and notebooks."""

from __future__ import annotations

import sys
import time


def interactive() -> bool:
    """Whether stdout is a terminal or a Jupyter kernel's stream."""
    out = sys.stdout
    if getattr(out, "isatty", None) and out.isatty():
        return True
    return type(out).__module__.startswith("ipykernel")


class EpochProgress:
    """Redraws ``[####....] epoch 12/200  loss ...  val ...  ETA 3s`` in place.

    Used as an epoch-end hook; it never asks training to stop.
    """

    width = 24

    def __init__(self, total: int):
        self.total = max(1, total)
        self.start = time.perf_counter()
        self.first = None

    def __call__(self, module, state) -> bool:
        if self.first is None:
            self.first = state.n_iter - 1
        done = state.n_iter - self.first
        elapsed = time.perf_counter() - self.start
        left = self.total - state.n_iter
        eta = elapsed / done * left if done else 0.0
        filled = int(self.width * state.n_iter / self.total)
        line = "\r[%s%s] epoch %d/%d  loss %.6f" % (
            "#" * filled,
            "." * (self.width - filled),
            state.n_iter,
            self.total,
            state.loss,
        )
        if state.validation_scores:
            line += "  val %.4f" % state.validation_scores[-1]
        line += "  ETA %.0fs " % eta
        print(line, end="", flush=True)
        return False

    def close(self) -> None:
        """End the line so later output starts on a fresh one."""
        print(flush=True)
