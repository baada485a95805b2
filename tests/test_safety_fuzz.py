"""Mutated model files and checkpoints: the library's own error or the same model.

Property tests (hypothesis, a few seconds each) over three kinds of mutation:

- raw damage: flipped, cut, inserted or repeated bytes anywhere in the file;
- a rewritten safetensors header (dtypes, shapes, byte ranges edited);
- deliberate forgeries: a value anywhere in the payload replaced by hostile
  JSON (huge string dtypes, wrong tags, absurd shapes) and the digest
  recomputed, as anyone editing a file can.

Damage must end in :class:`~sknn_large.ModelFileError` (or
:class:`~sknn_large._checkpoint.CheckpointError`) or in a model that predicts
exactly as the original. A forgery has a valid digest, so it may load as
another model; it must still end in the library's own error or in a model that
predicts without error. Every attempt runs under a timer (no hang) and under
tracemalloc, whose peak must stay within a small multiple of the file's size.
"""

import copy
import io
import json
import os
import signal
import tracemalloc
import warnings
from datetime import timedelta

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sknn_large import LargeMLPClassifier, ModelFileError, _checkpoint, load
from sknn_large._engine import TrainState
from sknn_large._persist import _digest, from_bytes, to_bytes

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs POSIX timers"
)

FUZZ = settings(
    max_examples=40,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Peak memory a load may trace: a small multiple of the file, plus a little for
# the interpreter's own bookkeeping. A legitimate load peaks near 5x.
_MEMORY_FACTOR = 16
_MEMORY_SLACK = 256 * 2**10
_SECONDS = 10


class _Hang(Exception):
    pass


def _bounded(fn, size):
    """Run ``fn`` under a timer and tracemalloc; return (result or error, peak)."""

    def alarm(signum, frame):
        raise _Hang(f"no answer after {_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, _SECONDS)
    tracemalloc.start()
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = fn()
        except _Hang:
            raise
        except Exception as exc:  # classified by the caller
            result = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert peak <= _MEMORY_FACTOR * size + _MEMORY_SLACK, (peak, size)
    return result


# ------------------------------------------------------------------ model files


@pytest.fixture(scope="module")
def model():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    est = LargeMLPClassifier(
        hidden_layer_sizes=(3,),
        max_iter=3,
        dropout=0.1,
        early_stopping=True,
        device="cpu",
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    data = to_bytes(est)
    # One load outside the measurements: first calls fill caches (imports,
    # torch's lazy initialisation) that later loads do not pay for.
    from_bytes(data).predict_proba(X)
    return data, X, est.predict_proba(X)


def _split(data: bytes):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


@st.composite
def damaged(draw, data: bytes):
    """``data`` with random bytes flipped, cut, inserted or repeated."""
    blob = bytearray(data)
    header_end = 8 + int.from_bytes(data[:8], "little")
    for _ in range(draw(st.integers(1, 4), label="edits")):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]), label="kind")
        # Half of the edits hit the header, where the structure lives.
        hi = draw(st.sampled_from([header_end, len(blob)]), label="region")
        i = draw(st.integers(0, max(0, min(hi, len(blob)) - 1)), label="at")
        if kind == "flip" and blob:
            blob[i] ^= draw(st.integers(1, 255), label="xor")
        elif kind == "cut":
            blob = blob[: draw(st.integers(0, len(blob)), label="length")]
        elif kind == "insert":
            blob[i:i] = draw(st.binary(min_size=1, max_size=16), label="bytes")
        else:
            blob[i:i] = blob[i : i + draw(st.integers(1, 64), label="span")]
    return bytes(blob)


def _assert_same_or_refused(result, X, expected):
    if isinstance(result, ModelFileError):
        return
    if isinstance(result, Exception):
        raise AssertionError(f"{type(result).__name__}: {result}") from result
    np.testing.assert_array_equal(result.predict_proba(X), expected)


@FUZZ
@given(data=st.data())
def test_damaged_model_files_are_refused_or_identical(data, model, tmp_path):
    # Raw damage to a model file (bytes or file on disk) ends in ModelFileError
    # or in the very same model; never another exception, a hang or a blow-up.
    original, X, expected = model
    blob = data.draw(damaged(original), label="file")
    _assert_same_or_refused(_bounded(lambda: from_bytes(blob), len(blob)), X, expected)
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob)
    _assert_same_or_refused(_bounded(lambda: load(path), len(blob)), X, expected)


