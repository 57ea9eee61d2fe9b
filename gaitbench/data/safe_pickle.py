"""Loading OpenGait ``.pkl`` sequences without ever executing code from the file.

A pickle can name any importable callable and have the loader call it. Dataset files come from
strangers, so we unpickle with an allow-list: only the few numpy functions that rebuild a plain
(non-object) array can be named. Anything else fails before it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError

# (module, name) pairs a numpy array pickle needs, for numpy 1.x and 2.x module paths.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # pickle protocols 0-2 spell raw bytes as _codecs.encode(text, "latin1"): a pure function
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids: only numpy arrays are allowed")


def load_array_pickle(path: str | Path) -> np.ndarray:
    """The numpy array stored in ``path``; :class:`DataError` naming the file for anything else
    (a malicious or corrupt pickle, another object type, an object-dtype array)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: not a plain numpy-array pickle ({exc}); nothing from it was run") from None
    except Exception as exc:  # truncated or garbage files raise many different types
        raise DataError(f"{path}: corrupt pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, np.ndarray):
        raise DataError(f"{path}: expected a numpy array, found {type(obj).__name__}")
    if obj.dtype.hasobject:
        raise DataError(f"{path}: expected a numeric array, found dtype {obj.dtype}")
    return obj
