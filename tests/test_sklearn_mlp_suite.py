"""scikit-learn's own MLP test module, run against sknn_large.

The installed ``sklearn/neural_network/tests/test_mlp.py`` is loaded with its
``from sklearn.neural_network import MLPClassifier, MLPRegressor`` line swapped
for our estimators, and every test in it is collected here. Nothing of it is
copied into this project: the module is read from the installed scikit-learn.
Tests that reach into scikit-learn's private internals are skipped, each with
its reason; every other failure is a break of the drop-in promise.
"""

import importlib.util
import types

import pytest

_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
_SWAP = (
    "from sknn_large import LargeMLPClassifier as MLPClassifier, "
    "LargeMLPRegressor as MLPRegressor"
)

# Each of these reads or writes private attributes of sklearn's implementation.
_PRIVATE = {
    "test_fit": "sets sklearn's private velocity and gradient buffers by hand",
    "test_gradient": "calls sklearn's private _loss_grad_lbfgs",
    "test_learning_rate_warmstart": "reads sklearn's private _optimizer object",
    "test_adaptive_learning_rate": "reads sklearn's private _optimizer object",
}


def _load_swapped() -> types.ModuleType:
    spec = importlib.util.find_spec("sklearn.neural_network.tests.test_mlp")
    source = open(spec.origin, encoding="utf-8").read()
    assert _IMPORT in source, "sklearn's test module changed its import line"
    module = types.ModuleType("sknn_large_swapped_test_mlp")
    module.__file__ = spec.origin
    exec(compile(source.replace(_IMPORT, _SWAP), spec.origin, "exec"), module.__dict__)
    return module


_swapped = _load_swapped()

for _name, _obj in vars(_swapped).items():
    if _name.startswith("test_") and callable(_obj):
        if _name in _PRIVATE:
            _obj = pytest.mark.skip(reason=_PRIVATE[_name])(_obj)
        globals()[_name] = _obj
