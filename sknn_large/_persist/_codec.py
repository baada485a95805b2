"""JSON codec for parameters and fitted attributes: a fixed set of types."""

from __future__ import annotations

import re
from dataclasses import fields

import numpy as np
import torch
from sklearn.preprocessing import LabelBinarizer

from .._data import EpochOrder
from .._data._feeds import _REPLAY_LIMIT
from .._engine import TrainState
from ._errors import _as_dict, _corrupt, _str

_TORCH_FLOATS = {
    str(dt).removeprefix("torch."): dt
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}
# Array dtype kinds a file may hold in JSON: bool, ints, floats, str, object.
_ARRAY_KINDS = "biufUO"
# Decoding may allocate at most this many bytes per byte of the file, in all:
# JSON spends at least two characters per number, so every legitimate array
# costs far less, and a crafted dtype such as '<U50000000' is refused up front.
_ALLOCATION_FACTOR = 4
_LABEL_BINARIZER_FIELDS = {
    "neg_label",
    "pos_label",
    "sparse_output",
    "y_type_",
    "sparse_input_",
    "classes_",
}
_DEVICE_TEXT = re.compile(r"(cpu|mps|cuda)(:[0-9]{1,4})?")
# Arrays of more than one dimension (a quantile table) travel as tensors, byte
# for byte; these are the numpy dtypes they may have, and their torch twins.
_TENSOR_ARRAY_DTYPES = {
    np.dtype(name): dt
    for name, dt in (
        ("bool", torch.bool),
        ("uint8", torch.uint8),
        ("int8", torch.int8),
        ("int16", torch.int16),
        ("int32", torch.int32),
        ("int64", torch.int64),
        ("float16", torch.float16),
        ("float32", torch.float32),
        ("float64", torch.float64),
    )
}


class _Encoder:
    """Python values to JSON; tensors are set aside and named by reference.

    Plain dicts keep their form when every key is a string not starting with
    ``__``; everything else is a one-key object whose key is a ``__tag__``.
    Arrays of one dimension (labels, names, categories, statistics) are JSON
    lists; numeric arrays of other shapes are tensors, named by reference.
    """

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def _add(self, tensor: torch.Tensor) -> dict:
        name = f"state.{len(self.tensors)}"
        self.tensors[name] = tensor
        return {"__tensor__": name}

    def __call__(self, obj):
        if isinstance(obj, np.generic):
            return {"__scalar__": [obj.dtype.str, obj.item()]}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self(v) for v in obj]
        if isinstance(obj, tuple):
            return {"__tuple__": [self(v) for v in obj]}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self(v) for k, v in obj.items()}
            return {"__dict__": [[self(k), self(v)] for k, v in obj.items()]}
        return self._tagged(obj)

    def _tagged(self, obj):
        if isinstance(obj, torch.Tensor):
            return self._add(obj.detach().cpu().contiguous())
        if isinstance(obj, np.ndarray):
            return {"__ndarray__": [obj.dtype.str, list(obj.shape), self._values(obj)]}
        if isinstance(obj, torch.dtype):
            return {"__torch_dtype__": str(obj).removeprefix("torch.")}
        if isinstance(obj, np.dtype):
            return {"__numpy_dtype__": obj.str}
        if isinstance(obj, torch.device):
            return {"__device__": str(obj)}
        if isinstance(obj, torch.Generator):
            return {"__generator__": self(obj.get_state())}
        if isinstance(obj, np.random.RandomState):
            return {"__random_state__": self(obj.get_state(legacy=True))}
        if isinstance(obj, TrainState):
            return {"__train_state__": self(_dataclass_dict(obj))}
        if isinstance(obj, EpochOrder):
            saved = obj.__getstate__()
            fields = ("start", "done", "n", "base")
            return {"__epoch_order__": self(tuple(saved[k] for k in fields))}
        if isinstance(obj, LabelBinarizer):
            return {"__label_binarizer__": self(vars(obj))}
        raise TypeError(f"A model file cannot hold a {type(obj).__name__}: {obj!r}")

    def _values(self, array: np.ndarray):
        if array.ndim != 1:
            if array.ndim < 2 or array.dtype not in _TENSOR_ARRAY_DTYPES:
                raise TypeError(
                    f"A model file cannot hold a {array.ndim}-D array of {array.dtype}."
                )
            return self._add(torch.from_numpy(np.array(array, order="C")))
        # An object array may hold numpy scalars: stored as the Python values
        # they equal (a category np.int64(3) is read back as 3).
        return self(
            [v.item() if isinstance(v, np.generic) else v for v in array.tolist()]
        )


def _dataclass_dict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


