"""
Side by side with scikit-learn's MLPClassifier
==============================================

:class:`~sknn_large.LargeMLPClassifier` takes the parameters of
:class:`sklearn.neural_network.MLPClassifier` with the same names and
defaults, and with the same ``random_state`` it starts from the same initial
weights. This example trains both on the same data with the same settings and
compares test accuracy and fit time.

On a network this small, on a CPU, neither is reliably faster: PyTorch's
fixed cost per mini-batch is as large as the arithmetic itself, and which one
wins depends on the machine and how busy it is. The PyTorch engine pulls
ahead with wide networks, large data and GPUs (the documentation's
performance notes point to measured figures).
"""

# %%
# Same data, same parameters
# --------------------------
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from sknn_large import LargeMLPClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
params = dict(
    hidden_layer_sizes=(64,),
    solver="adam",
    alpha=1e-4,
    batch_size=128,
    learning_rate_init=0.005,
    max_iter=200,
    early_stopping=True,
    random_state=0,
)
# Warm-up so that PyTorch's one-off start-up cost is not counted below.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    LargeMLPClassifier(hidden_layer_sizes=(8,), max_iter=1).fit(X_train, y_train)

results = {}
for estimator in [MLPClassifier(**params), LargeMLPClassifier(**params)]:
    name = type(estimator).__name__
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = accuracy_score(y_test, estimator.predict(X_test))
    results[name] = (accuracy, seconds)
    print(
        f"{name}: epochs={estimator.n_iter_} test accuracy={accuracy:.3f} "
        f"fit time={seconds:.2f}s"
    )

# %%
# The same swap works anywhere a scikit-learn estimator goes: pipelines,
# cross-validation, grid searches. Below, the two results as bars.
import matplotlib.pyplot as plt

names = list(results)
fig, (ax_acc, ax_time) = plt.subplots(1, 2, figsize=(8, 3))
ax_acc.bar(names, [results[n][0] for n in names], color=["tab:gray", "tab:blue"])
ax_acc.set_ylim(0.8, 1.0)
ax_acc.set_ylabel("test accuracy")
ax_time.bar(names, [results[n][1] for n in names], color=["tab:gray", "tab:blue"])
ax_time.set_ylabel("fit time (s)")
for ax in (ax_acc, ax_time):
    ax.tick_params(axis="x", labelsize=8)
fig.tight_layout()
plt.show()
