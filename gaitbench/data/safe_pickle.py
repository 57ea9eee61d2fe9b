"""Loading OpenGait ``.pkl`` sequences without ever executing code from the file.

A pickle can name any importable callable and have the loader call it. Dataset files come from
strangers, so we unpickle with an allow-list, and not even the allowed numpy functions are handed
to the pickle as they are: each is a small stand-in that accepts only the arguments numpy's own
pickles pass and checks them before anything is allocated.

- ``numpy.ndarray`` is only a marker the array-rebuilding function takes as its first argument,
  never a callable: called directly, ``ndarray(shape)`` would return uninitialised memory of any
  size the file claims.
- An array's size (shape x itemsize) is compared with its data, and both with the file's own size,
  before the array is built, so a 90-byte file cannot allocate 4 GB; nor can a counted bytes or
  bytearray opcode claiming more than the file holds, nor a memo index far beyond the pickle's
  length (both checked in a first pass, :func:`_check_claims`).
- Object and structured-object dtypes are refused; anything else fails before it is called.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["load_array_pickle", "loads_array_pickle"]

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


class _Refused(pickle.UnpicklingError):
    """An argument numpy's own pickles never pass."""


class _NdarrayMarker:
    """What the pickle gets for ``numpy.ndarray``: accepted as ``_reconstruct``'s class argument;
    calling it is refused."""

    __slots__ = ()  # nothing a pickle's BUILD could set on it

    def __call__(self, *args, **kwargs):
        raise _Refused("refusing to call numpy.ndarray: it would return uninitialised memory (numpy's own "
                       "pickles never call it)")

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayMarker()


def _shape(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(n) is int and n >= 0 for n in value):
        raise _Refused(f"{what}: expected a tuple of non-negative integers, found {value!r:.80}")
    return value


def _dtype(value, what: str) -> np.dtype:
    if not isinstance(value, np.dtype):
        raise _Refused(f"{what}: expected a numpy dtype, found {type(value).__name__}")
    if value.hasobject:
        raise _Refused(f"{what}: dtype {value} holds Python objects; only numeric arrays are allowed")
    return value


class _PendingArray:
    """What ``_reconstruct`` returns: an array still without data. The pickle's next BUILD gives
    its state, which is checked before numpy sees it."""

    def __init__(self, limit: int):
        self.limit = limit
        self.array: np.ndarray | None = None

    def __setstate__(self, state) -> None:
        if self.array is not None:
            raise _Refused("an array's state is given twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed array state")
        version, (shape, dtype, fortran, data) = (state[0] if len(state) == 5 else 1), state[-4:]
        if version != 1:
            raise _Refused(f"unknown array pickle version {version!r:.20}")
        shape, dtype = _shape(shape, "array shape"), _dtype(dtype, "array dtype")
        if not isinstance(fortran, bool) or not isinstance(data, (bytes, bytearray)):
            raise _Refused("malformed array state (expected the order flag and the raw bytes)")
        _check_size(shape, dtype, len(data), self.limit)
        array = np.ndarray.__new__(np.ndarray, (0,), np.uint8)
        array.__setstate__((1, shape, dtype, fortran, data))
        self.array = array


