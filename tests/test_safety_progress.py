"""The live progress bar tells the truth and leaves the terminal tidy."""

import warnings
from types import SimpleNamespace

import pytest

from sknn_large import LargeMLPClassifier, _progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _epoch(bar, clock, n_iter, at):
    clock.now = at
    bar(None, SimpleNamespace(n_iter=n_iter, loss=0.5, validation_scores=None))


def test_first_epoch_does_not_inflate_the_eta(capsys, monkeypatch):
    # The first epoch carries one-time costs (1.5 s here, then 10 ms epochs):
    # the ETA is measured on the epochs after it, not blown up to minutes.
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "perf_counter", clock)
    bar = _progress.EpochProgress(200)
    _epoch(bar, clock, 1, 1.5)
    _epoch(bar, clock, 2, 1.51)
    _epoch(bar, clock, 3, 1.52)
    draws = capsys.readouterr().out.split("\r")[1:]
    assert "ETA --" in draws[0]  # nothing measured yet: no number
    assert "ETA 2s" in draws[1] and "ETA 2s" in draws[2]


def test_eta_counts_from_a_resumed_epoch(capsys, monkeypatch):
    # A fit resumed at epoch 50 estimates from the epochs it runs itself.
    clock = _Clock()
    monkeypatch.setattr(_progress.time, "perf_counter", clock)
    bar = _progress.EpochProgress(100)
    _epoch(bar, clock, 51, 3.0)
    _epoch(bar, clock, 52, 3.1)
    assert "ETA 5s" in capsys.readouterr().out.split("\r")[-1]


def test_close_ends_the_line_once(capsys):
    # close() ends the bar's line; calling it again, or with nothing drawn,
    # prints nothing more, so the estimator may close early and in `finally`.
    bar = _progress.EpochProgress(5)
    bar.close()
    assert capsys.readouterr().out == ""
    bar(None, SimpleNamespace(n_iter=1, loss=0.5, validation_scores=None))
    bar.close()
    bar.close()
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1


def test_warning_after_the_bar_starts_on_its_own_line(iris, monkeypatch, capsys):
    # The ConvergenceWarning at the end of a verbose fit is issued after the
    # bar's line has ended, not glued to the end of the bar.
    monkeypatch.setattr(_progress, "interactive", lambda: True)
    seen = []

    def record(message, category, *args, **kwargs):
        seen.append((category.__name__, capsys.readouterr().out))

    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", record)
        LargeMLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=1).fit(X, y)
    outputs = [out for name, out in seen if name == "ConvergenceWarning"]
    if not outputs:
        pytest.fail(f"no ConvergenceWarning was issued: {seen}")
    assert "epoch 3/3" in outputs[0] and outputs[0].endswith("\n")


def test_end_line_closes_open_bars(capsys):
    # end_line() ends a drawing bar's line without a reference to the bar.
    bar = _progress.EpochProgress(5)
    bar(None, SimpleNamespace(n_iter=1, loss=0.5, validation_scores=None))
    _progress.end_line()
    _progress.end_line()
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
