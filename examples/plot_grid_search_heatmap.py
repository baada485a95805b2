"""
Tuning the penalty: a grid-search heatmap
=========================================

:class:`~sknn_large.LargeMLPClassifier` adds L1 and elastic-net penalties to
the L2 penalty of scikit-learn's MLP. Which one works best, and how strong
should it be? :class:`~sklearn.model_selection.GridSearchCV` answers by
cross-validation, and a heatmap of its ``cv_results_`` shows the whole
picture at once: every penalty in a row, every strength ``alpha`` in a column.
"""

# %%
# Search alpha x penalty
# ----------------------
# The digits are scaled to [0, 1]; each fit is short (early stopping, small
# network) so that the 12 combinations x 3 folds run in seconds on a CPU.
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from sknn_large import LargeMLPClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0

alphas = [1e-3, 1e-1, 1.0, 10.0]
penalties = ["l2", "l1", "elasticnet"]
clf = LargeMLPClassifier(
    hidden_layer_sizes=(32,),
    batch_size=128,
    learning_rate_init=0.01,
    max_iter=40,
    early_stopping=True,
    n_iter_no_change=5,
    random_state=0,
)
search = GridSearchCV(
    clf, {"alpha": alphas, "penalty": penalties}, scoring="accuracy", cv=3
)
search.fit(X, y)
print(f"best parameters: {search.best_params_}")
print(f"best cross-validated accuracy: {search.best_score_:.3f}")

# %%
# The heatmap
# -----------
# ``cv_results_`` lists the candidates in the grid's order; reshape their mean
# scores into a penalty x alpha table. Strong L1 drives whole weight columns
# to zero and the accuracy collapses first; L2 tolerates much larger alphas.
import matplotlib.pyplot as plt

results = search.cv_results_
scores = np.empty((len(penalties), len(alphas)))
for params, score in zip(results["params"], results["mean_test_score"], strict=True):
    scores[penalties.index(params["penalty"]), alphas.index(params["alpha"])] = score

fig, ax = plt.subplots(figsize=(6, 3))
image = ax.imshow(scores, cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
ax.set_yticks(range(len(penalties)), penalties)
ax.set_xlabel("alpha")
ax.set_ylabel("penalty")
for (i, j), value in np.ndenumerate(scores):
    color = "black" if value > 0.5 else "white"
    ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color)
fig.colorbar(image, ax=ax, label="mean CV accuracy")
ax.set_title("Cross-validated accuracy by penalty and alpha")
fig.tight_layout()
plt.show()
