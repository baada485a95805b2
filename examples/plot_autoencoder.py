"""
A tiny autoencoder: the Keras one-liner
=======================================

A classic first Keras model is a small dense network fitted to reproduce its
own input::

    model = keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense(10, activation="relu"),
        keras.layers.Dense(64),  # linear output
    ])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, X, epochs=100)

With :class:`~sknn_large.LargeMLPRegressor` it is one line: the output layer
of a regressor is always linear, the loss is the squared error, Adam is the
default solver, and ``max_iter`` counts epochs. The 10-unit hidden layer is a
bottleneck, so the network has to learn a compressed code of the 64 pixels
of scikit-learn's bundled digit images.
"""

# %%
# The data: 8x8 digit images scaled to [0, 1]
# -------------------------------------------
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

X = load_digits().data / 16.0
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

# %%
# The model
# ---------
# ``penalty=None`` drops the L2 penalty scikit-learn applies by default (Keras
# adds none). ``n_iter_no_change=np.inf`` turns off the stopping rule, so all
# 100 epochs run as in Keras; reaching ``max_iter`` then raises scikit-learn's
# ``ConvergenceWarning``, which is expected here and silenced. Keras trains on
# batches of 32 by default; ``batch_size="auto"`` (200 here) is faster.
#
# Two conventions differ from Keras: ``loss_curve_`` reports *half* the mean
# squared error, and the gradient follows the squared error summed over the
# outputs rather than averaged. Adam's updates do not depend on such a
# constant factor, so training takes essentially the same path.
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from sknn_large import LargeMLPRegressor

autoencoder = LargeMLPRegressor(
    hidden_layer_sizes=(10,),
    activation="relu",
    solver="adam",
    max_iter=100,
    penalty=None,
    n_iter_no_change=np.inf,
    random_state=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    autoencoder.fit(X_train, X_train)

print(f"epochs: {autoencoder.n_iter_}")
print(f"final training loss (half MSE): {autoencoder.loss_:.4f}")

# %%
# How well does it reconstruct unseen images?
# -------------------------------------------
# Plain ``score`` averages R² over the 64 pixels, and a few corner pixels are
# almost always blank: their near-zero variance makes their R² meaningless.
# Weighting each pixel's R² by its variance gives the share of the images'
# variance that the 10-number code keeps.
from sklearn.metrics import mean_squared_error, r2_score

X_rec = autoencoder.predict(X_test)
r2 = r2_score(X_test, X_rec, multioutput="variance_weighted")
print(f"test reconstruction MSE: {mean_squared_error(X_test, X_rec):.4f}")
print(f"test R² (variance-weighted): {r2:.3f}")

# %%
# Originals (top) and their reconstructions from 10 numbers (bottom).
import matplotlib.pyplot as plt

fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for i in range(8):
    axes[0, i].imshow(X_test[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    axes[1, i].imshow(X_rec[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle("Digits and their 10-unit reconstructions")
plt.show()
