"""
Vectorised grid search and seed ensembles
=========================================

:class:`~sknn_large.model_selection.VectorizedGridSearchCV` takes the same
arguments as scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`,
but trains every (candidate, fold) fit that shares an architecture in one
batched run. Each fit still ends with exactly the weights it would have had
alone, so the ranking of the candidates is the one GridSearchCV gives.
"""

# %%
# A small search over the learning rate and the L2 strength
# ---------------------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from sknn_large import LargeMLPClassifier
from sknn_large.ensemble import LargeMLPEnsembleClassifier
from sknn_large.model_selection import VectorizedGridSearchCV

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", message=".*Maximum iterations.*")

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.5, random_state=0, stratify=y
)
pipe = make_pipeline(
    MinMaxScaler(),
    LargeMLPClassifier((32,), max_iter=20, device="cpu", random_state=0),
)
grid = {
    "largemlpclassifier__learning_rate_init": [3e-4, 1e-3, 3e-3, 1e-2],
    "largemlpclassifier__alpha": [1e-4, 1e-2, 1.0],
}
search = VectorizedGridSearchCV(pipe, grid, cv=3).fit(X_train, y_train)
print("best:", search.best_params_, f"cv accuracy {search.best_score_:.3f}")
print(f"held-out accuracy {search.score(X_test, y_test):.3f}")

# %%
# The cross-validated accuracy of every candidate
# -----------------------------------------------
scores = search.cv_results_["mean_test_score"].reshape(3, 4)
fig, ax = plt.subplots()
image = ax.imshow(scores, cmap="viridis")
ax.set_xticks(range(4), grid["largemlpclassifier__learning_rate_init"])
ax.set_yticks(range(3), grid["largemlpclassifier__alpha"])
ax.set_xlabel("learning_rate_init")
ax.set_ylabel("alpha")
fig.colorbar(image, label="mean CV accuracy")
ax.set_title("12 candidates x 3 folds, trained together")

# %%
# An ensemble of seeds, trained in one pass
# -----------------------------------------
# Eight networks that differ only by their seed, averaged.
ensemble = LargeMLPEnsembleClassifier(
    n_estimators=8,
    hidden_layer_sizes=(32,),
    max_iter=20,
    device="cpu",
    random_state=0,
).fit(X_train / 16, y_train)
members = [m.score(X_test / 16, y_test) for m in ensemble.estimators_]
print(f"members: mean {np.mean(members):.3f}, best {max(members):.3f}")
print(f"ensemble: {ensemble.score(X_test / 16, y_test):.3f}")
