"""Small infrastructure every layer uses: atomic writes, JSON reading with a clear error,
weights-only loading, and the package version.

It sits at the bottom of the layering (it imports only :mod:`gaitbench.errors`), so nothing
below the CLI needs the package face for ``__version__``.

Atomic writes: the bytes go to a temporary file beside the target, named ``.NAME.tmp-PID`` (the
writer's process id, so a stale temporary can be told from a live one), are flushed and fsynced,
and the file is renamed over the target only when complete. A reader therefore sees the old file
or the whole new one, never half of one; on any failure the temporary is removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

from .errors import DataError, GaitbenchError

__all__ = ["atomic_write", "json_default", "load_weights", "package_version", "read_json", "temporary_name",
           "write_json_atomic", "write_text_atomic"]

TEMP_MARK = ".tmp-"


def temporary_name(path: str | Path, pid: int | None = None) -> Path:
    """The temporary file an atomic write of ``path`` uses: ``.NAME.tmp-PID`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid() if pid is None else pid}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary binary file beside ``path``, fsync it and rename it into
    place. Creates the parent folder. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when something above failed
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) written atomically to ``path``."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def json_default(obj: Any) -> Any:
    """JSON for what gaitbench records hold besides plain types: numpy scalars and arrays, sets,
    tuples, paths."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON, written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=json_default))


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """The JSON value in ``path``; a missing or unparsable file is a :class:`GaitbenchError` naming
    it (``what`` says what the file should have been, e.g. "run record")."""
    path = Path(path)
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise GaitbenchError(f"{path} not found (expected a {what})") from None
    except IsADirectoryError:
        raise GaitbenchError(f"{path} is a folder, expected a {what}") from None
    except (OSError, ValueError) as exc:
        raise GaitbenchError(f"{path} is not a readable {what}: {exc}") from None


def load_weights(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, containers and plain values only,
    never arbitrary objects. A missing file or anything else is a :class:`DataError` naming the
    file (torch's own advice to retry without ``weights_only`` is not repeated)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        if "weights_only" in first or "Unsupported global" in str(exc) or "WeightsUnpickler" in str(exc):
            reason = ("it holds Python objects other than tensors and plain values, and was refused for safety "
                      "(a trusted OpenGait checkpoint is converted with `gaitbench import-checkpoint`)")
        else:
            reason = f"{type(exc).__name__}: {first}"
        raise DataError(f"{path}: not loadable as a weights-only {what}: {reason}") from None


def package_version() -> str:
    """The installed distribution's version (``pip install -e`` included), read from its metadata."""
    from importlib import metadata

    try:
        return metadata.version("gaitbench")
    except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"
