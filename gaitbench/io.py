"""Small infrastructure every layer uses: atomic writes, JSON reading with a clear error,
weights-only loading, and the package version.

It sits at the bottom of the layering (it imports only :mod:`gaitbench.errors`), so nothing
below the CLI needs the package face for ``__version__``.

Atomic writes: the bytes go to a temporary file beside the target, named ``.NAME.tmp-PID`` (the
writer's process id, so a stale temporary can be told from a live one), are flushed and fsynced,
and the file is renamed over the target only when complete. A reader therefore sees the old file
or the whole new one, never half of one; on any failure the temporary is removed.

Failures of the disk (full, over quota, read-only, not permitted) become one
:class:`~gaitbench.errors.WriteError` naming the file, the free space and what was needed when
known (:func:`write_error`); every writer goes through :func:`writing`. A writer killed before it
could clean up leaves its temporary behind: :func:`remove_stale_temporaries` removes those whose
process is gone, never one whose writer still runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .errors import DataError, GaitbenchError, WriteError

__all__ = ["atomic_write", "available_memory", "format_bytes", "is_disk_error", "json_default", "load_weights",
           "package_version", "read_json", "remove_stale_temporaries", "reserve", "stale_temporaries",
           "temporary_name", "temporary_pid", "write_error", "write_json_atomic", "write_text_atomic", "writing"]

TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"^\..+" + re.escape(TEMP_MARK) + r"(\d+)$")

# what the disk refused, in the words a user acts on
_DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
}


def format_bytes(n: float) -> str:
    """``n`` bytes as a short figure: ``812 B``, ``3.4 MiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def available_memory() -> int | None:
    """The host's available memory in bytes (``MemAvailable`` of ``/proc/meminfo``); None where
    it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _free_space(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def write_error(path: str | Path, exc: OSError, needed: int | None = None, what: str | None = None, *,
                written: int | None = None) -> WriteError:
    """The one-line :class:`WriteError` for a disk's refusal ``exc`` while writing ``path``: the
    reason, the free space where it was written and ``needed`` bytes when known (or, when only the
    bytes ``written`` up to the failing write are known, at least those)."""
    path = Path(path)
    reason = _DISK_ERRORS.get(exc.errno, exc.strerror or str(exc))
    msg = f"cannot write {what + ' ' if what else ''}{path}: {reason}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_space(path.parent)
        if free is not None:
            msg += f" ({format_bytes(free)} free"
            if needed:
                msg += f", {format_bytes(needed)} needed)"
            elif written:
                msg += f", at least {format_bytes(written)} needed)"
            else:
                msg += ")"
        msg += "; free some space or write elsewhere"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        msg += "; choose a writable folder"
    err = WriteError(msg)
    err.path, err.errno, err.needed = path, exc.errno, needed
    return err


def is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _DISK_ERRORS


@contextlib.contextmanager
def writing(path: str | Path, needed: int | None = None, what: str | None = None,
            cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a disk's refusal (full, quota, read-only, permission) inside the block into the
    :class:`WriteError` of :func:`write_error`; ``cleanup`` runs on any failure (it removes the
    writer's temporary)."""
    try:
        yield
    except BaseException as exc:
        if cleanup is not None:
            cleanup()
        if is_disk_error(exc):
            raise write_error(path, exc, needed, what) from None
        raise


def reserve(fh: BinaryIO, size: int) -> None:
    """Allocate ``size`` bytes of the open file ``fh`` on the disk now, so that a file later
    written through a memory map cannot run out of space half way (which would kill the process
    with SIGBUS rather than raise). Where the file system cannot preallocate, this does nothing."""
    if size <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fh.fileno(), 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            return
        raise


class _CountingFile:
    """A file object that counts the bytes written and keeps the disk's error: torch's writer
    turns an ``OSError`` raised by ``write`` into a ``RuntimeError`` without its errno."""

    def __init__(self, fh: BinaryIO):
        self._fh, self.written, self.error, self.attempted = fh, 0, None, 0

    def write(self, data) -> int:
        try:
            n = self._fh.write(data)
        except OSError as exc:
            self.error, self.attempted = exc, self.written + len(memoryview(data).cast("B"))
            raise
        self.written += n if n is not None else len(data)
        return n

    def __getattr__(self, name):
        return getattr(self._fh, name)


def temporary_pid(path: str | Path) -> int | None:
    """The writer's process id in a temporary's name ``.NAME.tmp-PID``; None for other names."""
    match = _TEMP_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """The temporaries (``.NAME.tmp-PID`` files or folders) directly in ``folder`` whose writer
    process no longer runs (only those of ``NAME`` = ``name`` when given). A temporary whose PID
    is alive is never listed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(folder.iterdir()):
        if name is not None and not entry.name.startswith(f".{name}."):
            continue
        pid = temporary_pid(entry)
        if pid is not None and not _alive(pid):
            out.append(entry)
    return out


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[tuple[Path, int]]:
    """Remove :func:`stale_temporaries` of ``folder`` (of ``name``); returns ``[(path, bytes freed)]``."""
    removed = []
    for path in stale_temporaries(folder, name):
        try:
            size = _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append((path, size))
    return removed


def temporary_name(path: str | Path, pid: int | None = None) -> Path:
    """The temporary file an atomic write of ``path`` uses: ``.NAME.tmp-PID`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid() if pid is None else pid}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary binary file beside ``path``, fsync it and rename it into
    place. Creates the parent folder. Returns ``path``."""
    path = Path(path)
    tmp = temporary_name(path)
    counted = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            counted = _CountingFile(fh)
            write(counted)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        disk = exc if is_disk_error(exc) else (counted.error if counted is not None else None)
        if disk is not None and is_disk_error(disk):
            written = max(counted.written, counted.attempted) if counted is not None else None
            raise write_error(path, disk, written=written) from None
        raise
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
