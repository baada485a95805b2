"""The one error loading raises for a file's contents, and its phrasings."""

from __future__ import annotations


class ModelFileError(ValueError):
    """A model file cannot be loaded: the one error :func:`load` raises for it.

    Raised when the file is not an sknn_large model file (another file type, or
    a safetensors file without sknn_large metadata), when it is truncated or
    corrupted, when its contents were modified after it was written, and when it
    was written in a newer format version than this sknn_large reads. Nothing is
    half-loaded: the error is raised before a model is returned.
    """


def _corrupt(message: str) -> ModelFileError:
    return ModelFileError(f"Corrupted model file: {message}")


def _unreadable(why: str) -> ModelFileError:
    return ModelFileError(
        "Not a readable model file: it is truncated, corrupted, or not a"
        f" safetensors file ({why})."
    )


def _str(value) -> str:
    if not isinstance(value, str):
        raise _corrupt(f"expected a string, got {value!r}.")
    return value


def _as_dict(obj, what: str) -> dict:
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise _corrupt(f"{what} is not a mapping of names.")
    return obj
