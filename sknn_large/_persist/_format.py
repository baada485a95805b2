"""The file: a safetensors header checked before its body, digest, metadata."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re

import safetensors
import safetensors.torch
import torch

from .._io import NotARegularFileError, open_regular, read_exactly
from ._errors import ModelFileError, _corrupt, _unreadable

FORMAT = "sknn_large"
# 2: composites (ensembles, tabular models) with members' records and
# prefixed tensors. A file of version 1 is a network's, and still loads.
FORMAT_VERSION = 2
# As safetensors itself: a header this large is not a model file's.
_MAX_HEADER_BYTES = 100_000_000
# A record's own tensors are module.* and state.*; a member's carry its
# attribute (and index in a list) before them: ensemble_.estimators_.0.module.*
_TENSOR_NAME = re.compile(
    r"(?:[a-z][a-z0-9_]{0,62}_\.(?:[0-9]{1,9}\.)?){0,4}"
    r"(?:module|state)\.[A-Za-z0-9_.]{1,200}"
)
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def pack(payload: str, tensors: dict[str, torch.Tensor]) -> bytes:
    """A model file's bytes: ``tensors`` and metadata holding ``payload``."""
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "payload": payload,
        "sha256": _digest(payload, tensors),
    }
    return safetensors.torch.save(tensors, metadata=metadata)


def read_file(path) -> bytes:
    """The bytes of the regular file ``path``, its header checked first."""
    try:
        fd, size = open_regular(path)
    except NotARegularFileError as exc:
        raise ModelFileError(f"Not a model file: {exc}") from exc
    try:
        # The header says what the body must be: check it before reading more.
        head = read_exactly(fd, 8)
        n = _header_length(head, size)
        _check_header(_decode_header(read_exactly(fd, n)), size - 8 - n)
        os.lseek(fd, 0, os.SEEK_SET)
        data = read_exactly(fd, size)
    finally:
        os.close(fd)
    return data


def _header_length(head: bytes, size: int) -> int:
    """The header's length from the first 8 bytes, checked against the size."""
    if len(head) < 8:
        raise _unreadable("it is shorter than a safetensors header")
    n = int.from_bytes(head[:8], "little")
    if n > min(size - 8, _MAX_HEADER_BYTES):
        raise _unreadable(
            f"its header claims {n} bytes but the file has {size - 8} after it"
        )
    return n


def _decode_header(raw: bytes) -> dict:
    try:
        header = json.loads(raw)
    except Exception as exc:  # ValueError, UnicodeError, RecursionError
        raise _unreadable(f"its header is not JSON ({type(exc).__name__})") from exc
    if not isinstance(header, dict):
        raise _unreadable("its header is not a JSON object")
    return header


def _check_header(header: dict, body_bytes: int) -> dict:
    """Check the metadata's format and the tensor table; return the metadata.

    Every tensor must have a known dtype and a shape whose size is exactly its
    byte range, the ranges must tile the body, and the names must be the ones
    :func:`save` writes: so nothing larger than the file is ever allocated.
    """
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(
            "Not an sknn_large model file: a safetensors file without sknn_large's"
            " metadata (was it written by sknn_large.save?)."
        )
    _check_version(metadata)
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (
            isinstance(name, str)
            and _TENSOR_NAME.fullmatch(name)
            and isinstance(info, dict)
            and set(info) == {"dtype", "shape", "data_offsets"}
            and isinstance(info["dtype"], str)
            and info["dtype"] in _SAFETENSORS_ITEMSIZE
            and _is_int_list(info["shape"])
            and _is_int_list(info["data_offsets"])
            and len(info["data_offsets"]) == 2
        ):
            raise _corrupt(f"its tensor table entry {str(name)[:80]!r} is malformed.")
        begin, end = info["data_offsets"]
        numel = math.prod(info["shape"])
        if end - begin != numel * _SAFETENSORS_ITEMSIZE[info["dtype"]]:
            raise _corrupt(f"tensor {name!r} does not fill its byte range.")
        spans.append((begin, end))
    spans.sort()
    edge = 0
    for begin, end in spans:
        if begin != edge:
            raise _corrupt("the tensors' byte ranges overlap or leave gaps.")
        edge = end
    if edge != body_bytes:
        raise _corrupt(
            f"the tensors take {edge} bytes but the file holds {body_bytes}."
        )
    return metadata


def _is_int_list(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    )


def _parse(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata, the header checked before the tensors are built."""
    n = _header_length(data[:8], len(data))
    metadata = _check_header(_decode_header(data[8 : 8 + n]), len(data) - 8 - n)
    try:
        tensors = safetensors.torch.load(bytes(data))
    except Exception as exc:
        raise _unreadable(f"{type(exc).__name__}: {exc}") from exc
    return tensors, metadata


def _check_version(metadata: dict) -> None:
    version = metadata.get("format_version", "")
    if not (isinstance(version, str) and re.fullmatch("[0-9]{1,9}", version)):
        raise _corrupt(f"bad format version {version!r}.")
    if int(version) > FORMAT_VERSION:
        raise ModelFileError(
            f"The model file uses format version {int(version)}, newer than the"
            f" {FORMAT_VERSION} this sknn_large reads: upgrade sknn_large to load it."
        )


def _check_metadata(metadata: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Check the format version and the digest; return the decoded payload."""
    _check_version(metadata)
    payload = metadata.get("payload")
    expected = metadata.get("sha256")
    if not isinstance(payload, str) or not isinstance(expected, str):
        raise _corrupt("its payload or digest is missing.")
    actual = _digest(payload, tensors)
    if not hmac.compare_digest(actual.encode(), expected.encode()):
        raise ModelFileError(
            "The model file is corrupted or was modified after it was written: its"
            " contents do not match their SHA-256 digest."
        )
    try:
        decoded = json.loads(payload)
    except Exception as exc:  # ValueError, or RecursionError when nested deeply
        raise _corrupt(f"bad JSON payload ({exc}).") from exc
    if not isinstance(decoded, dict):
        raise _corrupt("the payload is not an object.")
    return decoded


def _digest(payload: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the payload and of each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()

    def put(part) -> None:
        part = memoryview(part).cast("B")
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)

    put(payload.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        put(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        put(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
