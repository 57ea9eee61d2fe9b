"""The embeddings file (``.npz``): the one contract between embedding sequences and evaluating
them, written by ``run`` and ``embed`` and read by ``evaluate`` (and fusion).

Arrays: ``embeddings`` float32 or float16 ``[N, C, P]`` (P parts; ``[N, D]`` is read as P = 1)
and the string labels ``subjects``, ``types``, ``views`` of length N (the three labels OpenGait's
evaluator uses). Optional: ``probe_set`` (the partition's PROBE_SET, so Gait3D's embeddings
evaluate without the partition file) and metadata scalars (``method``, ``protocol``,
``synthetic``, ``dataset_fingerprint``, ``metric``, ``checkpoint_sha256``...).

Files come from strangers: they are read with ``allow_pickle=False`` and checked for shapes and
types; they are written atomically (a half-written file never carries the real name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..io import atomic_write, available_memory, format_bytes

__all__ = ["LABELS", "REQUIRED", "read_embeddings", "validate_embeddings", "write_embeddings"]

LABELS = ("subjects", "types", "views")
REQUIRED = ("embeddings", *LABELS)


OPTIONAL = ("probe_set",)
METADATA_BYTES = 64 << 10  # a metadata scalar larger than this is not metadata, and is not read


def read_embeddings(path: str | Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an embeddings file, validated (:func:`validate_embeddings`); pickled objects
    are refused. Only the contract's arrays (:data:`REQUIRED`, :data:`OPTIONAL`) and small scalar
    metadata are read; every other entry is left compressed. What the file claims is bounded
    before anything is decompressed: each array's header must agree with its stored size, and
    all of them together must fit ``max_bytes`` (default: the memory available now)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"embeddings file not found: {path}")
    _check_is_npz(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            claims = _claims(npz)
            keys = [k for k, (shape, nbytes, stored) in claims.items()
                    if k in REQUIRED or k in OPTIONAL or (shape == () and nbytes <= METADATA_BYTES)]
            for key in keys:
                shape, nbytes, stored = claims[key]
                if nbytes > stored:
                    raise DataError(f"{path}: array {key!r} claims {shape} ({format_bytes(nbytes)}) but its entry holds "
                                    f"only {format_bytes(stored)}; the file is damaged or forged")
            total = sum(claims[k][1] for k in keys)
            budget = available_memory() if max_bytes is None else max_bytes
            if budget is not None and total > budget:
                raise DataError(f"{path}: its arrays need {format_bytes(total)} in memory, more than the "
                                f"{format_bytes(budget)} available; refused before reading")
            data = {k: npz[k] for k in keys}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise DataError(f"{path}: not a readable .npz embeddings file ({exc})") from None
        raise DataError(f"{path}: refusing to load pickled objects from an embeddings file ({exc})") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz embeddings file ({type(exc).__name__}: {exc})") from None
    return validate_embeddings(data, str(path))


def _check_is_npz(path: Path) -> None:
    """Say what ``path`` is when it is not a zip archive: numpy would try to unpickle it and
    report any other file as "pickled data"."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise DataError(f"cannot read embeddings file {path}: {exc}") from None
    if head.startswith(b"PK"):
        return
    if head.startswith(b"\x93NUMPY"):
        what = "a single .npy array"
    elif head[:1] == b"\x80":
        what = "a Python pickle (refused: it could run code)"
    elif not head:
        what = "an empty file"
    else:
        what = "neither a zip archive nor a numpy file"
    raise DataError(f"{path}: not an .npz embeddings file (a zip of arrays written by gaitbench run / embed): "
                    f"it is {what}")


def _claims(npz) -> dict[str, tuple[tuple, int, int]]:
    """``{key: (shape, bytes the array claims, bytes its entry holds uncompressed)}`` from the
    ``.npy`` headers alone (nothing is decompressed beyond them)."""
    out = {}
    names = set(npz.zip.namelist())
    for key in npz.files:
        info = npz.zip.getinfo(f"{key}.npy" if f"{key}.npy" in names else key)
        try:
            with npz.zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        except ValueError as exc:
            if key in REQUIRED or key in OPTIONAL:
                raise DataError(f"{npz.zip.filename}: entry {key!r} is not a .npy array ({exc})") from None
            continue  # not an array, and not ours to read
        count = int(np.prod(shape, dtype=np.float64)) if shape else 1
        out[key] = (tuple(shape), count * dtype.itemsize, int(info.file_size))
    return out


def validate_embeddings(data: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """``data`` with ``embeddings`` as ``[N, C, P]`` floats and the labels as strings of length N;
    anything else is a :class:`DataError` naming ``source`` and what was expected."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DataError(f"{source}: missing arrays {missing}; expected {list(REQUIRED)}")
    emb = data["embeddings"]
    if emb.ndim == 2:
        emb = emb[:, :, None]
    if emb.ndim != 3 or emb.dtype.kind != "f":
        raise DataError(f"{source}: embeddings must be float [N, C, P] or [N, D], found {emb.dtype} {emb.shape}")
    data["embeddings"] = emb
    for key in LABELS:
        if data[key].ndim != 1 or data[key].dtype.kind not in "USiu":
            raise DataError(f"{source}: {key} must be a 1-d array of {len(emb)} labels (strings), found "
                            f"{data[key].dtype} with shape {data[key].shape}")
        data[key] = data[key].astype(str)
        if len(data[key]) != len(emb):
            raise DataError(f"{source}: {key} has {len(data[key])} entries but there are {len(emb)} embeddings")
    return data


def write_embeddings(path: str | Path, embeddings: np.ndarray, labels, probe_set=(), **meta: Any) -> Path:
    """Write ``embeddings`` ``[N, C, P]`` with the ``subject`` / ``type`` / ``view`` columns of
    ``labels`` (a table of N rows, e.g. the store's index at the embedded rows), the partition's
    ``probe_set`` when it has one, and ``meta`` as string scalars. As ``numpy.savez``, a path
    without the ``.npz`` suffix gets it; returns the path written."""
    arrays: dict[str, np.ndarray] = {
        "embeddings": embeddings,
        "subjects": labels["subject"].to_numpy().astype(str),
        "types": labels["type"].to_numpy().astype(str),
        "views": labels["view"].to_numpy().astype(str),
    }
    if len(probe_set):
        arrays["probe_set"] = np.asarray(list(probe_set), dtype=str)
    arrays.update({k: np.asarray(str(v)) for k, v in meta.items()})
    path = Path(path)
    if path.suffix != ".npz":  # as numpy.savez names its files
        path = path.with_name(path.name + ".npz")
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))
