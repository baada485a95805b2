"""Tabular data: preparing mixed-type tables for multi-layer perceptrons.

``TabularPreprocessor`` turns a pandas DataFrame as it comes (numbers,
categories, text, booleans, missing values) into the float32 array an MLP
trains on: robust-scaled and smoothly clipped numbers, missing indicators,
one-hot columns and integer codes for learned embeddings.
``TabularMLPClassifier`` and ``TabularMLPRegressor`` put it in front of an
ensemble of networks trained together, with defaults chosen on real tables.
"""

from ._base import auto_batch_size
from ._estimators import TabularMLPClassifier, TabularMLPRegressor
from ._preprocessing import TabularPreprocessor

__all__ = [
    "TabularMLPClassifier",
    "TabularMLPRegressor",
    "TabularPreprocessor",
    "auto_batch_size",
]
