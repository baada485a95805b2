"""``cuda_graphs=True``: the captured training step, driven on the CPU.

A CUDA graph replays the kernels recorded while capturing the step. On the
CPU the tests swap in a backend that "replays" by running the captured step
function again on the same input buffers, which is what a graph computes. So
every part of the control flow (warm-up, capture, replay, eager last batch,
schedules read from device tensors, falling back when capture fails)
runs here; tests/test_cuda.py repeats the comparison with real graphs.
"""

import contextlib
import logging

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression

from sknn_large import LargeMLPClassifier, LargeMLPRegressor
from sknn_large._engine import _capture
from sknn_large._engine import _loop as _train
from sknn_large._estimator import fit_many


class ReplayByRunning:
    """Capture keeps the step function; replay runs it on the buffers again."""

    def __init__(self):
        self.captures = self.replays = self.warmups = 0

    @contextlib.contextmanager
    def warmup(self):
        self.warmups += 1
        yield

    def capture(self, body):
        self.captures += 1
        return body, None

    def replay(self, graph, out):
        self.replays += 1
        return graph()


class FailingCapture(ReplayByRunning):
    def capture(self, body):
        raise RuntimeError("operation not permitted when stream is capturing")


@pytest.fixture
def backend(monkeypatch):
    made = []

    def fake(device):
        made.append(ReplayByRunning())
        return made[-1]

    monkeypatch.setattr(_train, "_graph_backend", fake)
    return made


def _classification():
    X, y = make_classification(
        n_samples=530, n_features=12, n_informative=6, n_classes=3, random_state=0
    )
    return X.astype(np.float32), y


def _assert_same(a, b):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(u, v)
    assert a.loss_curve_ == b.loss_curve_
    assert a.n_iter_ == b.n_iter_


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="adam"),
        dict(solver="adam", dropout=0.2, penalty="elasticnet", alpha=1e-2),
        dict(solver="sgd", learning_rate="invscaling", momentum=0.8),
        dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=1, tol=10.0),
        dict(solver="adamw", alpha=1e-2),
        dict(solver="rmsprop", penalty="l1", learning_rate_init=1e-3),
        dict(solver="adam", early_stopping=True, n_iter_no_change=2),
        dict(solver="adam", class_weight="balanced"),
        dict(solver="adam", precision="bfloat16"),
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_graphed_fit_equals_plain_fit(backend, params):
    # Same updates in the same order: warm-up steps, replays and the eager
    # last batch (530 rows, batch 64) give bit-identical weights and curves.
    X, y = _classification()
    base = dict(hidden_layer_sizes=(16, 8), batch_size=64, max_iter=6, random_state=0)
    base.update(params)
    plain = LargeMLPClassifier(**base).fit(X, y)
    assert backend == []  # cuda_graphs=False never builds a graphed step
    graphed = LargeMLPClassifier(cuda_graphs=True, **base).fit(X, y)
    _assert_same(plain, graphed)
    (b,) = backend
    assert b.warmups == _capture.WARMUP_STEPS
    assert b.captures >= 1
    # Every full batch after the warm-up was replayed.
    full_batches = graphed.n_iter_ * (
        int(0.9 * 530) // 64 if base.get("early_stopping") else 530 // 64
    )
    assert b.replays == full_batches - _capture.WARMUP_STEPS


def test_graphed_regressor_with_sample_weight_and_partial_fit(backend):
    X, y = make_regression(n_samples=300, n_features=7, random_state=1)
    w = np.random.RandomState(0).rand(300)
    base = dict(hidden_layer_sizes=(9,), batch_size=32, max_iter=3, random_state=0)
    plain = LargeMLPRegressor(**base).fit(X, y, sample_weight=w)
    graphed = LargeMLPRegressor(cuda_graphs=True, **base).fit(X, y, sample_weight=w)
    _assert_same(plain, graphed)
    # partial_fit continues from the optimizer state either way.
    plain.partial_fit(X, y)
    graphed.partial_fit(X, y)
    _assert_same(plain, graphed)
    assert [b.captures for b in backend] == [1, 1]


def test_learning_rate_changes_need_no_new_capture(backend):
    # The rate lives in a device tensor the captured step reads: invscaling
    # changes it after every epoch, yet one capture serves the whole fit and
    # gives the plain fit's weights.
    X, y = _classification()
    params = dict(
        solver="sgd",
        learning_rate="invscaling",
        batch_size=64,
        max_iter=5,
        random_state=0,
    )
    graphed = LargeMLPClassifier(cuda_graphs=True, **params).fit(X, y)
    assert backend[0].captures == 1
    _assert_same(LargeMLPClassifier(**params).fit(X, y), graphed)


def test_graphed_stack_equals_plain_stack(backend):
    # K > 1 members replay one captured step; a member that stops early
    # changes the stack, which is captured again, and results stay exact.
    X, y = _classification()
    base = dict(hidden_layer_sizes=(8,), batch_size=64, max_iter=6, random_state=0)
    grid = [dict(learning_rate_init=lr) for lr in (1e-3, 1e-2, 3e-2)]
    grid.append(dict(learning_rate_init=1e-2, n_iter_no_change=1, tol=10.0))
    plain = fit_many([LargeMLPClassifier(**base, **g) for g in grid], X, y)
    graphed = fit_many(
        [LargeMLPClassifier(cuda_graphs=True, **base, **g) for g in grid], X, y
    )
    for a, b in zip(plain, graphed, strict=True):
        _assert_same(a, b)
    assert backend[0].captures == 2


def test_failed_capture_trains_on_uncaptured(monkeypatch, caplog):
    monkeypatch.setattr(_train, "_graph_backend", lambda device: FailingCapture())
    X, y = _classification()
    base = dict(hidden_layer_sizes=(8,), batch_size=64, max_iter=3, random_state=0)
    plain = LargeMLPClassifier(**base).fit(X, y)
    with caplog.at_level(logging.WARNING, logger="sknn_large"):
        graphed = LargeMLPClassifier(cuda_graphs=True, **base).fit(X, y)
    _assert_same(plain, graphed)
    assert "CUDA-graph capture failed" in caplog.text


def test_cuda_graphs_is_ignored_on_the_cpu():
    # No backend on the CPU: the plain step runs and results are identical.
    X, y = _classification()
    base = dict(hidden_layer_sizes=(8,), batch_size=64, max_iter=2, random_state=0)
    assert _train._graph_backend(torch.device("cpu")) is None
    _assert_same(
        LargeMLPClassifier(**base).fit(X, y),
        LargeMLPClassifier(cuda_graphs=True, **base).fit(X, y),
    )
