"""
Quick start: a drop-in MLPClassifier
====================================

Train :class:`~sknn_large.LargeMLPClassifier` on scikit-learn's bundled
breast-cancer data, inside a :class:`~sklearn.pipeline.Pipeline` with a
:class:`~sklearn.preprocessing.StandardScaler`, and report accuracy, recall
and F1 on a held-out test set.

The estimator takes the same parameters as
:class:`sklearn.neural_network.MLPClassifier`; swapping the import is all it
takes. It trains with PyTorch, on a GPU when one is present (``device="auto"``)
and on the CPU otherwise.
"""

# %%
# Load the data and hold out a test set
# -------------------------------------
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)

# %%
# Build and train the pipeline
# ----------------------------
# Scaling the inputs matters for neural networks: unscaled features slow
# down or derail gradient descent.
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sknn_large import LargeMLPClassifier

model = make_pipeline(
    StandardScaler(),
    LargeMLPClassifier(
        hidden_layer_sizes=(32,), learning_rate_init=0.01, random_state=0
    ),
)
model.fit(X_train, y_train)
clf = model[-1]
print(f"trained on {clf.device_} for {clf.n_iter_} epochs")

# %%
# Evaluate on the test set
# ------------------------
from sklearn.metrics import accuracy_score, f1_score, recall_score

y_pred = model.predict(X_test)
print(f"accuracy: {accuracy_score(y_test, y_pred):.3f}")
print(f"recall:   {recall_score(y_test, y_pred):.3f}")
print(f"F1:       {f1_score(y_test, y_pred):.3f}")
