"""Sequence stores: an index table of sequences plus access to their frames.

Three stores:
- ``PackedStore``: one memory-mapped uint8 frame array (``frames.npy``) plus ``index.csv`` and
  ``meta.json``. Reading a clip touches only its frames. The synthetic generator writes it.
- ``PklTreeStore``: OpenGait's ``root/<id>/<type>/<view>/*.pkl`` tree, each pkl a uint8
  ``[T, H, W]`` array, loaded with the restricted unpickler.

- ``PngTreeStore``: pretreated PNG frames in the same tree.

``open_store(path)`` recognises each and says what it expected when it finds neither.

A store's ``malformed`` entries (a packed index's invalid rows, checked when it opens) are never
served: ``data check`` reports them, runs leave them out before training (docs/untrusted-data.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from ..errors import DataError
from .layouts import list_id_type_view
from .safe_pickle import load_array_pickle

# files a dataset folder may carry beside its sequences, kept by every tool that copies a dataset
PARTITION_FILE = "partition.json"  # OpenGait-style split (Gait3D's PROBE_SET)
PROBE_TRUTH_FILE = "probe_truth.csv"  # identities of an unlabelled probe set (synthetic GREW)
SIDE_FILES = (PARTITION_FILE, PROBE_TRUTH_FILE)

PACKED_FORMAT = "gaitbench-packed"
PACKED_VERSION = 1
INDEX_COLUMNS = ["subject", "type", "view", "offset", "length", "height", "width"]


class Store:
    """Common interface. ``index`` has one row per sequence with at least ``subject``, ``type``,
    ``view`` (strings) and ``length``; ``meta`` says what the dataset is."""

    index: pd.DataFrame
    meta: dict[str, Any]
    root: Path
    # rows the store refuses to serve, {row: why} (a packed index's invalid rows): `data check`
    # reports them, a run leaves them out before training (or stops, with --strict)
    malformed: Mapping[int, str] = MappingProxyType({})

    def __len__(self) -> int:
        return len(self.index)

    def frames(self, i: int) -> np.ndarray:
        """All frames of sequence ``i``: uint8 ``[T, H, W]``."""
        raise NotImplementedError

    def clip(self, i: int, positions, out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``positions`` (an index array or a slice) of sequence ``i`` (written into ``out``
        when given)."""
        frames = self.frames(i)[positions]
        if out is None:
            return frames
        out[...] = frames
        return out

    def describe_row(self, i: int) -> str:
        """``subject/type/view`` of sequence ``i`` (and its file, where it has one), for messages."""
        row = self.index.iloc[int(i)]
        where = self.path_of(int(i))
        return f"{row['subject']}/{row['type']}/{row['view']}" + (f" ({where})" if where else "")

    def path_of(self, i: int) -> str:
        return ""

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    def describe(self) -> dict[str, Any]:
        """The ``dataset`` entry of a run record."""
        return {
            "name": self.meta.get("dataset", "unknown"),
            "synthetic": self.synthetic,
            "fingerprint": self.fingerprint,
            "root": str(self.root),
            "sequences": len(self),
            "subjects": int(self.index["subject"].nunique()),
            "store": self.meta.get("format", type(self).__name__),
            **({"generator": self.meta["generator"]} if "generator" in self.meta else {}),
        }


_INTEGER = r"\s*[+-]?[0-9]{1,18}\s*"  # ASCII digits, at most 18: fits int64 without overflow


