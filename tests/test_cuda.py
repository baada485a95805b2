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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Est", [LargeMLPClassifier, LargeMLPRegressor])
def test_lbfgs_on_gpu_follows_the_cpu(Est, iris):
    # L-BFGS's loss and gradient come from the engine's step on the GPU too
    # (SciPy on the host): in float64 the two take nearly the same iterates
    # (the line search grows last-bit differences, hence the loose bound).
    X, y = iris
    kw = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=30, tol=0.0)
    cpu = Est(device="cpu", precision="float64", random_state=0, **kw).fit(X, y)
    gpu = Est(device="cuda", precision="float64", random_state=0, **kw).fit(X, y)
    assert next(gpu.module_.parameters()).is_cuda
    assert gpu.loss_ == pytest.approx(cpu.loss_, rel=1e-3)
    assert abs(cpu.score(X, y) - gpu.score(X, y)) < 0.02


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


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="adam", dropout=0.1),
        dict(solver="sgd", learning_rate="invscaling"),
        dict(solver="rmsprop", early_stopping=True, n_iter_no_change=3),
        dict(solver="adam", precision="bfloat16"),
    ],
    ids=lambda p: p["solver"] + ("-" + p.get("precision", "")),
)
def test_cuda_graphs_match_the_plain_path(monkeypatch, params):
    # Real CUDA graphs replay the recorded step: the fit follows the uncaptured
    # one to float tolerance (dropout draws differ, so compare quality there).
    from sklearn.datasets import make_classification

    from sknn_large._engine import _capture

    captured = []
    real_capture = _capture.CudaGraphs.capture

    def counting(self, body):
        captured.append(1)
        return real_capture(self, body)

    monkeypatch.setattr(_capture.CudaGraphs, "capture", counting)
    X, y = make_classification(n_samples=3000, n_features=20, random_state=0)
    base = dict(hidden_layer_sizes=(64, 64), batch_size=128, max_iter=8, random_state=0)
    base.update(params)
    plain = LargeMLPClassifier(device="cuda", **base).fit(X, y)
    graphed = LargeMLPClassifier(device="cuda", cuda_graphs=True, **base).fit(X, y)
    assert captured, "the step was never captured"
    assert graphed.n_iter_ == plain.n_iter_ or params.get("early_stopping")
    if params.get("dropout"):
        assert abs(plain.score(X, y) - graphed.score(X, y)) < 0.03
    else:
        np.testing.assert_allclose(
            plain.loss_curve_, graphed.loss_curve_, rtol=2e-3, atol=1e-5
        )
        np.testing.assert_allclose(
            plain.predict_proba(X), graphed.predict_proba(X), atol=2e-3
        )


def test_tabular_models_train_on_cuda_and_predict_on_cpu():
    # TabularMLP's ensemble trains on the GPU with device="auto", agrees with
    # a CPU fit of the same seed, and its pickle predicts on the CPU.
    import pandas as pd

    from sknn_large import TabularMLPClassifier

    rng = np.random.RandomState(0)
    X = pd.DataFrame({"x": rng.normal(size=400), "c": rng.choice(["a", "b", "c"], 400)})
    y = (X["x"] + (X["c"] == "a") > 0.5).astype(int)
    kw = dict(n_estimators=3, hidden_layer_sizes=(32,), random_state=0)
    gpu = TabularMLPClassifier(precision="float64", **kw).fit(X, y)
    assert all(m.device_.type == "cuda" for m in gpu.ensemble_.estimators_)
    cpu = TabularMLPClassifier(device="cpu", precision="float64", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-3)
    again = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_array_equal(again.predict(X), gpu.predict(X))
