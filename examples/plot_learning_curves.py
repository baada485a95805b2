"""
Learning curves with and without early stopping
===============================================

Every fitted network keeps its history: ``loss_curve_`` holds the training
loss after each epoch and, with ``early_stopping=True``, ``validation_scores_``
holds the accuracy on a held-out validation split.
:class:`~sknn_large.TrainingCurveDisplay` draws both, the scores on a second
y-axis, and marks the best epoch.

Here two copies of one network are trained on scikit-learn's digits: one
runs a fixed number of epochs, the other stops once its validation accuracy
has stalled and keeps the weights of its best epoch.
"""

# %%
# Train both models
# -----------------
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from sknn_large import LargeMLPClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

params = dict(
    hidden_layer_sizes=(64,),
    batch_size=128,
    learning_rate_init=0.01,
    max_iter=60,
    random_state=0,
)
fixed = LargeMLPClassifier(**params)
with warnings.catch_warnings():
    # Running all 60 epochs is the point of this model.
    warnings.simplefilter("ignore", ConvergenceWarning)
    fixed.fit(X_train, y_train)
stopped = LargeMLPClassifier(early_stopping=True, n_iter_no_change=8, **params)
stopped.fit(X_train, y_train)

for name, model in [("fixed epochs", fixed), ("early stopping", stopped)]:
    accuracy = accuracy_score(y_test, model.predict(X_test))
    print(f"{name}: epochs={model.n_iter_} test accuracy={accuracy:.3f}")
print(f"early stopping: best validation accuracy={stopped.best_validation_score_:.3f}")

# %%
# Plot the curves
# ---------------
# Without early stopping only the training loss exists, and the marked epoch
# is the one with the lowest loss. With it, the validation accuracy (right
# axis) shows where the network stopped improving on unseen data; those are
# the weights the model keeps, even though training went on for a few more
# epochs to confirm the stall.
import matplotlib.pyplot as plt

from sknn_large import TrainingCurveDisplay

fig, (ax_fixed, ax_stopped) = plt.subplots(1, 2, figsize=(11, 4))
TrainingCurveDisplay.from_estimator(fixed, ax=ax_fixed)
ax_fixed.set_title(f"Fixed {fixed.n_iter_} epochs")
display = TrainingCurveDisplay.from_estimator(stopped, ax=ax_stopped)
ax_stopped.set_title(f"Early stopping (best epoch {display.best_epoch_})")
fig.tight_layout()
plt.show()
