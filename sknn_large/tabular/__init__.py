"""Tabular data: preparing mixed-type tables for multi-layer perceptrons.

``TabularPreprocessor`` turns a pandas DataFrame as it comes (numbers,
categories, text, booleans, missing values) into the float32 array an MLP
trains on: robust-scaled and smoothly clipped numbers, missing indicators,
one-hot columns and integer codes for learned embeddings.
"""

from ._preprocessing import TabularPreprocessor

__all__ = ["TabularPreprocessor"]
