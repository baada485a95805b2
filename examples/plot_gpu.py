"""
Training on a GPU (and on a CPU with the same code)
===================================================

``device="auto"``, the default, trains on the first CUDA GPU when PyTorch
sees one and on the CPU otherwise, so one script runs everywhere. The device
is chosen when fitting, never when the estimator is created, and the choice
is recorded in ``device_``. Whatever the device, inputs and outputs are NumPy
arrays: data moves to the device for training and predictions come back to
the host.

``precision`` sets the arithmetic. ``"auto"`` trains the stochastic solvers
in float32 (``coefs_`` and predictions still follow the input's dtype);
``"bfloat16"`` keeps float32 weights but runs the matrix products in
bfloat16, which is much faster on recent NVIDIA GPUs (and on CPUs with AMX)
for wide layers and changes the results slightly. It also runs on other
CPUs, where it brings no speed-up for networks this small.
"""

# %%
# Train with device="auto"
# ------------------------
import time
import warnings

import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from sknn_large import LargeMLPClassifier

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype("float32")
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
print(f"CUDA available: {torch.cuda.is_available()}")

params = dict(
    hidden_layer_sizes=(128, 128),
    batch_size=128,
    learning_rate_init=0.005,
    max_iter=30,
    early_stopping=True,
    random_state=0,
)
# The first fit in a process pays one-off start-up costs (loading kernels,
# creating the CUDA context); a one-epoch warm-up keeps them out of the timings.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    LargeMLPClassifier(hidden_layer_sizes=(8,), max_iter=1).fit(X_train, y_train)

for precision in ["auto", "bfloat16"]:
    clf = LargeMLPClassifier(device="auto", precision=precision, **params)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    accuracy = accuracy_score(y_test, clf.predict(X_test))
    print(
        f"precision={precision}: device={clf.device_} epochs={clf.n_iter_} "
        f"fit time={seconds:.2f}s test accuracy={accuracy:.3f}"
    )

# %%
# Where things live after fitting
# -------------------------------
# The torch network stays on the training device as ``module_``; the
# scikit-learn attributes are NumPy arrays on the host, in the input's dtype.
print(f"module_ parameters on: {next(clf.module_.parameters()).device}")
print(f"coefs_[0]: {type(clf.coefs_[0]).__name__} {clf.coefs_[0].dtype}")

# %%
# Choosing a device explicitly
# ----------------------------
# ``device="cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` pin the device;
# asking for one that does not exist raises a ``ValueError`` at fit time
# that says so. A model trained on a GPU pickles with its weights on the CPU,
# so it loads and predicts on a machine without one.
