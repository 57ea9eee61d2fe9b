"""Reading embeddings files (``.npz``) safely: no pickled objects, shapes checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError

REQUIRED = ("embeddings", "subjects", "types", "views")


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """``embeddings`` ``[N, C, P]`` (``[N, D]`` becomes P = 1) and string label arrays of length N."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"embeddings file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        raise DataError(f"{path}: refusing to load pickled objects from an embeddings file ({exc})") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz embeddings file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DataError(f"{path}: missing arrays {missing}; expected {list(REQUIRED)}")
    emb = data["embeddings"]
    if emb.ndim == 2:
        emb = emb[:, :, None]
    if emb.ndim != 3 or emb.dtype.kind != "f":
        raise DataError(f"{path}: embeddings must be float [N, C, P] or [N, D], found {emb.dtype} {emb.shape}")
    data["embeddings"] = emb
    for key in REQUIRED[1:]:
        data[key] = data[key].astype(str)
        if len(data[key]) != len(emb):
            raise DataError(f"{path}: {key} has {len(data[key])} entries but there are {len(emb)} embeddings")
    return data