def _validated_index(index: pd.DataFrame, frames_shape: tuple[int, ...], path: Path):
    """A packed store's index with typed columns, and its malformed rows ``{row: why}``.

    Every row is checked against the frame array: ``offset`` and ``length`` integers with
    ``offset >= 0``, ``length >= 1`` and ``offset + length`` within ``frames.npy``; ``height`` and
    ``width`` equal to the array's; labels not empty. A malformed row stays in the table (so that
    ``data check`` can report it) but is never served: its offset and length are set to 0."""
    total, height, width = frames_shape
    n = len(index)
    why: list[list[str]] = [[] for _ in range(n)]
    for col in ("subject", "type", "view"):
        index[col] = index[col].astype(str)
        for i in np.flatnonzero((index[col].str.strip() == "").to_numpy()):
            why[i].append(f"{col} is empty")
    values, parsed = {}, {}
    for col in ("offset", "length", "height", "width"):
        text = index[col].astype(str)
        ok = text.str.fullmatch(_INTEGER).to_numpy(bool)
        values[col], parsed[col] = text.where(ok, "0").str.strip().to_numpy().astype(np.int64), ok
        for i in np.flatnonzero(~ok):
            why[i].append(f"{col} is {text.iloc[i]!r}, expected an integer")
    offset, length = values["offset"], values["length"]
    for i in np.flatnonzero(parsed["offset"] & (offset < 0)):
        why[i].append(f"offset {offset[i]} is negative")
    for i in np.flatnonzero(parsed["length"] & (length < 1)):
        why[i].append(f"length {length[i]}, expected at least 1 frame")
    in_range = parsed["offset"] & parsed["length"] & (offset >= 0) & (length >= 1)
    for i in np.flatnonzero(in_range & (offset + length > total)):
        why[i].append(f"frames {offset[i]}..{offset[i] + length[i] - 1} lie beyond the {total} frames of "
                      "frames.npy (truncated file?)")
    sized = parsed["height"] & parsed["width"]
    for i in np.flatnonzero(sized & ((values["height"] != height) | (values["width"] != width))):
        why[i].append(f"frame size {values['height'][i]}x{values['width'][i]} differs from frames.npy's "
                      f"{height}x{width}")
    malformed = {i: f"{path.name} line {i + 2} (row {i}): " + "; ".join(w) for i, w in enumerate(why) if w}
    bad = np.zeros(n, bool)
    bad[list(malformed)] = True
    index["offset"] = np.where(bad, 0, offset)
    index["length"] = np.where(bad, 0, length)
    index["height"], index["width"] = height, width  # the one size a packed store serves
    return index, malformed


