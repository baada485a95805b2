"""
The classic workflow, start to finish
=====================================

A neural-network project goes through the same steps whatever the library:
preprocess the data, build the network, initialise it, train it while
watching a validation set, test it once on data it never saw, and tune its
hyper-parameters. This example walks through each step with
:class:`~sknn_large.LargeMLPClassifier` on scikit-learn's bundled hand-written
digits (8x8 images, 10 classes), reporting accuracy, recall and F1 (macro
averages over the classes).
"""

# %%
# 1. Hold out a test set
# ----------------------
# The test set is touched once, at the very end. Everything else (training,
# early stopping's validation split, cross-validated tuning) happens inside
# the training part.
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
print(f"train: {X_train.shape}, test: {X_test.shape}")

# %%
# 2. Preprocess and build
# -----------------------
# A :class:`~sklearn.preprocessing.StandardScaler` centres each pixel and
# scales it to unit variance; inside a pipeline it is fitted on training data
# only, so nothing leaks from validation or test folds. The network has one
# hidden layer of 32 ReLU units and a softmax output over the 10 classes.
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier

model = Pipeline(
    [
        ("scale", StandardScaler()),
        (
            "clf",
            LargeMLPClassifier(
                hidden_layer_sizes=(32,),
                batch_size=128,
                learning_rate_init=0.01,
                max_iter=50,
                early_stopping=True,
                validation_fraction=0.1,
                n_iter_no_change=5,
                random_state=0,
            ),
        ),
    ]
)

# %%
# 3. Initialise, train and validate
# ---------------------------------
# ``random_state`` fixes the initial weights (drawn exactly as scikit-learn's
# MLP draws them) and the shuffling. With ``early_stopping=True`` a
# stratified 10 % of the training data is held out; training stops once the
# validation accuracy has not improved for ``n_iter_no_change`` epochs and the
# weights of the best epoch are restored.
model.fit(X_train, y_train)
clf = model.named_steps["clf"]
print(f"weight shapes: {[w.shape for w in clf.coefs_]}")
print(f"epochs run: {clf.n_iter_}")
print(f"best validation accuracy: {clf.best_validation_score_:.3f}")

# %%
# 4. Test
# -------
from sklearn.metrics import accuracy_score, f1_score, recall_score


def report(name, estimator):
    """Print accuracy, macro recall and macro F1 on the test set."""
    y_pred = estimator.predict(X_test)
    print(
        f"{name}: accuracy={accuracy_score(y_test, y_pred):.3f} "
        f"recall={recall_score(y_test, y_pred, average='macro'):.3f} "
        f"F1={f1_score(y_test, y_pred, average='macro'):.3f}"
    )


report("baseline", model)

# %%
# 5. Tune
# -------
# :class:`~sklearn.model_selection.GridSearchCV` tries every combination of
# the penalty, its strength, dropout and the solver, scoring each by 3-fold
# cross-validated macro F1 on the training data. ``refit`` retrains the best
# combination on all of it. ``penalty``, ``dropout`` and ``solver="adamw"``
# are parameters that scikit-learn's own MLP does not have.
from sklearn.model_selection import GridSearchCV

param_grid = {
    "clf__penalty": ["l2", "elasticnet"],
    "clf__alpha": [1e-4, 1e-2],
    "clf__dropout": [0.0, 0.2],
    "clf__solver": ["adam", "adamw"],
}
search = GridSearchCV(model, param_grid, scoring="f1_macro", cv=3)
search.fit(X_train, y_train)
print(f"best parameters: {search.best_params_}")
print(f"best cross-validated F1: {search.best_score_:.3f}")
report("tuned", search.best_estimator_)
