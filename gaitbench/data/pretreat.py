"""Raw silhouette PNG trees and the standard GaitSet/OpenGait pretreatment.

The datasets are distributed as one grayscale PNG per frame. Papers report results on frames
pretreated the GaitSet way: drop frames with almost no foreground, crop rows to the silhouette,
resize to height 64 keeping the aspect ratio (OpenCV cubic), centre on the horizontal median of
mass and cut a 64x64 uint8 frame. ``pretreat_frame`` does exactly that, byte for byte the same as
OpenGait's ``datasets/pretreatment.py`` given the same PNGs, except that a frame whose centre lands
at column 0 is kept (the reference drops it by testing ``not x_center``). GREW is distributed
already cut to 64x64 and, as in the reference, its frames are used as they are. HID (CASIA-E) frames
get the standard pretreatment: both HID reports that gaitbench reproduces normalise them "as
GaitSet" to 64x44 (OpenGait's own HID pretreatment pickles the distributed frames unchanged; a pkl
tree made by it can be read directly).

``pretreat_tree`` turns a raw tree into OpenGait's pkl tree ``DEST/<id>/<type>/<view>/<view>.pkl``;
``PngTreeStore`` reads an already pretreated ``<id>/<type>/<view>/*.png`` tree.

OpenCV is imported inside the functions that need it, so importing gaitbench stays cheap.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing as mp
import os
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import pandas as pd

from ..errors import DataError, did_you_mean
from .store import Store

DATASETS = ("casiab", "oumvlp", "gait3d", "grew", "hid")
# A frame whose pixel sum is at most this (about 39 pixels at 255) has no usable silhouette.
MIN_FOREGROUND = 10000
# Fewer kept frames than this gets a warning in the log, as in the reference.
SHORT_SEQUENCE = 5
LOG_NAME = "pretreat_log.jsonl"
SUMMARY_NAME = "pretreat_summary.json"

_OUMVLP_FOLDER = re.compile(r"^Silhouette_(\d+)-(\d+)$")


class RawSequence(NamedTuple):
    """One sequence of a raw tree: its labels and its PNG frames sorted by file name."""

    subject: str
    type: str
    view: str
    frames: list[Path]


# ---------------------------------------------------------------------------------------------
# One frame, one sequence


def _read_gray(path: Path):
    import cv2

    # cv2.imread, as the reference does: the same decoder and the same gray conversion.
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _pretreat(img: np.ndarray, img_size: int) -> tuple[np.ndarray | None, str | None]:
    """``(frame, None)`` or ``(None, why it was dropped)``."""
    import cv2

    total = int(img.sum(dtype=np.int64))
    if total <= MIN_FOREGROUND:
        return None, f"almost no foreground (pixel sum {total} <= {MIN_FOREGROUND})"
    rows = np.flatnonzero(img.any(axis=1))
    img = img[rows[0]:rows[-1] + 1]
    # Only rows are cropped: the width keeps the whole frame, scaled by the same factor.
    height, width = img.shape
    new_width = int(img_size * (width / height))
    if new_width < 1:
        return None, f"silhouette too tall and narrow to resize ({height}x{width} after cropping rows)"
    img = cv2.resize(img, (new_width, img_size), interpolation=cv2.INTER_CUBIC)
    cumulative = img.sum(axis=0, dtype=np.int64).cumsum()
    if cumulative[-1] == 0:
        return None, "no foreground left after resizing"
    # Horizontal median of mass: the first column whose running sum passes half the total.
    # Column 0 is a valid centre (the reference drops such frames by mistake).
    x_center = int(np.argmax(2 * cumulative > cumulative[-1]))
    half = img_size // 2
    # Zero columns on both sides make every window in range; where the reference does not pad,
    # the padded window is the same pixels.
    padded = np.pad(img, ((0, 0), (half, half)))
    return np.ascontiguousarray(padded[:, x_center:x_center + 2 * half], dtype=np.uint8), None


def _check_img_size(img_size: int) -> None:
    if isinstance(img_size, bool) or not isinstance(img_size, (int, np.integer)) or img_size < 2 or img_size % 2:
        raise DataError(f"img_size must be a positive even number of pixels (64, or 128 for Gait3D's "
                        f"high-resolution variant), got {img_size!r}")


def pretreat_frame(img: np.ndarray, img_size: int = 64) -> np.ndarray | None:
    """One grayscale frame (uint8 ``[H, W]``) pretreated to uint8 ``[img_size, img_size]``, or None
    when the frame is dropped (almost no foreground)."""
    _check_img_size(img_size)
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"expected a grayscale uint8 [H, W] frame, found {img.dtype} {img.shape}")
    return _pretreat(img, int(img_size))[0]


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise DataError(did_you_mean(str(dataset), DATASETS, "dataset"))
    return dataset


def pretreat_sequence(frame_paths, img_size: int = 64, dataset: str = "casiab", *,
                      strict: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Pretreat the PNG frames of one sequence, in the order given (the readers sort them by name).

    Returns ``(frames, info)``: uint8 ``[T, img_size, img_size]`` (T may be 0) and a dict with
    ``frames_in``, ``frames_kept``, ``dropped`` (``{"frame": name, "reason": ...}`` per dropped
    frame) and ``unreadable`` (``{"path", "error"}`` per PNG that could not be decoded; with
    ``strict`` the first one raises :class:`DataError` instead). For GREW the frames are used as
    distributed (no dropping, no crop or resize), and must all be ``img_size`` square.
    """
    _check_dataset(dataset)
    _check_img_size(img_size)
    paths = [Path(p) for p in frame_paths]
    kept: list[np.ndarray] = []
    dropped: list[dict[str, str]] = []
    unreadable: list[dict[str, str]] = []
    for path in paths:
        img = _read_gray(path)
        if img is None:
            why = "missing file" if not path.exists() else "not a readable PNG (corrupt or truncated?)"
            if strict:
                raise DataError(f"{path}: {why}")
            unreadable.append({"path": str(path), "error": why})
            continue
        if dataset == "grew":
            if img.shape != (img_size, img_size):
                raise DataError(f"{path}: GREW frames are used as distributed and must be "
                                f"{img_size}x{img_size}, found {img.shape[0]}x{img.shape[1]}")
            kept.append(img)
            continue
        frame, reason = _pretreat(img, img_size)
        if frame is None:
            dropped.append({"frame": path.name, "reason": reason})
        else:
            kept.append(frame)
    frames = np.stack(kept) if kept else np.zeros((0, img_size, img_size), np.uint8)
    info = {"frames_in": len(paths), "frames_kept": len(kept), "dropped": dropped, "unreadable": unreadable}
    return frames, info


