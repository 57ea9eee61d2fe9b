"""The standard GaitSet/OpenGait pretreatment of raw silhouette PNG trees.

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

``pretreat_tree`` turns a raw tree (listed by :mod:`gaitbench.data.layouts`) into OpenGait's pkl
tree ``DEST/<id>/<type>/<view>/<view>.pkl``; :class:`gaitbench.data.store.PngTreeStore` reads an
already pretreated ``<id>/<type>/<view>/*.png`` tree.

OpenCV is imported inside the functions that need it, so importing gaitbench stays cheap.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import DataError, did_you_mean
from ..io import atomic_write, remove_stale_temporaries, writing
from .layouts import _EXPECTED_LAYOUT, HID_VIEW, RawSequence, _check_dataset, list_sequences
from .store import check_target

# A frame whose pixel sum is at most this (about 39 pixels at 255) has no usable silhouette.
MIN_FOREGROUND = 10000
# Fewer kept frames than this gets a warning in the log, as in the reference.
SHORT_SEQUENCE = 5
LOG_NAME = "pretreat_log.jsonl"
SUMMARY_NAME = "pretreat_summary.json"



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
    # Leftovers of an interrupted run (.NAME.tmp-PID) are never output: their names do not end in
    # .pkl. Those whose writer is gone are removed; a live writer's is left to it.
    remove_stale_temporaries(out.parent, out.name)
    # Protocol 4: deterministic bytes and readable by every Python 3 that OpenGait supports.
    atomic_write(out, lambda f: pickle.dump(frames, f, protocol=4))
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


def _ends_mid_line(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return False
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


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
    # new, empty, or an earlier pretreatment's output (its log is there: that run is resumed)
    own = (dest / LOG_NAME).is_file()
    check_target(dest, own, force=own, what=f"pretreated pkl tree (a folder holding an earlier pretreatment's "
                                            f"{LOG_NAME} is resumed)")
    dest.mkdir(parents=True, exist_ok=True)
    log_path = dest / LOG_NAME
    records, jobs = _plan_jobs(sequences, src, dest, _previous_log(log_path), img_size=img_size, dataset=dataset,
                               strict=strict)
    from ..progress import progress as progress_bar

    bar = progress_bar(total=len(sequences), initial=len(sequences) - len(jobs), desc=f"pretreating {dataset}",
                       unit="seq", enabled=progress)
    try:
        # each finished sequence's record is appended at once, so a killed run's log keeps them
        # (a rerun reads them back for the sequences it skips); rewritten in order at the end
        with writing(log_path, what="pretreatment log"), open(log_path, "a", encoding="utf-8") as log:
            if _ends_mid_line(log_path):  # a line cut short by a kill stays on its own line
                log.write("\n")
            for rec in _run_jobs(jobs, workers):
                records[(rec["subject"], rec["type"], rec["view"])] = rec
                log.write(json.dumps(rec, sort_keys=True) + "\n")
                log.flush()
                bar.update(1)
    finally:
        bar.close()

    ordered = [records[k] for k in sorted(records)]  # the log's order does not depend on the workers
    summary = _summarise(ordered, dataset=dataset, src=str(src), dest=str(dest), img_size=int(img_size), layout=layout,
                         log=str(log_path))
    text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in ordered)
    atomic_write(log_path, lambda f: f.write(text.encode("utf-8")))
    summary_text = json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(dest / SUMMARY_NAME, lambda f: f.write(summary_text.encode("utf-8")))
    return summary
