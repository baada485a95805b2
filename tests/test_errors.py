"""Bad input gets a clear error, never a silent wrong answer."""

import numpy as np
import pytest
import torch

from sknn_large import LargeMLPClassifier, LargeMLPRegressor

BOTH = [LargeMLPClassifier, LargeMLPRegressor]


@pytest.mark.parametrize("Est", BOTH)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_X_rejected(Est, bad, iris):
    # NaN or inf in X is refused up front.
    X, y = iris
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        Est(max_iter=2).fit(X, y)


def test_nonfinite_y_rejected(regression):
    # NaN in a regression target is refused up front.
    X, y = regression
    y = y.copy()
    y[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LargeMLPRegressor(max_iter=2).fit(X, y)


@pytest.mark.parametrize("Est", BOTH)
def test_empty_data_rejected(Est):
    # Zero samples is an error that says so.
    with pytest.raises(ValueError, match="0 sample"):
        Est().fit(np.empty((0, 3)), np.empty(0))


@pytest.mark.parametrize("Est", BOTH)
def test_wrong_feature_count_at_predict(Est, iris):
    # Predicting with another number of features than seen in fit is an error.
    X, y = iris
    est = Est(hidden_layer_sizes=(4,), max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :3])


def test_continuous_target_for_classifier(regression):
    # A float target is not silently treated as thousands of classes.
    X, y = regression
    with pytest.raises(ValueError, match="LargeMLPRegressor"):
        LargeMLPClassifier(max_iter=2).fit(X, y)


@pytest.mark.parametrize(
    "param, value, valid",
    [
        ("activation", "swish", "relu"),
        ("solver", "adagrad", "rmsprop"),
        ("penalty", "l3", "elasticnet"),
        ("precision", "float16", "bfloat16"),
        ("learning_rate", "cosine", "invscaling"),
    ],
)
def test_unknown_option_lists_valid_ones(param, value, valid, iris):
    # An unknown option name is rejected with a message listing the valid ones.
    X, y = iris
    with pytest.raises(ValueError, match=valid):
        LargeMLPClassifier(**{param: value}).fit(X, y)


@pytest.mark.parametrize("sizes", [(0,), (10, -1)])
def test_non_positive_hidden_sizes(sizes, iris):
    # Hidden layers need at least one unit.
    X, y = iris
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        LargeMLPClassifier(hidden_layer_sizes=sizes).fit(X, y)


def test_bad_device_string(iris):
    # A device name we do not know lists the accepted ones.
    X, y = iris
    with pytest.raises(ValueError, match="'cuda:N'"):
        LargeMLPClassifier(device="gpu").fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_gpu(iris):
    # device='cuda' on a CPU-only machine says no GPU is available.
    X, y = iris
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        LargeMLPClassifier(device="cuda", max_iter=2).fit(X, y)


def test_partial_fit_unseen_class(iris):
    # partial_fit with a class outside `classes` is refused.
    X, y = iris
    clf = LargeMLPClassifier(hidden_layer_sizes=(4,))
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1])
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X, y)


def test_partial_fit_needs_classes_first(iris):
    # The first partial_fit of a classifier must be told every class.
    X, y = iris
    with pytest.raises(ValueError, match="classes must be passed"):
        LargeMLPClassifier().partial_fit(X, y)


def test_partial_fit_unavailable_for_lbfgs():
    # lbfgs is full-batch: partial_fit does not exist for it.
    assert not hasattr(LargeMLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(LargeMLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("Est", BOTH)
def test_predict_before_fit(Est, iris):
    # Using an unfitted estimator raises sklearn's NotFittedError.
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        Est().predict(iris[0])


def test_out_of_memory_names_batch_size_and_device(iris, monkeypatch):
    # Running out of (GPU) memory gives a MemoryError naming batch size and device.
    from sknn_large._engine import _train

    def oom(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(_train, "_run_epoch", oom)
    X, y = iris
    with pytest.raises(MemoryError, match=r"batch_size=32.*cpu|cpu.*batch_size=32"):
        LargeMLPClassifier(batch_size=32, device="cpu").fit(X, y)