class PackedStore(Store):
    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        try:
            self.meta = json.loads(meta_path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{meta_path}: unreadable packed-store metadata ({exc})") from None
        if self.meta.get("format") != PACKED_FORMAT:
            raise DataError(f"{meta_path}: format is {self.meta.get('format')!r}, expected {PACKED_FORMAT!r}")
        if int(self.meta.get("format_version", 0)) > PACKED_VERSION:
            raise DataError(f"{meta_path}: packed-store version {self.meta['format_version']} is newer than "
                            f"this gaitbench understands ({PACKED_VERSION}); upgrade gaitbench")
        index_path = self.root / "index.csv"
        try:
            # every cell as text: numbers are parsed and checked here, row by row, never coerced
            index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{index_path}: unreadable index ({exc})") from None
        missing = [c for c in INDEX_COLUMNS if c not in index.columns]
        if missing:
            raise DataError(f"{index_path}: missing columns {missing}; expected {INDEX_COLUMNS}")
        try:
            # allow_pickle=False: a .npy can carry pickled objects; frames never need that.
            self._frames = np.load(self.root / "frames.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.root / 'frames.npy'}: unreadable frame array ({exc})") from None
        if self._frames.dtype != np.uint8 or self._frames.ndim != 3:
            raise DataError(f"{self.root / 'frames.npy'}: expected uint8 [frames, H, W], "
                            f"found {self._frames.dtype} {self._frames.shape}")
        self.index, self.malformed = _validated_index(index, self._frames.shape, index_path)
        # a plain ndarray view of the map: indexing it skips np.memmap's per-call subclass overhead
        self._view = self._frames.view(np.ndarray)
        self._offsets = self.index["offset"].to_numpy(np.int64)
        self._lengths = self.index["length"].to_numpy(np.int64)
        self._refused = np.zeros(len(self.index), bool)
        self._refused[list(self.malformed)] = True

    def _refuse(self, i: int) -> None:
        raise DataError(f"{self.root}: sequence {self.describe_row(i)} is not served: {self.malformed[int(i)]}")

    def frames(self, i: int) -> np.ndarray:
        if self._refused[i]:
            self._refuse(i)
        o, n = self._offsets[i], self._lengths[i]
        return self._view[o:o + n]

    def clip(self, i: int, positions, out: np.ndarray | None = None) -> np.ndarray:
        if self._refused[i]:
            self._refuse(i)
        o = int(self._offsets[i])
        if isinstance(positions, slice):  # a contiguous window: one block copy
            src = self._view[o + positions.start:o + positions.stop]
            if out is None:
                return src.copy()
            np.copyto(out, src)
            return out
        return self._view.take(o + np.asarray(positions), axis=0, out=out)


class PklTreeStore(Store):
    """OpenGait's layout. Several pkls in one folder are modalities; the first (sorted) is used."""

    def __init__(self, root: str | Path, dataset: str = "unknown"):
        self.root = Path(root)
        rows, files, digest = [], [], hashlib.sha256()
        for pkl_dir in sorted({p.parent for p in self.root.glob("*/*/*/*.pkl")}):
            pkls = sorted(pkl_dir.glob("*.pkl"))
            view, type_, subject = pkl_dir.name, pkl_dir.parent.name, pkl_dir.parent.parent.name
            rows.append({"subject": subject, "type": type_, "view": view})
            files.append(pkls[0])
            for p in pkls:
                digest.update(f"{p.relative_to(self.root)}:{p.stat().st_size}\n".encode())
        self._files = files
        self.index = pd.DataFrame(rows, columns=["subject", "type", "view"])
        self.index["length"] = -1  # unknown until loaded
        self.meta = {"format": "opengait-pkl", "dataset": dataset, "synthetic": False,
                     "fingerprint": digest.hexdigest()[:16]}

    def path_of(self, i: int) -> str:
        return str(self._files[i])

    def frames(self, i: int) -> np.ndarray:
        arr = load_array_pickle(self._files[i])
        if arr.ndim != 3 or arr.shape[0] < 1:
            raise DataError(f"{self._files[i]}: expected a [T, H, W] array with T >= 1, found shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise DataError(f"{self._files[i]}: expected uint8 frames, found {arr.dtype}")
        return arr


def open_store(root: str | Path) -> Store:
    """Open the dataset at ``root``: a packed store or an OpenGait pkl tree."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data root {root} is not a directory")
    packed_parts = [name for name in ("index.csv", "frames.npy") if (root / name).is_file()]
    if (root / "meta.json").is_file():
        store: Store = PackedStore(root)
    elif packed_parts:
        raise DataError(f"{root} holds {' and '.join(packed_parts)} of a gaitbench packed store but its meta.json is "
                        "missing (a packed store is meta.json, index.csv and frames.npy): restore it, or pack the "
                        "dataset again with `gaitbench data pack`")
    elif next(root.glob("*/*/*/*.pkl"), None) is None and next(root.glob("*/*/*/*.png"), None) is not None:
        store = PngTreeStore(root)
    else:
        store = PklTreeStore(root)
    if len(store) == 0:
        raise DataError(
            f"no sequences found under {root}: expected an OpenGait tree <id>/<type>/<view>/*.pkl, a pretreated "
            "PNG tree <id>/<type>/<view>/*.png or a gaitbench packed store (meta.json, index.csv, frames.npy); "
            "raw silhouettes are prepared with `gaitbench data pretreat`"
        )
    return store


def cut_sides(frames: np.ndarray) -> np.ndarray:
    """The reference's load-time side cut: 64-wide frames lose 10 px each side (128-wide: 20);
    narrower frames are left as they are."""
    cut = (frames.shape[-1] // 64) * 10
    return frames[..., cut:-cut] if cut else frames


class PngTreeStore(Store):
    """An already pretreated ``root/<id>/<type>/<view>/*.png`` tree (one 8-bit grayscale PNG per
    frame, frames in file-name order). Frames are decoded on access and validated."""

    def __init__(self, root: str | Path, dataset: str = "unknown"):
        self.root = Path(root)
        rows, files, digest = [], [], hashlib.sha256()
        for seq in list_id_type_view(self.root) if self.root.is_dir() else []:
            rows.append({"subject": seq.subject, "type": seq.type, "view": seq.view, "length": len(seq.frames)})
            files.append(seq.frames)
            for p in seq.frames:
                digest.update(f"{p.relative_to(self.root).as_posix()}:{p.stat().st_size}\n".encode())
        self._files = files
        self.index = pd.DataFrame(rows, columns=["subject", "type", "view", "length"])
        self.meta = {"format": "png-tree", "dataset": dataset, "synthetic": False,
                     "fingerprint": digest.hexdigest()[:16]}

    def frames(self, i: int) -> np.ndarray:
        import cv2

        out, first = [], None
        for path in self._files[i]:
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise DataError(f"{path}: not a readable PNG (corrupt, truncated or missing)")
            if img.ndim != 2 or img.dtype != np.uint8:
                raise DataError(f"{path}: expected a single-channel 8-bit frame, found {img.dtype} {img.shape}")
            if first is None:
                first = (path, img.shape)
            elif img.shape != first[1]:
                raise DataError(f"{path}: frame is {img.shape[0]}x{img.shape[1]} but {first[0].name} is "
                                f"{first[1][0]}x{first[1][1]}; all frames of a sequence must have one size")
            out.append(img)
        return np.stack(out)


def create_frames(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new uint8 ``.npy`` frame array of ``shape`` at ``path``, its space allocated on the disk
    first: frames written later through a memory map cannot run out of room half way (that would
    kill the process), and a disk too small is refused at once with the size needed."""
    from ..io import reserve, writing

    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    size = path.stat().st_size
    with writing(path, needed=size, what="frame array"), open(path, "r+b") as fh:
        reserve(fh, size)
    return arr


class PackedWriter:
    """Writes a packed store whose sequence lengths are known in advance; frames may be filled
    in any order (also from several processes, each opening the array with ``open_frames``)."""

    def __init__(self, root: str | Path, index: pd.DataFrame, frame_shape: tuple[int, int], meta: dict[str, Any]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        index = index.copy()
        index["offset"] = np.concatenate([[0], np.cumsum(index["length"].to_numpy())[:-1]]).astype(np.int64)
        index["height"], index["width"] = frame_shape
        self.index = index[INDEX_COLUMNS]
        total = int(index["length"].sum())
        create_frames(self.root / "frames.npy", (total, *frame_shape))
        self.meta = {"format": PACKED_FORMAT, "format_version": PACKED_VERSION, **meta}

    def open_frames(self) -> np.memmap:
        return np.load(self.root / "frames.npy", mmap_mode="r+")

    def finish(self) -> None:
        self.index.to_csv(self.root / "index.csv", index=False)
        (self.root / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True), "utf-8")


def check_target(dest: str | Path, own: bool | None = None, force: bool = False, what: str = "output") -> None:
    """Refuse ``dest`` when it is a non-empty folder (or a file), unless it is this writer's own
    earlier output (``own``) and ``force`` asks to replace it. Called before any work is done."""
    dest = Path(dest)
    if not dest.exists():
        return
    if not dest.is_dir():
        raise DataError(f"{dest} is a file, not a folder: choose a new folder for the {what}")
    if not any(dest.iterdir()):
        return
    if own and force:
        return
    if own:
        raise DataError(f"{dest} already holds a {what}; pass --force to replace it (the new one replaces it only "
                        "once complete) or choose a new folder")
    raise DataError(f"{dest} exists and holds files gaitbench did not write: choose a new or empty folder for the "
                    f"{what} (nothing was changed)")


@contextmanager
def building(dest: str | Path, replace: bool = False) -> Iterator[Path]:
    """Write a dataset folder atomically: yields an empty sibling temporary folder
    (``.NAME.tmp-PID``) to fill; when the block ends without error it takes the name ``dest``,
    otherwise it is removed, so an interrupted or failed write never leaves a half-written
    dataset behind. ``dest`` must be absent or empty; with ``replace`` a non-empty ``dest`` (the
    caller has checked it is its own earlier output) is replaced, only once the new one is
    complete. A full or read-only disk is a one-line :class:`~gaitbench.errors.WriteError`."""
    from ..io import TEMP_MARK, remove_stale_temporaries, temporary_name, writing

    dest = Path(dest)
    tmp = temporary_name(dest)
    with writing(dest, what="dataset folder"):
        dest.parent.mkdir(parents=True, exist_ok=True)
        # leftovers of killed writers of this folder, never a live one's
        remove_stale_temporaries(dest.parent, dest.name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        with writing(dest, what="dataset folder"):
            yield tmp
            if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not replace:
                raise DataError(f"{dest} was filled by something else while it was written; the new dataset is "
                                "not moved there")
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old{TEMP_MARK}{os.getpid()}")
                dest.rename(old)
                tmp.rename(dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_side_files(src: str | Path, dest: str | Path) -> None:
    """Copy the side files (:data:`SIDE_FILES`) of dataset folder ``src`` into ``dest``."""
    for name in SIDE_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dest) / name)
