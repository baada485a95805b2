"""CUDA behaviour; every test here is skipped on machines without a GPU."""

import pickle

import numpy as np
import pytest

from sknn_large import LargeMLPClassifier, LargeMLPRegressor

pytestmark = pytest.mark.cuda
KW = dict(
    hidden_layer_sizes=(32,), max_iter=50, learning_rate_init=0.01, random_state=0
)


def test_auto_picks_cuda(iris):
    # device='auto' trains on the GPU when one exists; weights live there.
    X, y = iris
    clf = LargeMLPClassifier(**KW).fit(X, y)
    assert clf.device_.type == "cuda"
    assert next(clf.module_.parameters()).is_cuda


@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_cpu_and_gpu_agree(Est, iris):
    # Same seed on CPU and GPU: same quality and close predictions.
    X, y = iris
    cpu = Est(device="cpu", precision="float64", **KW).fit(X, y)
    gpu = Est(device="cuda", precision="float64", **KW).fit(X, y)
    assert abs(cpu.score(X, y) - gpu.score(X, y)) < 0.02
    if Est is LargeMLPClassifier:
        np.testing.assert_allclose(
            cpu.predict_proba(X), gpu.predict_proba(X), atol=1e-3
        )
    else:
        np.testing.assert_allclose(cpu.predict(X), gpu.predict(X), atol=1e-3)


def test_gpu_model_predicts_on_cpu_after_pickle(iris):
    # A CUDA-trained model pickles with CPU tensors and predicts without a GPU.
    X, y = iris
    clf = LargeMLPClassifier(device="cuda", **KW).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    assert next(restored.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(clf.predict(X), restored.predict(X))


def test_bfloat16_on_gpu(iris):
    # bf16 autocast trains to the same quality as float32 on the GPU.
    X, y = iris
    clf = LargeMLPClassifier(device="cuda", precision="bfloat16", **KW).fit(X, y)
    assert clf.score(X, y) > 0.9


def test_streaming_to_gpu(iris, monkeypatch):
    # With a tiny device budget the data streams from pinned host memory.
    from sknn_large import _data

    X, y = iris
    monkeypatch.setattr(_data, "free_device_bytes", lambda device: 1024.0)
    clf = LargeMLPClassifier(device="cuda", batch_size=16, **KW).fit(X, y)
    assert clf.score(X, y) > 0.9