# ---------------------------------------------------------------------------------------------
# Readers of raw trees


def _png_files(folder: Path) -> list[Path]:
    # The reference skips GEI images ("gei.png") that some distributions keep beside the frames.
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.endswith(".png") and "gei.png" not in e.name and e.is_file()]
    return [folder / n for n in sorted(names)]


def _subdirs(folder: Path) -> list[Path]:
    # scandir: trees of a million frames are listed from directory entries, without a stat each
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_dir()]
    return [folder / n for n in sorted(names)]


def _require_dir(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory" if root.exists() else f"{root} does not exist")
    return root


def _sequence(subject: str, type_: str, view: str, folder: Path) -> RawSequence | None:
    frames = _png_files(folder)
    return RawSequence(subject, type_, view, frames) if frames else None


def list_id_type_view(root: str | Path) -> list[RawSequence]:
    """Sequences of a ``<id>/<type>/<view>/*.png`` tree (CASIA-B as distributed, and the trees
    OpenGait's rearrange scripts make), sorted by (subject, type, view)."""
    root = _require_dir(root)
    out = []
    for subject in _subdirs(root):
        for type_ in _subdirs(subject):
            for view in _subdirs(type_):
                seq = _sequence(subject.name, type_.name, view.name, view)
                if seq:
                    out.append(seq)
    return out


def list_casiab(root: str | Path) -> list[RawSequence]:
    """CASIA-B: ``<id>/<type>/<view>/*.png`` (e.g. ``001/nm-01/090/``)."""
    return list_id_type_view(root)


def list_gait3d(root: str | Path) -> list[RawSequence]:
    """Gait3D's ``2D_Silhouettes``: ``<id>/camid<k>_videoid<j>/seq<i>/*.png``; the type is
    ``camid<k>_videoid<j>`` and the view ``seq<i>``, as in Gait3D's PROBE_SET entries."""
    return list_id_type_view(root)


def _oumvlp_folders(root: Path) -> list[tuple[Path, str, str]]:
    found = []
    for folder in _subdirs(root):
        m = _OUMVLP_FOLDER.match(folder.name)
        if m:
            found.append((folder, m.group(1), m.group(2)))
    return found


def list_oumvlp(root: str | Path) -> list[RawSequence]:
    """OU-MVLP as distributed: ``Silhouette_<view>-<seq>/<id>/*.png`` -> subject ``<id>``, type
    ``<seq>`` (``00``/``01``), view ``<view>``, as OpenGait's rearranged ``<id>/<seq>/<view>`` tree.
    Other folders are ignored."""
    root = _require_dir(root)
    out = []
    for folder, view, seq in _oumvlp_folders(root):
        for subject in _subdirs(folder):
            s = _sequence(subject.name, seq, view, subject)
            if s:
                out.append(s)
    return sorted(out, key=lambda s: s[:3])


def list_grew(root: str | Path) -> list[RawSequence]:
    """GREW as distributed (``train/``, ``test/gallery/``, ``test/probe/``; ``distractor/`` is not
    used), labelled as OpenGait's rearranged tree:

    - ``train/<id>/<seq>/*.png`` -> subject ``<id>train``, type ``00``, view ``<seq>``;
    - ``test/gallery/<id>/<seq>/*.png`` -> subject ``<id>``, type ``01``, ``02``, ... numbering the
      subject's sequence folders (sorted by name here; the reference numbers them in filesystem
      order), view ``<seq>``;
    - ``test/probe/<video>/*.png`` -> subject ``probe``, type ``03``, view ``<video>``.
    """
    root = _require_dir(root)
    out = []
    train, gallery, probe = root / "train", root / "test" / "gallery", root / "test" / "probe"
    if train.is_dir():
        for subject in _subdirs(train):
            for seq in _subdirs(subject):
                out.append(_sequence(f"{subject.name}train", "00", seq.name, seq))
    if gallery.is_dir():
        for subject in _subdirs(gallery):
            # Every sequence folder takes a number, as in the reference, even one without PNGs.
            for number, seq in enumerate(_subdirs(subject), start=1):
                out.append(_sequence(subject.name, f"{number:02d}", seq.name, seq))
    if probe.is_dir():
        for video in _subdirs(probe):
            out.append(_sequence("probe", "03", video.name, video))
    return sorted((s for s in out if s), key=lambda s: s[:3])


HID_VIEW = "default"  # OpenGait's HID tree has no view level: every sequence's view folder is "default"


def list_hid(root: str | Path) -> list[RawSequence]:
    """The HID competitions' data as distributed (``train/``, ``gallery/``, ``probe/``; any of them
    may be absent), labelled as OpenGait's HID pretreatment (``datasets/HID/pretreatment_HID.py``)
    stores them:

    - ``train/<id>/<seq>/*.png`` and ``gallery/<id>/<seq>/*.png`` -> subject ``<id>``, type
      ``<seq>``, view ``default``;
    - ``probe/<videoID>/*.png`` -> subject ``probe``, type ``<videoID>``, view ``default``.
    """
    root = _require_dir(root)
    out = []
    for part in ("train", "gallery"):
        if (root / part).is_dir():
            for subject in _subdirs(root / part):
                for seq in _subdirs(subject):
                    out.append(_sequence(subject.name, seq.name, HID_VIEW, seq))
    if (root / "probe").is_dir():
        for video in _subdirs(root / "probe"):
            out.append(_sequence("probe", video.name, HID_VIEW, video))
    return sorted((s for s in out if s), key=lambda s: s[:3])


def list_sequences(src: str | Path, dataset: str) -> tuple[list[RawSequence], str]:
    """``(sequences, layout)`` of the raw tree ``src`` of ``dataset``. OU-MVLP and GREW are read in
    their distributed layout when ``src`` has it (``Silhouette_*`` folders; ``train``/``test``), else
    as a tree already rearranged by OpenGait's scripts into ``<id>/<type>/<view>/*.png``."""
    _check_dataset(dataset)
    src = _require_dir(src)
    if dataset == "oumvlp" and _oumvlp_folders(src):
        return list_oumvlp(src), "oumvlp-raw"
    if dataset == "grew" and ((src / "train").is_dir() or (src / "test").is_dir()):
        return list_grew(src), "grew-raw"
    if dataset == "hid" and any((src / d).is_dir() for d in ("train", "gallery", "probe")):
        return list_hid(src), "hid-raw"
    if dataset == "gait3d":
        return list_gait3d(src), "id/type/view"
    return list_id_type_view(src), "id/type/view"


_EXPECTED_LAYOUT = {
    "casiab": "<id>/<type>/<view>/*.png",
    "oumvlp": "Silhouette_<view>-<seq>/<id>/*.png (or the rearranged <id>/<seq>/<view>/*.png)",
    "gait3d": "<id>/camid<k>_videoid<j>/seq<i>/*.png",
    "grew": "train/<id>/<seq>/*.png and test/{gallery/<id>/<seq>,probe/<video>}/*.png "
            "(or the rearranged <id>/<type>/<view>/*.png)",
    "hid": "train/<id>/<seq>/*.png, gallery/<id>/<seq>/*.png and probe/<videoID>/*.png "
           "(or the rearranged <id>/<type>/<view>/*.png)",
}


# ---------------------------------------------------------------------------------------------
# A store over an already pretreated PNG tree


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


# ---------------------------------------------------------------------------------------------
# A whole tree


@dataclass
class PretreatSummary:
    """What ``pretreat_tree`` did; also written to ``DEST/pretreat_summary.json``. Frame counts are
    for the sequences processed in this run (not those skipped because their output existed)."""

    dataset: str
    src: str
    dest: str
    img_size: int
    layout: str
    sequences: int = 0
    written: int = 0
    skipped_existing: int = 0
    empty: int = 0
    errors: int = 0
    short: int = 0
    frames_in: int = 0
    frames_kept: int = 0
    frames_dropped: int = 0
    unreadable: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _output_path(dest: Path, seq: RawSequence) -> Path:
    # OpenGait names a sequence's pkl after its view folder, except in its HID tree, where the view
    # is always "default" and the pkl is named after the sequence (the type)
    name = seq.type if seq.view == HID_VIEW else seq.view
    return dest / seq.subject / seq.type / seq.view / f"{name}.pkl"


def _write_atomically(path: Path, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename it into place, so an
    interrupted run leaves either the whole file or none (temporary names never end in .pkl)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pretreat_job(job: dict[str, Any]) -> dict[str, Any]:
    """Pretreat one sequence and write its pkl; returns its log record."""
    record = {k: job[k] for k in ("subject", "type", "view", "source")}
    out = Path(job["out"])
    try:
        frames, info = pretreat_sequence(job["frames"], job["img_size"], job["dataset"], strict=job["strict"])
    except DataError as exc:
        if job["strict"]:
            raise
        return {**record, "status": "error", "error": str(exc)}
    record.update(info)
    if len(frames) == 0:
        record["status"] = "empty"
        return record
    # Leftovers of an interrupted run are never output (their names do not end in .pkl).
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.tmp") if out.parent.is_dir() else []:
        stale.unlink(missing_ok=True)
    # Protocol 4: deterministic bytes and readable by every Python 3 that OpenGait supports.
    _write_atomically(out, lambda f: pickle.dump(frames, f, protocol=4))
    record["status"] = "written"
    if len(frames) < SHORT_SEQUENCE:
        record["warning"] = f"only {len(frames)} frames kept (fewer than {SHORT_SEQUENCE})"
    return record


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def _previous_log(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    previous = {}
    if path.is_file():
        for line in path.read_text("utf-8").splitlines():
            try:
                rec = json.loads(line)
                previous[(rec["subject"], rec["type"], rec["view"])] = rec
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line only loses its details
    return previous


_CARRIED = ("frames_in", "frames_kept", "dropped", "unreadable", "warning")


def _sequences_to_pretreat(src: Path, dest: Path, dataset: str) -> tuple[list[RawSequence], str]:
    """The raw tree's sequences and layout; a source tree with no sequence, two folders of one
    sequence, or the output inside it is a DataError."""
    sequences, layout = list_sequences(src, dataset)
    if not sequences:
        raise DataError(f"no PNG sequences found under {src}: expected the {dataset} layout "
                        f"{_EXPECTED_LAYOUT[dataset]}")
    keys = [s[:3] for s in sequences]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise DataError(f"{src}: two source folders map to the same sequence {'/'.join(dup)}")
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        raise DataError(f"the output {dest} must not be inside the raw tree {src}")
    return sequences, layout


def _plan_jobs(sequences: list[RawSequence], src: Path, dest: Path, previous: dict, *, img_size: int,
               dataset: str, strict: bool) -> tuple[dict[tuple[str, str, str], dict[str, Any]], list[dict[str, Any]]]:
    """``(records, jobs)``: the log records of the sequences whose pkl already exists (carrying the
    details ``previous`` logged for them), and a job for every other sequence."""
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    jobs = []
    for seq in sequences:
        out = _output_path(dest, seq)
        base = {"subject": seq.subject, "type": seq.type, "view": seq.view,
                "source": seq.frames[0].parent.relative_to(src).as_posix()}
        if out.is_file():
            old = previous.get(seq[:3], {})
            records[seq[:3]] = {**base, **{k: old[k] for k in _CARRIED if k in old}, "status": "skipped-existing"}
        else:
            jobs.append({**base, "frames": [str(p) for p in seq.frames], "out": str(out),
                         "img_size": int(img_size), "dataset": dataset, "strict": strict})
    return records, jobs


def _run_jobs(jobs: list[dict[str, Any]], workers: int | None) -> Iterator[dict[str, Any]]:
    """The log record of every job as it finishes (in no particular order), on ``workers``
    processes (default one per core)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if workers == 1:
        yield from map(_pretreat_job, jobs)
        return
    # spawn: safe even when the parent already started torch's or OpenCV's thread pools
    chunk = max(1, len(jobs) // (workers * 8))
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_pretreat_job, jobs, chunksize=chunk)


def _summarise(ordered: list[dict[str, Any]], **run: Any) -> PretreatSummary:
    """The summary of a run whose log records are ``ordered``; ``run`` names its dataset, paths,
    size and layout."""
    summary = PretreatSummary(**run, sequences=len(ordered))
    for rec in ordered:
        status = rec["status"]
        if status == "skipped-existing":
            summary.skipped_existing += 1
            continue
        summary.written += status == "written"
        summary.empty += status == "empty"
        summary.short += "warning" in rec and status == "written"
        if status == "error":
            summary.errors += 1
            summary.failed.append(rec["error"])
            continue
        summary.frames_in += rec["frames_in"]
        summary.frames_kept += rec["frames_kept"]
        summary.frames_dropped += len(rec["dropped"])
        summary.unreadable += [u["path"] for u in rec["unreadable"]]
    return summary


def pretreat_tree(src: str | Path, dest: str | Path, dataset: str, *, img_size: int = 64,
                  workers: int | None = None, progress: bool = True, strict: bool = False,
                  out_format: str = "pkl") -> PretreatSummary:
    """Pretreat the raw PNG tree ``src`` of ``dataset`` (casiab, oumvlp, gait3d, grew, hid) into
    OpenGait's pkl tree ``dest/<id>/<type>/<view>/<view>.pkl`` (HID: ``<type>.pkl``) (a pickled uint8 ``[T, S, S]``
    array, S = ``img_size``).

    Deterministic, and parallel over sequences (``workers`` processes; default one per core).
    Resumable: a sequence whose pkl exists is skipped, and each pkl appears only once complete.
    Sequences with no frame left are not written. An unreadable PNG is logged and skipped, or with
    ``strict`` raises :class:`DataError` naming the file (so does any other bad sequence). Writes
    ``dest/pretreat_log.jsonl`` (one record per sequence: source folder, frames in and kept,
    dropped frames and why, status written / skipped-existing / empty / error) and
    ``dest/pretreat_summary.json``; returns the summary. One run per ``dest`` at a time.
    """
    _check_dataset(dataset)
    _check_img_size(img_size)
    if out_format != "pkl":
        raise DataError(did_you_mean(str(out_format), ["pkl"], "pretreatment output format")
                        + " (for a packed store, pack the pkl tree afterwards)")
    src, dest = Path(src), Path(dest)
    sequences, layout = _sequences_to_pretreat(src, dest, dataset)
    dest.mkdir(parents=True, exist_ok=True)
    log_path = dest / LOG_NAME
    records, jobs = _plan_jobs(sequences, src, dest, _previous_log(log_path), img_size=img_size, dataset=dataset,
                               strict=strict)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(sequences), initial=len(sequences) - len(jobs), desc=f"pretreating {dataset}",
               unit="seq", disable=not progress, dynamic_ncols=True)
    try:
        for rec in _run_jobs(jobs, workers):
            records[(rec["subject"], rec["type"], rec["view"])] = rec
            bar.update(1)
    finally:
        bar.close()

    ordered = [records[k] for k in sorted(records)]  # the log's order does not depend on the workers
    summary = _summarise(ordered, dataset=dataset, src=str(src), dest=str(dest), img_size=int(img_size), layout=layout,
                         log=str(log_path))
    text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in ordered)
    _write_atomically(log_path, lambda f: f.write(text.encode("utf-8")))
    summary_text = json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n"
    _write_atomically(dest / SUMMARY_NAME, lambda f: f.write(summary_text.encode("utf-8")))
    return summary
