"""Checkpoints: atomic writes, exact resumption, refusal of foreign files."""

import numpy as np
import pytest

from sknn_large import LargeMLPClassifier, LargeMLPRegressor, _checkpoint
from sknn_large._engine import _train

KW = dict(
    hidden_layer_sizes=(16,),
    dropout=0.2,
    early_stopping=True,
    n_iter_no_change=50,
    max_iter=8,
    batch_size=32,
    random_state=0,
)


def _crash_at(monkeypatch, epoch):
    real = _train._run_epoch
    calls = {"n": 0}

    def crashing(*args):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise RuntimeError("simulated crash")
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", crashing)


def _count_epochs(monkeypatch):
    real = _train._run_epoch
    ran = {"n": 0}

    def counting(*args):
        ran["n"] += 1
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", counting)
    return ran


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_resume_equals_uninterrupted(Est, iris, tmp_path, monkeypatch):
    # A run that crashes and resumes from its checkpoint ends with exactly the
    # weights, curves and scores of an uninterrupted run (dropout, early stopping).
    X, y = iris
    path = tmp_path / "run.ckpt"
    whole = Est(**KW).fit(X, y)

    _crash_at(monkeypatch, epoch=6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Est(checkpoint=path, **KW).fit(X, y)
    assert _checkpoint.read(path)["state"]["n_iter"] == 5
    monkeypatch.undo()

    ran = _count_epochs(monkeypatch)
    resumed = Est(checkpoint=path, **KW).fit(X, y)
    assert ran["n"] == 3  # it resumed: only epochs 6-8 were run
    for a, b in zip(
        whole.coefs_ + whole.intercepts_,
        resumed.coefs_ + resumed.intercepts_,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert resumed.loss_curve_ == whole.loss_curve_
    assert resumed.validation_scores_ == whole.validation_scores_
    assert resumed.n_iter_ == whole.n_iter_ == 8
    assert not path.exists()  # finished: the checkpoint is removed


def test_checkpoint_every(iris, tmp_path, monkeypatch):
    # checkpoint_every=3 writes after epochs 3 and 6 only.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crash_at(monkeypatch, epoch=6)
    with pytest.raises(RuntimeError):
        LargeMLPClassifier(checkpoint=path, checkpoint_every=3, **KW).fit(X, y)
    assert _checkpoint.read(path)["state"]["n_iter"] == 3


def test_crash_mid_write_keeps_previous_checkpoint(iris, tmp_path, monkeypatch):
    # A write that dies before its rename leaves the previous checkpoint whole
    # and no temporary file behind.
    import os

    X, y = iris
    path = tmp_path / "run.ckpt"
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(OSError, match="disk full"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert _checkpoint.read(path)["state"]["n_iter"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]


def test_interrupt_keeps_checkpoint_for_resume(iris, tmp_path, monkeypatch):
    # Ctrl-C keeps the checkpoint; the next fit resumes and finishes the run.
    X, y = iris
    path = tmp_path / "run.ckpt"
    real = _train._run_epoch
    calls = {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_train, "_run_epoch", interrupted)
    with pytest.warns(UserWarning, match="interrupted"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    assert path.exists()
    monkeypatch.undo()
    whole = LargeMLPClassifier(**KW).fit(X, y)
    resumed = LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    np.testing.assert_array_equal(whole.coefs_[0], resumed.coefs_[0])


def test_checkpoint_of_other_fit_refused(iris, tmp_path, monkeypatch):
    # A checkpoint written with other parameters is not silently resumed.
    X, y = iris
    path = tmp_path / "run.ckpt"
    _crash_at(monkeypatch, epoch=3)
    with pytest.raises(RuntimeError):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="other parameters or data"):
        LargeMLPClassifier(checkpoint=path, **{**KW, "alpha": 0.1}).fit(X, y)


def test_foreign_file_refused(iris, tmp_path):
    # A file that is not a checkpoint gives a clear error, not a torch traceback.
    X, y = iris
    path = tmp_path / "run.ckpt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable sknn_large checkpoint"):
        LargeMLPClassifier(checkpoint=path, **KW).fit(X, y)


def test_checkpoint_rejected_for_lbfgs(iris, tmp_path):
    # L-BFGS runs as one SciPy call: asking for checkpoints is an error.
    X, y = iris
    with pytest.raises(ValueError, match="stochastic solvers"):
        LargeMLPClassifier(solver="lbfgs", checkpoint=tmp_path / "c").fit(X, y)
