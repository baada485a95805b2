"""
A DataFrame as it is: TabularMLPRegressor
=========================================

:class:`~sknn_large.TabularMLPRegressor` takes a pandas DataFrame with
numeric and categorical columns as it is: it scales, clips and bins the
numbers, one-hot encodes the categories and standardises the target itself,
then trains an ensemble of networks together with a per-batch cosine schedule
and best-epoch selection.

This example makes scikit-learn's diabetes table look like a real one (the
sex column as text, a missing value here and there, the target in its own
units) and cross-validates three models on it: scikit-learn's
``MLPRegressor`` behind the preprocessing a user would have to write,
``TabularMLPRegressor`` on the table as it is, and gradient-boosted trees.
"""

# %%
# A table with text and missing values
# ------------------------------------
import time
import warnings

import numpy as np
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sknn_large import TabularMLPRegressor

X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
X["sex"] = X["sex"].map({1.0: "F", 2.0: "M"}).astype("category")
rng = np.random.RandomState(0)
X.loc[rng.rand(len(X)) < 0.05, "bmi"] = np.nan
print(X.dtypes.astype(str).value_counts().to_dict())

# %%
# Three models, the same folds
# ----------------------------
numeric = [c for c in X.columns if c != "sex"]
by_hand = make_pipeline(
    make_column_transformer(
        (OneHotEncoder(), ["sex"]),
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric),
    ),
    MLPRegressor(early_stopping=True, random_state=0),
)
models = {
    "sklearn MLPRegressor": by_hand,
    "TabularMLPRegressor": TabularMLPRegressor(random_state=0),
    "HistGradientBoosting": HistGradientBoostingRegressor(
        categorical_features="from_dtype", random_state=0
    ),
}
folds = KFold(5, shuffle=True, random_state=0)
for name, model in models.items():
    start = time.perf_counter()
    with warnings.catch_warnings():
        # sklearn's MLP on the raw target needs more epochs than its default.
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, X, y, cv=folds, scoring="r2")
    seconds = time.perf_counter() - start
    print(f"{name}: R2={scores.mean():.3f} ± {scores.std():.3f} ({seconds:.1f} s)")

# %%
# The target is in its own units (a disease-progression score from 25 to
# 346): scikit-learn's MLP, trained on it as given, is far from converged
# when it stops, while TabularMLPRegressor standardises it internally and
# averages several networks. With 442 rows this is a small, noisy table;
# ``benchmarks/bench_tabular.py`` compares the three on twelve larger real
# tables.
