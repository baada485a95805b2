"""scikit-learn's estimator checks, for both estimators and several solvers."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sknn_large import (
    LargeMLPClassifier,
    LargeMLPRegressor,
    TabularMLPClassifier,
    TabularMLPRegressor,
)
from sknn_large.ensemble import LargeMLPEnsembleClassifier, LargeMLPEnsembleRegressor

# The one place expected failures are declared, each with its reason. They are
# the ones scikit-learn itself declares for its MLP estimators.
_STOCHASTIC_SW = (
    "Stochastic solvers do not make sample_weight equivalent to repeating or "
    "removing samples (mini-batches differ); scikit-learn excuses its MLP alike."
)


def _expected_failed_checks(estimator):
    if getattr(estimator, "solver", "adam") == "lbfgs":
        return {}
    return {
        "check_sample_weight_equivalence_on_dense_data": _STOCHASTIC_SW,
        "check_sample_weight_equivalence_on_sparse_data": _STOCHASTIC_SW,
    }


ESTIMATORS = [
    LargeMLPClassifier(random_state=0),
    LargeMLPRegressor(random_state=0),
    # Fewer L-BFGS iterations and ensemble members than the defaults keep the
    # checks' own accuracy bars and cut their time by half.
    LargeMLPClassifier(solver="lbfgs", max_iter=60, random_state=0),
    LargeMLPRegressor(solver="lbfgs", max_iter=60, random_state=0),
    LargeMLPClassifier(solver="sgd", penalty="elasticnet", dropout=0.1, random_state=0),
    LargeMLPEnsembleClassifier(n_estimators=2, random_state=0),
    LargeMLPEnsembleRegressor(n_estimators=2, random_state=0),
    # Their defaults (4 members of 128 x 128) pass too; smaller ones are quicker.
    TabularMLPClassifier(n_estimators=2, hidden_layer_sizes=(32,), random_state=0),
    TabularMLPRegressor(n_estimators=2, hidden_layer_sizes=(32,), random_state=0),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    # Protects the drop-in promise: sklearn's own API contract, incl. param validation.
    check(estimator)
