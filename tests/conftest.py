"""Shared fixtures: small datasets, the CUDA marker, sklearn's seed fixture."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.preprocessing import MinMaxScaler

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: long-running; deselected by default")


def pytest_collection_modifyitems(config, items):
    # Tests marked `cuda` are skipped, not dropped, where no GPU exists.
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture
def global_random_seed():
    """The seed fixture scikit-learn's own tests use (a fixed value here)."""
    return 42


@pytest.fixture(scope="session")
def iris():
    X, y = load_iris(return_X_y=True)
    return MinMaxScaler().fit_transform(X), y


@pytest.fixture(scope="session")
def digits_binary():
    X, y = load_digits(n_class=2, return_X_y=True)
    return MinMaxScaler().fit_transform(X[:200]), y[:200]


@pytest.fixture(scope="session")
def regression():
    X, y = make_regression(n_samples=200, n_features=10, noise=5.0, random_state=7)
    return X, (y - y.mean()) / y.std()


@pytest.fixture(scope="session")
def rng():
    return np.random.RandomState(0)