@FUZZ
@given(data=st.data())
def test_rewritten_headers_are_refused_or_identical(data, model):
    # An edited safetensors header (dtype, shape or byte range of a tensor,
    # re-encoded as valid JSON) is refused or changes nothing.
    original, X, expected = model
    header, body = _split(original)
    name = data.draw(st.sampled_from(sorted(header)), label="entry")
    entry = header[name]
    if name != "__metadata__":
        field = data.draw(
            st.sampled_from(["dtype", "shape", "data_offsets", "extra"]), label="field"
        )
        entry[field] = data.draw(
            st.one_of(
                st.sampled_from(["F32", "F64", "I64", "U8", "BOOL", "F8_E4M3", "x"]),
                st.lists(st.integers(-1, 2**40), max_size=3),
                st.integers(-(2**70), 2**70),
            ),
            label="value",
        )
    else:
        key = data.draw(
            st.sampled_from(["format", "format_version", "payload", "x"]), label="key"
        )
        entry[key] = data.draw(st.text(max_size=8), label="value")
    blob = _join(header, body)
    _assert_same_or_refused(_bounded(lambda: from_bytes(blob), len(blob)), X, expected)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_DTYPES = st.sampled_from(
    [
        "<U50000000",
        "<U536870911",
        "<U2",
        "<i8",
        "<u8",
        "|b1",
        "<f8",
        "<f16",
        "|O",
        "V8",
        "<c16",
        "<M8[s]",
        "S5",
        "(3,)i8",
        "x",
    ]
)
_TAGGED = st.one_of(
    st.builds(
        lambda d, n, v: {"__ndarray__": [d, n, v]},
        _DTYPES,
        st.lists(st.integers(-1, 10**12), max_size=2),
        st.lists(_SCALARS, max_size=4),
    ),
    st.builds(lambda d, v: {"__scalar__": [d, v]}, _DTYPES, _SCALARS),
    st.builds(
        lambda v: {"__tensor__": v},
        st.sampled_from(["state.0", "state.3", "state.999", "module.0.weight"]),
    ),
    st.builds(
        lambda v: {"__device__": v}, st.sampled_from(["meta", "cpu", "cuda:7", "xla"])
    ),
    st.builds(
        lambda v: {"__torch_dtype__": v},
        st.sampled_from(["float32", "float64", "int64", "x"]),
    ),
    st.builds(lambda v: {"__numpy_dtype__": v}, _DTYPES),
    st.builds(lambda v: {"__tuple__": v}, st.lists(_SCALARS, max_size=3)),
    st.builds(
        lambda v: {"__dict__": v},
        st.lists(st.lists(_SCALARS, min_size=2, max_size=2), max_size=3),
    ),
    st.builds(lambda v: {"__generator__": v}, _SCALARS),
    st.builds(lambda v: {"__random_state__": v}, _SCALARS),
    st.builds(
        lambda v: {"__train_state__": v},
        st.dictionaries(st.text(max_size=6), _SCALARS, max_size=3),
    ),
    st.just({"__reduce__": ["os.system", "echo pwned"]}),
)
_HOSTILE = st.recursive(
    _SCALARS | _TAGGED,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node, prefix=()):
    """Every place in a JSON tree where a value can be replaced or added."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
        yield (*prefix, "__new__")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _replace(node, path, value):
    if not path:
        return value
    *parents, last = path
    for key in parents:
        node = node[key]
    node[last] = value
    return None


@FUZZ
@given(data=st.data())
def test_forged_model_files_end_in_our_error(data, model):
    # A forgery (any value replaced by hostile JSON, the digest recomputed)
    # ends in ModelFileError or in a model that predicts; no other exception,
    # no hang, and no allocation beyond a small multiple of the file's size.
    original, X, _ = model
    header, body = _split(original)
    payload = json.loads(header["__metadata__"]["payload"])
    path = data.draw(st.sampled_from(list(_paths(payload))), label="path")
    value = data.draw(_HOSTILE, label="value")
    payload = _replace(payload, path, value) or payload
    text = json.dumps(payload)
    tensors = safetensors.torch.load(original)
    header["__metadata__"]["payload"] = text
    header["__metadata__"]["sha256"] = _digest(text, tensors)
    blob = _join(header, body)
    result = _bounded(lambda: from_bytes(blob), len(blob))
    if isinstance(result, ModelFileError):
        return
    if isinstance(result, Exception):
        raise AssertionError(f"{type(result).__name__}: {result}") from result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result.predict(X[:5])


# ------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    """A real checkpoint payload, its bytes, and the network it belongs to."""
    original, X, _ = model
    est = from_bytes(original)
    rng = _checkpoint.rng_to_payload(np.random.RandomState(0))
    payload = _checkpoint.make_payload(
        est.module_,
        est._state,
        fingerprint="f" * 64,
        rng_start=rng,
        global_rng=est._state.dropout_rng,
    )
    path = tmp_path_factory.mktemp("ckpt") / "run.ckpt"
    _checkpoint.write_atomic(path, payload)
    return path.read_bytes(), est.module_, _checkpoint.read(path)


def _restore(path, module):
    payload = _checkpoint.read(path)
    fresh = copy.deepcopy(module)
    state = TrainState(generator=torch.Generator())
    _checkpoint.restore_state(payload, fresh, state)
    return fresh, state


def _resumed_digest(module, state):
    """A digest of everything a resume takes from a checkpoint."""
    rebuilt = _checkpoint.make_payload(
        module,
        state,
        fingerprint="",
        rng_start={},
        global_rng=state.dropout_rng,
    )
    return _checkpoint.digest(rebuilt)


@FUZZ
@given(data=st.data())
def test_damaged_checkpoints_are_refused_or_identical(data, checkpoint, tmp_path):
    # Raw damage to a checkpoint is refused with CheckpointError or resumes
    # exactly the saved weights, moments and generators.
    original, module, saved = checkpoint
    blob = data.draw(damaged(original), label="file")
    path = tmp_path / "run.ckpt"
    path.write_bytes(blob)
    result = _bounded(lambda: _restore(path, module), len(blob))
    if isinstance(result, _checkpoint.CheckpointError):
        assert str(path) in str(result)
        return
    if isinstance(result, Exception):
        raise AssertionError(f"{type(result).__name__}: {result}") from result
    fresh, state = result
    reference = _restore_reference(saved, module)
    assert _resumed_digest(fresh, state) == _resumed_digest(*reference)


@pytest.mark.parametrize("head", [b"X\x00K\x03", b"X\xff\xff\xff", b"\x80\x02}q"])
def test_checkpoint_not_starting_as_a_zip_is_refused_in_bounded_memory(
    head, checkpoint, tmp_path
):
    # A damaged zip header sent torch.load to its legacy pickle loader, which
    # allocated what four bytes said (67 MB for a 22 kB file; the first head
    # is the damage this test's fuzzing found) before failing.
    original, module, _ = checkpoint
    blob = head + original[len(head) :]
    path = tmp_path / "run.ckpt"
    path.write_bytes(blob)
    result = _bounded(lambda: _restore(path, module), len(blob))
    assert isinstance(result, _checkpoint.CheckpointError)
    assert str(path) in str(result) and "zip" in str(result)


def _restore_reference(saved, module):
    fresh = copy.deepcopy(module)
    state = TrainState(generator=torch.Generator())
    _checkpoint.restore_state(saved, fresh, state)
    return fresh, state


_TENSORS = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 5), max_size=3),
    st.sampled_from(
        [torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool]
    ),
)
_PY_HOSTILE = st.recursive(
    _SCALARS | _TENSORS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.one_of(st.text(max_size=6), st.integers(0, 5)), inner, max_size=3
        )
    ),
    max_leaves=5,
)


def _py_paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _py_paths(value, (*prefix, key))
        yield (*prefix, "__new__")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _py_paths(value, (*prefix, i))


@FUZZ
@given(data=st.data())
def test_forged_checkpoints_end_in_our_error(data, checkpoint, tmp_path):
    # A checkpoint edited anywhere and re-sealed with a valid digest ends in
    # CheckpointError naming the file, or restores; never another exception.
    original, module, saved = checkpoint
    payload = torch.load(io.BytesIO(original), weights_only=True)
    payload.pop("sha256")
    where = data.draw(st.sampled_from(list(_py_paths(payload))[1:]), label="path")
    _replace(payload, where, data.draw(_PY_HOSTILE, label="value"))
    path = tmp_path / "run.ckpt"
    _checkpoint.write_atomic(path, payload)
    size = os.path.getsize(path)
    result = _bounded(lambda: _restore(path, module), size)
    if isinstance(result, _checkpoint.CheckpointError):
        assert str(path) in str(result)
        return
    if isinstance(result, Exception):
        raise AssertionError(f"{type(result).__name__}: {result}") from result
