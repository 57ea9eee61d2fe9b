"""``gaitbench data pack``: any readable dataset into one packed store.

The packed store is one memory-mapped uint8 frame array (``frames.npy``), ``index.csv`` and
``meta.json`` (see :mod:`gaitbench.data.store`); reading a clip touches only its frames. Packing
reads every sequence once, in index order: frames are streamed to a temporary raw file (lengths are
not known in advance for pkl or PNG trees), then laid out as ``frames.npy``. Everything is written
into a temporary folder that replaces ``DEST`` only when complete, so an interrupted pack leaves
nothing half-written. Unreadable sequences are reported and left out unless ``strict``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .store import (INDEX_COLUMNS, PACKED_FORMAT, PACKED_VERSION, building, check_target, copy_side_files,
                    create_frames, open_store)


@dataclass
class PackSummary:
    dest: str
    sequences: int
    frames: int
    skipped: list[dict[str, str]] = field(default_factory=list)


def is_packed_output(path: str | Path) -> bool:
    """Whether the folder ``path`` is a packed store ``pack_store`` wrote."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == PACKED_FORMAT and "packed_from" in meta


def pack_store(src: str | Path, dest: str | Path, *, strict: bool = False, progress: bool = True,
               chunk_frames: int = 8192, force: bool = False) -> PackSummary:
    """Pack the dataset at ``src`` (packed store, OpenGait pkl tree or pretreated PNG tree) into
    ``dest``, which must be new or empty (with ``force``, an earlier packed store there is
    replaced once the new one is complete)."""
    from ..progress import progress as progress_bar

    dest = Path(dest)
    own = is_packed_output(dest)
    check_target(dest, own, force, "packed store")
    store = open_store(src)
    if Path(src).resolve() == dest.resolve():
        raise DataError(f"{dest} is the store being packed: choose a new folder for the packed store")
    rows, skipped, shape = [], [], None
    digest = hashlib.sha256()
    total = 0
    with building(dest, replace=own and force) as tmp:
        with open(tmp / "frames.raw", "wb") as raw:
            for i in progress_bar(range(len(store)), desc="packing", unit="seq", enabled=progress):
                label = store.describe_row(i)
                try:
                    frames = store.frames(i)
                    if frames.dtype != np.uint8 or frames.ndim != 3 or len(frames) == 0:
                        raise DataError(f"{label}: expected uint8 [T, H, W] frames with T >= 1, found "
                                        f"{frames.dtype} {frames.shape}")
                    if shape is None:
                        shape = frames.shape[1:]
                    elif frames.shape[1:] != shape:
                        raise DataError(f"{label}: frames are {frames.shape[1:]}, the others {shape}; a packed store "
                                        "holds one frame size")
                except DataError as exc:
                    if strict:
                        raise
                    skipped.append({"sequence": label, "problem": str(exc)})
                    continue
                data = np.ascontiguousarray(frames).tobytes()
                raw.write(data)
                digest.update(data)
                row = store.index.iloc[i]
                rows.append((str(row["subject"]), str(row["type"]), str(row["view"]), total, len(frames)))
                total += len(frames)
        if not rows:
            raise DataError(f"no readable sequence in {src}; nothing to pack")
        src_raw = np.memmap(tmp / "frames.raw", dtype=np.uint8, mode="r", shape=(total, *shape))
        out = create_frames(tmp / "frames.npy", (total, *shape))
        for a in range(0, total, chunk_frames):
            out[a:a + chunk_frames] = src_raw[a:a + chunk_frames]
        out.flush()
        del out, src_raw
        (tmp / "frames.raw").unlink()
        index = pd.DataFrame(rows, columns=["subject", "type", "view", "offset", "length"])
        index["height"], index["width"] = shape
        index[INDEX_COLUMNS].to_csv(tmp / "index.csv", index=False)
        meta = {k: v for k, v in store.meta.items() if k not in {"format", "format_version", "fingerprint"}}
        meta.update({"format": PACKED_FORMAT, "format_version": PACKED_VERSION,
                     "fingerprint": digest.hexdigest()[:16],
                     "packed_from": {"root": str(Path(src).resolve()), "store": store.meta.get("format"),
                                     "skipped": len(skipped)}})
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")
        copy_side_files(src, tmp)
    return PackSummary(str(dest), len(rows), total, skipped)