class _Budget:
    """Bytes decoding may still allocate; every record of a file draws on it."""

    def __init__(self, nbytes: int):
        self.left = nbytes

    def charge(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise _corrupt(
                f"it asks for {nbytes} bytes, more than its size can justify."
            )
        self.left -= nbytes


class _Decoder:
    """JSON back to the fixed set of types :class:`_Encoder` writes.

    Everything it allocates beyond the parsed JSON itself (arrays) is charged
    to ``budget`` bytes, checked before the allocation: a file cannot make it
    allocate more than a small multiple of its own size. The decoders of the
    records of one composite file share one :class:`_Budget`.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], budget):
        self.tensors = tensors
        self.used: set[str] = set()
        self.budget = budget if isinstance(budget, _Budget) else _Budget(budget)
        self._allowed = None  # tags allowed in the value being decoded
        self._kinds = _ARRAY_KINDS  # array dtype kinds allowed there
        self._tags = {
            "__scalar__": self._scalar,
            "__tuple__": lambda v: tuple(self._list(v)),
            "__dict__": self._dict,
            "__tensor__": self._tensor,
            "__ndarray__": self._ndarray,
            "__torch_dtype__": self._torch_dtype,
            "__numpy_dtype__": self._numpy_dtype,
            "__device__": self._device,
            "__generator__": self._generator,
            "__random_state__": self._random_state,
            "__train_state__": self._train_state,
            "__epoch_order__": self._epoch_order,
            "__label_binarizer__": self._label_binarizer,
        }

    def __call__(self, obj, *, tags=None, kinds=None):
        """Decode ``obj``, allowing only ``tags`` and array dtype ``kinds``."""
        saved = self._allowed, self._kinds
        self._allowed = tags if tags is not None else self._allowed
        self._kinds = kinds if kinds is not None else self._kinds
        try:
            return self._decode(obj)
        finally:
            self._allowed, self._kinds = saved

    def _decode(self, obj):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [self._decode(v) for v in obj]
        if not isinstance(obj, dict):
            raise _corrupt(f"unexpected {type(obj).__name__}.")
        tags = [k for k in obj if k.startswith("__")]
        if not tags:
            return {k: self._decode(v) for k, v in obj.items()}
        tag = tags[0]
        if (
            len(obj) != 1
            or tag not in self._tags
            or (self._allowed is not None and tag not in self._allowed)
        ):
            raise _corrupt(f"unexpected entry {sorted(obj)[:5]}.")
        return self._tags[tag](obj[tag])

    def _charge(self, nbytes: int) -> None:
        self.budget.charge(nbytes)

    def _list(self, value) -> list:
        if not isinstance(value, list):
            raise _corrupt(f"expected a list, got a {type(value).__name__}.")
        return [self._decode(v) for v in value]

    def _dict(self, pairs) -> dict:
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise _corrupt("a mapping is malformed.")
        out = {}
        for key, value in pairs:
            key = self._decode(key)
            if not isinstance(key, (bool, int, float, str, np.generic, tuple)):
                raise _corrupt("a mapping has a key that is not a scalar.")
            out[key] = self._decode(value)
        return out

    def _tensor(self, name) -> torch.Tensor:
        if not isinstance(name, str) or name not in self.tensors:
            raise _corrupt(f"no tensor named {str(name)[:80]!r}.")
        self.used.add(name)
        return self.tensors[name]

    def _scalar(self, value):
        dtype_str, item = self._pair(value)
        dtype = self._array_dtype(dtype_str)
        if dtype.kind == "O" or not isinstance(item, (bool, int, float, str)):
            raise _corrupt("a scalar is malformed.")
        return dtype.type(item)

    @staticmethod
    def _pair(value) -> list:
        if not isinstance(value, list) or len(value) != 2:
            raise _corrupt("a tagged value is malformed.")
        return value

    def _ndarray(self, value) -> np.ndarray:
        if not isinstance(value, list) or len(value) != 3:
            raise _corrupt("an array is malformed.")
        dtype_str, shape, values = value
        dtype = self._array_dtype(dtype_str)
        if isinstance(values, dict):
            return self._tensor_array(dtype, shape, values)
        # One dimension: every array a fitted model holds is a list of labels,
        # names or keys.
        if not (
            isinstance(values, list)
            and isinstance(shape, list)
            and shape == [len(values)]
            and all(v is None or isinstance(v, (bool, int, float, str)) for v in values)
        ):
            raise _corrupt("an array is malformed.")
        if dtype.kind == "U":
            # A string dtype wider than its longest value is a request for
            # memory, not a label: '<U536870911' asks for 2 GiB per element.
            longest = max([len(v) for v in values if isinstance(v, str)] or [0])
            if dtype.itemsize // 4 > max(1, longest):
                raise _corrupt(
                    f"an array's dtype {dtype.str!r} is wider than its values."
                )
        self._charge(len(values) * (8 if dtype.kind == "O" else dtype.itemsize))
        if dtype.kind == "O":
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        return np.array(values, dtype=dtype)

    def _tensor_array(self, dtype: np.dtype, shape, ref) -> np.ndarray:
        """An array of two or more dimensions, stored as a tensor of the file."""
        tensor = self._decode(ref)  # the tags allowed here decide if it may
        if not (
            isinstance(tensor, torch.Tensor)
            and isinstance(shape, list)
            and len(shape) >= 2
            and dtype in _TENSOR_ARRAY_DTYPES
            and dtype.isnative
            and tensor.dtype == _TENSOR_ARRAY_DTYPES[dtype]
            and list(tensor.shape) == shape
        ):
            raise _corrupt("an array stored as a tensor is malformed.")
        self._charge(tensor.numel() * dtype.itemsize)
        return tensor.numpy().copy()

    def _array_dtype(self, dtype_str) -> np.dtype:
        text = _str(dtype_str)
        # Only the plain forms '<i8', '|b1', '<U12', '|O': no structured,
        # sub-array or exotic dtypes, and no widths numpy would reject.
        if not re.fullmatch(r"[<>|=]?[biufUO][0-9]{0,10}", text):
            raise _corrupt(f"dtype {text[:40]!r}.")
        try:
            dtype = np.dtype(text)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _corrupt(f"dtype {text[:40]!r}.") from exc
        if dtype.kind not in self._kinds or (
            dtype.kind in "biuf" and dtype.itemsize > 8
        ):
            raise _corrupt(f"dtype {text[:40]!r}.")
        return dtype

    @staticmethod
    def _torch_dtype(value) -> torch.dtype:
        if not isinstance(value, str) or value not in _TORCH_FLOATS:
            raise _corrupt(f"torch dtype {str(value)[:40]!r}.")
        return _TORCH_FLOATS[value]

    @staticmethod
    def _numpy_dtype(value) -> np.dtype:
        if value not in ("<f4", "<f8", ">f4", ">f8", "=f4", "=f8"):
            raise _corrupt(f"output dtype {str(value)[:40]!r}.")
        return np.dtype(value)

    @staticmethod
    def _device(value) -> torch.device:
        if not isinstance(value, str) or not _DEVICE_TEXT.fullmatch(value):
            raise _corrupt(f"device {str(value)[:40]!r}.")
        return torch.device(value)

    def _generator(self, value) -> torch.Generator:
        state = self._decode(value)
        if not (
            isinstance(state, torch.Tensor)
            and state.dtype == torch.uint8
            and state.ndim == 1
        ):
            raise _corrupt("a generator state is not a byte tensor.")
        generator = torch.Generator()
        generator.set_state(state)
        return generator

    def _random_state(self, value) -> np.random.RandomState:
        state = self._decode(value)
        if not (
            isinstance(state, tuple)
            and len(state) == 5
            and state[0] == "MT19937"
            and isinstance(state[1], np.ndarray)
            and state[1].shape == (624,)
        ):
            raise _corrupt("a random state is malformed.")
        rs = np.random.RandomState()
        rs.set_state(state)
        return rs

    def _epoch_order(self, value) -> EpochOrder:
        state = self._decode(value)
        if not (
            isinstance(state, tuple)
            and len(state) == 4
            and isinstance(state[0], np.random.RandomState)
            and all(type(v) is int for v in state[1:3])
            and state[1] >= 0
            and state[2] >= 1
            # Saving keeps the replay within this bound; more would be a
            # forged file asking for hours of redraws.
            and state[1] * state[2] <= _REPLAY_LIMIT
        ):
            raise _corrupt("an epoch order is malformed.")
        start, done, n, base = state
        if base is not None and not (
            isinstance(base, np.ndarray)
            and base.shape == (n,)
            and base.dtype.kind == "i"
            and np.array_equal(np.sort(base), np.arange(n))
        ):
            raise _corrupt("an epoch order's rows are not a permutation.")
        return EpochOrder.replay(start, done=done, n=n, order=base)

    def _train_state(self, value) -> TrainState:
        kwargs = _as_dict(self._decode(value), "the training state")
        # Fields added to TrainState later take their defaults in older files.
        names = {f.name for f in fields(TrainState)}
        if not set(kwargs) <= names or "generator" not in kwargs:
            raise _corrupt("the training state is malformed.")
        return TrainState(**kwargs)

    def _label_binarizer(self, value) -> LabelBinarizer:
        attrs = _as_dict(self._decode(value), "the label encoder")
        if set(attrs) != _LABEL_BINARIZER_FIELDS:
            raise _corrupt("the label encoder is malformed.")
        lb = LabelBinarizer(
            neg_label=attrs["neg_label"],
            pos_label=attrs["pos_label"],
            sparse_output=attrs["sparse_output"],
        )
        lb._validate_params()
        vars(lb).update(attrs)
        return lb
