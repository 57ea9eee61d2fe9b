"""Write any store as OpenGait's pkl tree, so the same data can be fed to other tools.

The tree is ``<id>/<type>/<view>/<view>.pkl``, one pickled uint8 ``[T, H, W]`` array per sequence,
as OpenGait's pretreatment writes it. OpenGait's own trees hold 64x64 frames (128x128 for Gait3D's
high-resolution variant), and the 10-px side cut (20 for 128-wide) happens at load time -- but only
for frames 64 (128) wide. gaitbench stores frames already cut (64x44, 128x88), so by default they
are padded back with zero columns (10 or 20 each side): then OpenGait's loader and gaitbench's
``cut_sides`` both restore exactly the stored frames. Frames of other widths are written as stored.

Side files of the store (``partition.json``, ``probe_truth.csv``) are copied to the tree's root,
where OpenGait ignores them (it only walks the ids of its partition), and ``gaitbench-source.json``
records where the tree came from (the store's description: dataset, fingerprint, generator).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from .store import Store, building, copy_side_files

SOURCE_FILE = "gaitbench-source.json"


def square_pad(frames: np.ndarray) -> np.ndarray:
    """Pad cut frames back to the square frames of real preprocessing: ``[T, 64k, 44k]`` gets
    ``10k`` zero columns on each side; any other shape is returned as it is."""
    height, width = frames.shape[-2:]
    k = height // 64
    if height % 64 or k == 0 or width != 44 * k:
        return frames
    pad = [(0, 0)] * (frames.ndim - 1) + [(10 * k, 10 * k)]
    return np.pad(frames, pad)


def export_pkl_tree(store: Store, out_dir: str | Path, *, square: bool = True, progress: bool = False) -> Path:
    """Write every sequence of ``store`` to ``out_dir/<id>/<type>/<view>/<view>.pkl`` and return
    ``out_dir``. ``square``: pad cut frames back to square (see the module docstring), so the
    tree loads identically in OpenGait and gaitbench. ``out_dir`` must not exist or be empty;
    the tree is written to a temporary folder first, so an interrupted export leaves nothing."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; export into a new one")
    seen: set[tuple[str, str, str]] = set()
    for label in zip(store.index["subject"], store.index["type"], store.index["view"]):
        for part in label:
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise DataError(f"{store.root}: label {part!r} of sequence {label} cannot be a folder name")
        if label in seen:
            raise DataError(f"{store.root}: sequence {label} appears twice; a pkl tree holds one per label")
        seen.add(label)
    from ..progress import progress as progress_bar

    with building(out) as tmp:
        for i, (subject, type_, view) in enumerate(progress_bar(
                list(zip(store.index["subject"], store.index["type"], store.index["view"])),
                desc="exporting pkl tree", unit="seq", enabled=progress)):
            frames = np.ascontiguousarray(store.frames(i))
            if square:
                frames = square_pad(frames)
            folder = tmp / subject / type_ / view
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"{view}.pkl", "wb") as f:
                pickle.dump(frames, f, protocol=4)
        copy_side_files(store.root, tmp)
        source = {"exported_from": store.describe(), "square": square}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, sort_keys=True), "utf-8")
    return out
