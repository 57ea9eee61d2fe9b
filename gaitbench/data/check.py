"""``gaitbench data check``: does a dataset fit a protocol? Read-only.

Reads every sequence once and reports, per split: how many sequences, subjects, types and views;
what the protocol needs that is missing (views, probe or gallery types, PROBE_SET sequences);
empty, short, unreadable or malformed sequences (dtype, shape, value range); ids listed by the
split but absent on disk and the reverse. ``problems`` are what stops the protocol from running as
specified, and damaged sequences (the command exits non-zero); ``warnings`` are worth knowing but
do not (short sequences, a few missing sequences as in the real OU-MVLP and CASIA-B, unlisted ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError

SHORT = 15  # the reference leaves shorter sequences out of training; papers report with >= 15 frames


@dataclass
class CheckReport:
    root: str
    protocol: str
    counts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad_sequences: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _examples(items, n: int = 5) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def check_dataset(store, protocol, *, read_frames: bool = True, progress: bool = False) -> CheckReport:
    """Check ``store`` against ``protocol`` (whose split is already resolved)."""
    report = CheckReport(str(store.root), protocol.describe())
    index = store.index
    subjects = index["subject"].to_numpy().astype(str)
    present = sorted(set(subjects))
    split = protocol.split
    train_ids, test_ids = split.ids("train", present), split.ids("test", present)
    if train_ids & test_ids:
        report.problems.append(f"subjects in both train and test: {_examples(sorted(train_ids & test_ids))}")
    listed = train_ids | test_ids
    if split.partition:  # ids of a partition file absent on disk, and the reverse
        absent = sorted(listed - set(present))
        if absent:
            report.warnings.append(f"{len(absent)} ids of the partition are not on disk: {_examples(absent)}")
    unlisted = sorted(set(present) - listed)
    if unlisted:
        report.warnings.append(f"{len(unlisted)} subjects on disk belong to no split: {_examples(unlisted)}")

    lengths = index["length"].to_numpy().copy()
    # the store's own refusals (a packed index's invalid rows), found without reading frames
    bad: dict[int, str] = {int(i): f"malformed index entry: {why}"
                           for i, why in getattr(store, "malformed", {}).items()}
    sizes: dict[tuple[int, ...], list[int]] = {}  # frame size -> rows, from the frames themselves
    if read_frames:
        from ..progress import progress as progress_bar

        for i in progress_bar(range(len(index)), desc="checking", unit="seq", enabled=progress):
            if i in bad:
                continue
            try:
                frames = store.frames(i)
            except DataError as exc:
                bad[i] = f"unreadable: {exc}"
                continue
            lengths[i] = len(frames)
            if frames.dtype != np.uint8 or frames.ndim != 3:
                bad[i] = f"expected uint8 [T, H, W] frames, found {frames.dtype} {frames.shape}"
            elif len(frames) == 0:
                bad[i] = "empty (0 frames)"
            elif not frames.any():
                bad[i] = "every frame is blank (all zeros)"
            else:
                sizes.setdefault(tuple(frames.shape[1:]), []).append(i)
    for i, why in bad.items():
        report.bad_sequences.append({"sequence": store.describe_row(i), "problem": why})
    if bad:  # a run would skip them (or stop with --strict), but the dataset is damaged: say so loudly
        blank = sum(why.startswith("every frame is blank") for why in bad.values())
        report.problems.append(
            f"{len(bad)} sequences are unreadable, empty or malformed (a run skips them, --strict stops"
            f"{'; blank ones it would use' if blank else ''}): {_examples(store.describe_row(i) for i in bad)}")
    known = lengths >= 0
    short = known & (lengths < SHORT) & ~np.isin(np.arange(len(index)), list(bad))
    if short.any():
        report.warnings.append(f"{int(short.sum())} sequences have fewer than {SHORT} frames (left out of training "
                               f"by the paper recipes' sampler.min_frames)")
    if not sizes and "height" in index and "width" in index:
        for i, hw in enumerate(zip(index["height"].astype(int), index["width"].astype(int))):
            if i not in bad:
                sizes.setdefault(hw, []).append(i)
    if len(sizes) > 1:  # a batch, a packed store and a model take one frame size
        ranked = sorted(sizes.items(), key=lambda kv: -len(kv[1]))
        parts = [f"{h}x{w} ({len(rows)} sequences" + (f", e.g. {_examples((store.describe_row(r) for r in rows), 3)})"
                                                       if k else ")")
                 for k, ((h, w), rows) in enumerate(ranked)]
        report.problems.append(f"frame sizes differ: {'; '.join(parts)}; a run, `data pack` and the models take one "
                               f"size (the most common here is {ranked[0][0][0]}x{ranked[0][0][1]}): re-pretreat the "
                               "others or remove them")

    good = ~np.isin(np.arange(len(index)), list(bad))
    for name, ids in (("train", train_ids), ("test", test_ids)):
        sel = np.isin(subjects, sorted(ids)) & good
        rows = index[sel]
        report.counts.append({
            "split": name, "subjects": int(rows["subject"].nunique()), "sequences": int(sel.sum()),
            "frames": int(lengths[sel & known].sum()) if (sel & known).any() else 0,
            "types": int(rows["type"].nunique()), "views": int(rows["view"].nunique()),
        })
        if not sel.any():
            report.problems.append(f"the {name} split selects no readable sequence (it lists "
                                   f"{_examples(getattr(split, name)) or 'nothing'})")
    test = index[np.isin(subjects, sorted(test_ids)) & good]
    _check_evaluation(protocol, test, report)
    return report


def _check_evaluation(protocol, test, report: CheckReport) -> None:
    ev = protocol.evaluation
    types = set(test["type"].astype(str))
    views = set(test["view"].astype(str))
    if ev.kind == "identification":
        _check_identification(ev, test, report)
        return
    if ev.kind == "view_matrix":
        missing_views = [v for v in ev.views if v not in views]
        if missing_views:
            report.problems.append(f"views of the protocol missing from the test set: {missing_views} "
                                   "(the view-matrix divisors would change)")
        extra = sorted(views - set(ev.views))
        if extra:
            report.warnings.append(f"test views not in the protocol (ignored by the evaluation): {_examples(extra)}")
        needed = {"gallery": ev.gallery_types, **{f"probe set {k}": v for k, v in ev.probe_sets.items()}}
        for what, wanted in needed.items():
            absent = [t for t in wanted if t not in types]
            if absent:
                report.problems.append(f"{what}: types {absent} are missing from the test set")
        # per-subject holes: sequences the protocol expects at every view
        expected = set(ev.gallery_types) | ev.probe_types
        have = set(zip(test["subject"], test["type"], test["view"]))
        holes = [(s, t, v) for s in sorted(set(test["subject"])) for t in sorted(expected & types) for v in ev.views
                 if v in views and (s, t, v) not in have]
        if holes:
            report.warnings.append(f"{len(holes)} expected test sequences are missing (subject, type, view): "
                                   f"{_examples(holes)}; a probe without gallery counts as a miss in rank1")
        return
    if ev.probe_from_partition:
        keys = set(test["subject"] + "-" + test["type"] + "-" + test["view"])
        wanted = set(protocol.split.probe_set)
        if not wanted:
            report.problems.append("the partition has no PROBE_SET")
        absent = sorted(wanted - keys)
        if absent:
            (report.problems if len(absent) == len(wanted) else report.warnings).append(
                f"{len(absent)} of {len(wanted)} PROBE_SET sequences are not in the test set: {_examples(absent)}")
    else:
        for name, wanted in ev.probe_sets.items():
            absent = [t for t in wanted if t not in types]
            if absent:
                report.problems.append(f"probe set {name}: types {absent} are missing from the test set")
    if ev.gallery_types and not types & set(ev.gallery_types):
        report.problems.append(f"gallery types {ev.gallery_types} are missing from the test set")
    if ev.average == "probe_views":
        missing_views = [v for v in ev.views if v not in views]
        if missing_views:
            report.problems.append(f"views of the protocol missing from the test set: {missing_views}")
    sub = getattr(ev, "submission", None)
    if sub is not None and not (test["subject"] == sub.probe_subject).any():
        report.warnings.append(f"no unlabelled probes (subject {sub.probe_subject!r}): local evaluation only, "
                               "no submission file can be written")


def _check_identification(ev, test, report: CheckReport) -> None:
    probes = test[test["subject"].astype(str) == ev.probe_subject]
    gallery = test[test["subject"].astype(str) != ev.probe_subject]
    if ev.gallery_types:
        gallery = gallery[gallery["type"].astype(str).isin(ev.gallery_types)]
    if probes.empty:
        report.problems.append(f"no unlabelled probes (subject {ev.probe_subject!r}) in the test set: the partition's "
                               f"TEST_SET must list {ev.probe_subject!r}")
    if gallery.empty:
        report.problems.append(f"the gallery is empty (types {ev.gallery_types or 'every labelled test sequence'})")
    videos = probes[ev.video_label].astype(str)
    dup = sorted(set(videos[videos.duplicated()]))
    if dup:
        report.problems.append(f"{len(dup)} probe video ids ({ev.video_label}) occur more than once: {_examples(dup)}; "
                               "the submission needs one row per video")


def format_report(report: CheckReport) -> str:
    from tabulate import tabulate

    lines = [f"{report.root} against {report.protocol}", "",
             tabulate(report.counts, headers="keys", tablefmt="github"), ""]
    for p in report.problems:
        lines.append(f"PROBLEM: {p}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    if report.bad_sequences:
        lines.append("")
        lines.append(tabulate(report.bad_sequences[:20], headers="keys", tablefmt="github"))
    lines.append("")
    lines.append("OK: the protocol can run on this dataset" if report.ok else
                 f"FAILED: {len(report.problems)} problem(s) stop the protocol from running as specified")
    return "\n".join(lines)