def _check_size(shape: tuple[int, ...], dtype: np.dtype, have: int, limit: int) -> None:
    """Refuse, before allocating, an array whose data is not exactly the bytes the pickle holds
    (which are never more than the file's size)."""
    need = math.prod(shape) * dtype.itemsize
    if need > limit:
        raise _Refused(f"the array claims {need:,} bytes ({shape} x {dtype}) but the file holds {limit:,}")
    if need != have:
        raise _Refused(f"the array's shape {shape} x {dtype} needs {need:,} bytes but its data has {have:,}")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, limit: int):
        super().__init__(file)
        self.limit = limit

    def find_class(self, module, name):
        if (module, name) in _RECONSTRUCT:
            return self._reconstruct
        if (module, name) in _FROMBUFFER:
            return self._frombuffer
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("numpy", "dtype"):
            return np.dtype  # builds a descriptor only; its state is checked by numpy itself
        if (module, name) == ("_codecs", "encode"):
            return _latin1  # pickle protocols 0-2 spell raw bytes as _codecs.encode(text, "latin1")
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):
            return _empty_bytes  # ... and empty bytes as bytes()
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids: only numpy arrays are allowed")

    def _reconstruct(self, cls, shape, typecode):
        # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") followed by its state
        if cls is not _NDARRAY or shape != (0,):
            raise _Refused("numpy's _reconstruct is allowed only as numpy writes it: (ndarray, (0,), typecode)")
        return _PendingArray(self.limit)

    def _frombuffer(self, buf, dtype, shape, order, axis_order=None):
        if not isinstance(buf, (bytes, bytearray)):
            raise _Refused(f"_frombuffer: expected the array's bytes, found {type(buf).__name__}")
        shape, dtype = _shape(shape, "array shape"), _dtype(dtype, "array dtype")
        if order not in ("C", "F", "K", "A"):
            raise _Refused(f"_frombuffer: unknown order {order!r:.20}")
        if axis_order is not None and (not isinstance(axis_order, tuple)
                                       or sorted(axis_order) != list(range(len(shape)))):
            raise _Refused("_frombuffer: malformed axis order")
        _check_size(shape, dtype, len(buf), self.limit)
        array = np.frombuffer(buf, dtype=dtype)
        if order == "K" and axis_order is not None:
            return array.reshape(shape, order="C").transpose(axis_order)
        return array.reshape(shape, order=order)


def _latin1(text, encoding="utf-8", errors="strict"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Refused("_codecs.encode is allowed only as pickle writes bytes: (text, 'latin1')")
    return text.encode("latin1")


def _check_claims(data: bytes) -> None:
    """Refuse what would make Python's unpickler allocate beyond the file, before it runs.

    It allocates a counted bytes or bytearray at the size the pickle claims before reading it (15
    bytes can claim 4 GB), and grows its memo to the largest index a PUT names (one PUT can name
    entry 680,825,748). pickletools reads each counted argument no further than the data goes, and
    every memo entry of a real pickle follows an opcode of its own, so indices are bounded by the
    opcodes seen."""
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > count:
            raise _Refused(f"memo index {arg} after {count} opcodes")


def _empty_bytes(*args):
    if args:  # bytes(n) would allocate n bytes the file does not hold
        raise _Refused("bytes() is allowed only without arguments, as pickle writes empty bytes")
    return b""


def loads_array_pickle(data: bytes, source: str) -> np.ndarray:
    """The numpy array pickled in ``data`` (read from ``source``, named in errors)."""
    try:
        _check_claims(data)
    except _Refused as exc:
        raise DataError(f"{source}: not a plain numpy-array pickle ({exc}); nothing from it was run") from None
    except Exception as exc:
        raise DataError(f"{source}: corrupt pickle ({type(exc).__name__}: {exc})") from None
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), len(data)).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{source}: not a plain numpy-array pickle ({exc}); nothing from it was run") from None
    except Exception as exc:  # truncated or garbage files raise many different types
        raise DataError(f"{source}: corrupt pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise DataError(f"{source}: the pickle rebuilds an array but never gives its data")
        obj = obj.array
    if not isinstance(obj, np.ndarray):
        raise DataError(f"{source}: expected a numpy array, found {type(obj).__name__}")
    if obj.dtype.hasobject:  # unreachable through the stand-ins above; kept as the last word
        raise DataError(f"{source}: expected a numeric array, found dtype {obj.dtype}")
    return obj


def load_array_pickle(path: str | Path) -> np.ndarray:
    """The numpy array stored in ``path``; :class:`DataError` naming the file for anything else
    (a malicious or corrupt pickle, another object type, an object-dtype array, an array larger
    than the file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return loads_array_pickle(data, str(path))
