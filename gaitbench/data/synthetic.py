"""The built-in synthetic gait datasets: real layouts, procedurally rendered walkers.

Real CASIA-B, OU-MVLP, GREW and Gait3D are licensed; gaitbench renders datasets of the same layouts
instead (see ``walker.py`` for the body model), labelled the way OpenGait's pkl trees label them:

- ``casiab``: ids ``001``..; types ``nm-01``..``nm-06``, ``bg-01``, ``bg-02``, ``cl-01``, ``cl-02``;
  views ``000``, ``018``, .., ``180``.
- ``oumvlp``: ids ``00001``..; types ``00`` and ``01`` (two walks); views ``000``..``090`` and
  ``180``..``270`` in steps of 15. As in the real set, a few subjects lack one of the two walks at
  some views (4 % of the (subject, view) pairs, at least one of them a missing gallery ``01``).
- ``grew``: every sequence has its own walking direction and camera height. Training ids
  ``00001train``.. with type ``00``; test ids ``00001``.. with types ``01`` (gallery) and ``02``
  (local probe); the official-style probe set is subject ``probe``, type ``03``, one sequence per test
  subject, whose identities are only in ``probe_truth.csv`` (``videoId,subject``); ``distractors``
  adds gallery-only identities (type ``01``). The view of every GREW sequence is its sequence id.
- ``gait3d``: ids ``0001``..; types ``camid<k>_videoid<j>``, views ``seq<i>``; each subject has 2-6
  sequences from ceiling cameras at their own azimuth and elevation, lengths from a third to
  five thirds of ``frames``, a fifth of them partly occluded. Its split is a partition file,
  ``partition.json`` (TRAIN_SET, TEST_SET and PROBE_SET with one ``<id>-<type>-<view>`` probe per
  test subject), also recorded in ``meta.json`` under ``partition``.
- ``hid``: the HID competitions' layout on CASIA-E (OpenGait's HID tree): ids ``0000``..; every
  sequence has view ``default`` (the HID tree has no view level) and is walked at its own angle
  (0-180 degrees in steps of 15, from a low or a high camera), in its own condition. Training
  subjects have ``HID_TRAIN_SEQUENCES`` walks (types ``00``..); test subjects have a gallery of
  ``HID_GALLERY_SEQUENCES`` plain walks (types ``00``, ``01``) and ``HID_PROBE_WALKS`` probe walks,
  mostly with a bag or a coat, each filmed from one angle by a low and a high camera (as CASIA-E
  films its walks), every video stored unlabelled as subject ``probe`` with a random video id as the
  type; their identities are only in ``probe_truth.csv`` (``videoID,label``, the submission's
  columns). ``partition.json`` holds TRAIN_SET and TEST_SET (with ``probe``), as OpenGait's HID.json.
- A ``casiab`` of another size than the real set's 124 subjects carries ``partition.json``
  with the LT proportions (74 of 124 subjects train, the rest test), since the protocols' fixed ids
  (train 001-074, test 075-124) do not exist in it; ``run``, ``data check`` and ``evaluate`` use it.

Datasets are generated on demand from a seed into a cache directory and reused when present; the
same parameters always give the same bytes. Every store written here is marked ``synthetic`` in its
metadata, with the generator's name, versions and full spec (seed included), and so is every
result computed from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import DataError, GaitbenchError, did_you_mean
from .store import PARTITION_FILE, PROBE_TRUTH_FILE, PackedStore, PackedWriter, building, check_target
from .walker import CAMERA_ELEVATION_DEG, Occlusion, frame_width, random_stream


# the columns of a plan beyond the labels and length: what the walker is asked to render
RENDER_COLUMNS = ["walker", "condition", "sequence", "azimuth", "elevation", "occlusion"]


@dataclass
class Plan:
    """Everything ``generate`` writes, before any frame is rendered: one row per sequence in storage
    order (``subject``, ``type``, ``view``, ``length`` and the ``RENDER_COLUMNS``), plus the side
    files of layouts that have them."""

    table: pd.DataFrame
    partition: dict | None = None  # OpenGait partition (TRAIN_SET, TEST_SET, PROBE_SET)
    probe_truth: pd.DataFrame | None = None  # videoId, subject of unlabelled probes


@dataclass(frozen=True)
class Layout:
    """What a dataset looks like: its default size, fixed views and types (empty where every
    sequence has its own), and the function that lays out a dataset of a given spec."""

    name: str
    views: tuple[str, ...]
    types: tuple[str, ...]
    subjects: int  # default number of identities
    id_width: int
    plan: Callable[["SynthSpec"], Plan] = field(repr=False, compare=False)
    frames: int = 12  # default mean frames per sequence
    # default identities on the test side where the layout draws its own split (gait3d, grew):
    # enough probes that rank-1 is known to about a point, while training keeps its small side
    test_subjects: int | None = None
    version: str = "1"  # bump whenever the layout's plan changes for an existing spec

    def condition(self, type_: str) -> tuple[str, int]:
        """``'bg-02'`` -> ``('bg', 2)``: the walker's condition and the repeat number (CASIA-B)."""
        cond, _, number = type_.partition("-")
        return cond, int(number)


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines the generated bytes. ``subjects`` and ``frames`` left as None
    take the layout's defaults."""

    layout: str = "casiab"
    subjects: int | None = None  # identities (grew: train + test, without distractors)
    frames: int | None = None  # mean frames per sequence; how lengths vary is the layout's
    frame_step: float = 2.5  # video frames (25 fps) per output frame: 12 x 2.5 = 30, about one gait cycle
    seed: int = 0
    height: int = 64  # frame height: 64 (64x44 frames) or 128 (128x88)
    distractors: int = 0  # grew: extra gallery-only identities
    # gait3d, grew: identities on the test side (of ``subjects``); None: the layout's default with
    # the default size, else the layout's share of ``subjects``
    test_subjects: int | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise DataError(did_you_mean(self.layout, LAYOUTS, "synthetic layout"))
        layout = LAYOUTS[self.layout]
        if self.subjects is None:
            object.__setattr__(self, "subjects", layout.subjects)
            if self.test_subjects is None:
                object.__setattr__(self, "test_subjects", layout.test_subjects)
        if self.test_subjects is not None:
            if self.layout not in {"gait3d", "grew"}:
                raise DataError(f"test_subjects applies to the gait3d and grew layouts (their split is drawn by "
                                f"the generator); layout {self.layout!r} takes its split from the protocol")
            if not 1 <= self.test_subjects < self.subjects:
                raise DataError(f"test_subjects must lie in [1, subjects - 1] = [1, {self.subjects - 1}] so that "
                                f"both sides have identities; got {self.test_subjects}")
        if self.frames is None:
            object.__setattr__(self, "frames", layout.frames)

    @classmethod
    def full(cls, layout: str = "casiab", seed: int = 0) -> "SynthSpec":
        """The full-length variant: every frame of 25-fps walks of about 3 s."""
        return cls(layout=layout, frames=80, frame_step=1.0, seed=seed)

    def generator_info(self) -> dict:
        """Generator name, walker and layout versions and the full spec: what ``meta.json`` and
        every result made from the dataset record."""
        from .walker import WALKER_VERSION

        return {"name": "gaitbench-walker", "version": WALKER_VERSION,
                "layout_version": LAYOUTS[self.layout].version, **asdict(self)}

    def fingerprint(self) -> str:
        # keys added after the first release count only when they differ from their original
        # value, so adding one never changes an existing dataset's fingerprint or cache folder
        info = {k: v for k, v in self.generator_info().items() if _FINGERPRINT_BASELINE.get(k, _UNSET) != v}
        blob = json.dumps(info, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def dirname(self) -> str:
        return f"{self.layout}-n{self.subjects}-f{self.frames}-s{self.seed}-{self.fingerprint()}"


_UNSET = object()
_FINGERPRINT_BASELINE = {"layout_version": "1", "height": 64, "distractors": 0, "test_subjects": None}


def cache_dir() -> Path:
    """``$GAITBENCH_CACHE``, else ``$XDG_CACHE_HOME/gaitbench``, else ``~/.cache/gaitbench``."""
    if os.environ.get("GAITBENCH_CACHE"):
        return Path(os.environ["GAITBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gaitbench"


# ----------------------------------------------------------------------------------------------
# layouts
# ----------------------------------------------------------------------------------------------

def _row(subject: str, type_: str, view: str, length: int, walker: int, condition: str, sequence: int,
         azimuth: float, elevation: float = CAMERA_ELEVATION_DEG, occlusion: Occlusion | None = None) -> tuple:
    return (subject, type_, view, int(length), int(walker), condition, int(sequence), float(azimuth),
            float(elevation), occlusion)


def _table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["subject", "type", "view", "length", *RENDER_COLUMNS])


def _length(rng: np.random.Generator, frames: int, low: float, high: float) -> int:
    """A sequence length drawn uniformly from ``frames * [low, high]`` (at least one frame)."""
    lo = max(1, round(frames * low))
    hi = max(lo, round(frames * high))
    return int(rng.integers(lo, hi + 1))


def _condition(rng: np.random.Generator) -> str:
    """In the wild: mostly plain walks, some with a bag, some in a coat."""
    return str(rng.choice(["nm", "bg", "cl"], p=[0.7, 0.15, 0.15]))


def _split(spec: SynthSpec, test_fraction: float) -> tuple[int, int]:
    """(train, test) identity counts: ``spec.test_subjects``, else the layout's share (at least one
    test identity)."""
    n_test = spec.test_subjects or min(spec.subjects, max(1, round(spec.subjects * test_fraction)))
    return spec.subjects - n_test, n_test


CASIAB_LT_TRAIN = 74  # of 124 subjects: the LT split, kept in proportion by a reduced synthetic set


def _reduced_partition(labels: list[str], train_fraction: float) -> dict:
    """TRAIN_SET / TEST_SET of a reduced synthetic set: the first ids train, the rest test (at
    least one of each)."""
    n_train = min(len(labels) - 1, max(1, round(len(labels) * train_fraction)))
    return {"TRAIN_SET": labels[:n_train], "TEST_SET": labels[n_train:]}


def _casiab_needs_partition(spec: SynthSpec) -> bool:
    """A synthetic CASIA-B whose subjects are not the real set's 124 cannot use the protocols' ids."""
    return spec.layout == "casiab" and spec.subjects != LAYOUTS["casiab"].subjects and spec.subjects >= 2


def _plan_casiab(spec: SynthSpec) -> Plan:
    layout = LAYOUTS["casiab"]
    rows = []
    for s in range(1, spec.subjects + 1):
        for t_i, type_ in enumerate(layout.types):
            cond, number = layout.condition(type_)
            for v_i, view in enumerate(layout.views):
                rng = np.random.default_rng([spec.seed, s, t_i, v_i, 0x5EC])
                lo, hi = max(1, round(spec.frames * 0.75)), max(1, round(spec.frames * 1.25))
                length = int(rng.integers(lo, hi + 1))
                rows.append(_row(str(s).zfill(layout.id_width), type_, view, length, s, cond, number, float(view)))
    partition = None
    if _casiab_needs_partition(spec):
        labels = [str(s).zfill(layout.id_width) for s in range(1, spec.subjects + 1)]
        partition = _reduced_partition(labels, CASIAB_LT_TRAIN / layout.subjects)
    return Plan(_table(rows), partition=partition)


OUMVLP_MISSING = 0.04  # fraction of (subject, view) pairs that lack one of their two walks


def _oumvlp_missing(spec: SynthSpec) -> set[tuple[int, str, str]]:
    """(subject, type, view) left out: ``OUMVLP_MISSING`` of the (subject, view) pairs, spread over a
    few subjects; the first one lacks its gallery walk ``01`` (so a probe without gallery exists)."""
    views = LAYOUTS["oumvlp"].views
    rng = random_stream("oumvlp-missing", spec.seed, spec.subjects)
    k = max(1, round(OUMVLP_MISSING * spec.subjects * len(views)))
    n_subjects = min(spec.subjects, math.ceil(k / 3))  # about three views each
    subjects = np.sort(rng.choice(np.arange(1, spec.subjects + 1), size=n_subjects, replace=False))
    pairs = [(int(s), v) for s in subjects for v in views]
    chosen = rng.choice(len(pairs), size=k, replace=False)
    missing = set()
    for j, c in enumerate(chosen):
        type_ = "01" if j == 0 else str(rng.choice(["00", "01"]))
        missing.add((pairs[c][0], type_, pairs[c][1]))
    return missing


def _plan_oumvlp(spec: SynthSpec) -> Plan:
    layout = LAYOUTS["oumvlp"]
    missing = _oumvlp_missing(spec)
    rows = []
    for s in range(1, spec.subjects + 1):
        for number, type_ in enumerate(layout.types, start=1):
            for view in layout.views:
                if (s, type_, view) in missing:
                    continue
                rng = random_stream("oumvlp-length", spec.seed, s, number, int(view))
                rows.append(_row(str(s).zfill(layout.id_width), type_, view, _length(rng, spec.frames, 0.75, 1.25),
                                 s, "nm", number, float(view)))
    return Plan(_table(rows))


GREW_TRAIN_SEQUENCES = 4  # walks per training identity


def _plan_grew(spec: SynthSpec) -> Plan:
    n_train, n_test = _split(spec, 0.4)
    ids = random_stream("grew-ids", spec.seed)
    seen: set[str] = set()

    def sequence_id() -> str:
        # GREW names sequences with random ids; unique across the dataset, since all probes
        # share one subject and type and differ only by it
        while True:
            sid = f"{int(ids.integers(0, 2 ** 32)):08x}"
            if sid not in seen:
                seen.add(sid)
                return sid

    rows, truth = [], []

    def walk(label: str, type_: str, walker: int, number: int) -> str:
        rng = random_stream("grew-sequence", spec.seed, walker, number)
        view = sequence_id()
        rows.append(_row(label, type_, view, _length(rng, spec.frames, 0.5, 1.5), walker, _condition(rng), number,
                         rng.uniform(0.0, 360.0), rng.uniform(0.0, 30.0)))
        return view

    for i in range(1, n_train + 1):
        for number in range(1, GREW_TRAIN_SEQUENCES + 1):
            walk(f"{i:05d}train", "00", i, number)
    for j in range(1, n_test + 1):
        walk(f"{j:05d}", "01", n_train + j, 1)
        walk(f"{j:05d}", "02", n_train + j, 2)
    for k in range(1, spec.distractors + 1):
        walk(f"{n_test + k:05d}", "01", spec.subjects + k, 1)
    for j in range(1, n_test + 1):
        truth.append((walk("probe", "03", n_train + j, 3), f"{j:05d}"))
    return Plan(_table(rows), probe_truth=pd.DataFrame(truth, columns=["videoId", "subject"]))


GAIT3D_CAMERAS = 39
GAIT3D_OCCLUDED = 0.2  # fraction of sequences partly occluded


def _gait3d_occlusion(rng: np.random.Generator) -> Occlusion | None:
    if rng.random() >= GAIT3D_OCCLUDED:
        return None
    if rng.random() < 0.5:
        return Occlusion("lower", level=float(rng.uniform(0.25, 0.45)))
    top = float(rng.uniform(0.15, 0.55))
    left = float(rng.uniform(-0.3, 0.05))
    return Occlusion("box", top=top, bottom=min(0.9, top + float(rng.uniform(0.15, 0.3))), left=left,
                     right=left + float(rng.uniform(0.1, 0.3)))


def _plan_gait3d(spec: SynthSpec) -> Plan:
    n_train, n_test = _split(spec, 0.25)
    width = LAYOUTS["gait3d"].id_width
    labels = [str(s).zfill(width) for s in range(1, spec.subjects + 1)]
    order = random_stream("gait3d-split", spec.seed, spec.subjects).permutation(spec.subjects)
    test = sorted(labels[i] for i in order[:n_test])
    # ceiling cameras: each looks down at its own angle
    elevation = [float(random_stream("gait3d-camera", spec.seed, k).uniform(15.0, 45.0))
                 for k in range(GAIT3D_CAMERAS)]
    rows, probes = [], []
    for s, label in enumerate(labels, start=1):
        rng = random_stream("gait3d-subject", spec.seed, s)
        count: dict[str, int] = {}
        first = len(rows)
        for number in range(1, int(rng.integers(2, 7)) + 1):
            cam, video = int(rng.integers(0, GAIT3D_CAMERAS)), int(rng.integers(0, 6))
            type_ = f"camid{cam}_videoid{video}"
            view = f"seq{count.get(type_, 0)}"
            count[type_] = count.get(type_, 0) + 1
            rows.append(_row(label, type_, view, _length(rng, spec.frames, 1 / 3, 5 / 3), s, _condition(rng), number,
                             rng.uniform(0.0, 360.0), elevation[cam] + rng.uniform(-5.0, 5.0),
                             _gait3d_occlusion(rng)))
        if label in test:
            probe = rows[first + int(rng.integers(0, len(rows) - first))]
            probes.append(f"{probe[0]}-{probe[1]}-{probe[2]}")
    partition = {"TRAIN_SET": [x for x in labels if x not in test], "TEST_SET": test, "PROBE_SET": probes}
    return Plan(_table(rows), partition=partition)


HID_TRAIN_SEQUENCES = 8  # walks per training subject
HID_GALLERY_SEQUENCES = 2  # plain walks per test subject in the gallery
HID_PROBE_WALKS = 4  # probe walks per test subject, each filmed by the low and the high camera
HID_PROBE_CONDITIONS = (("nm", 0.3), ("bg", 0.35), ("cl", 0.35))
HID_ELEVATIONS = (CAMERA_ELEVATION_DEG, 25.0)  # CASIA-E films walks from a low and a high camera


HID_TEST_FRACTION = 0.6  # of the subjects: 100 train, 150 test (1,200 probe videos) by default


def _plan_hid(spec: SynthSpec) -> Plan:
    n_train, n_test = _split(spec, HID_TEST_FRACTION)
    labels = [f"{i:04d}" for i in range(spec.subjects)]
    ids = random_stream("hid-ids", spec.seed)
    seen: set[str] = set()

    def video_id() -> str:  # unique random ids: the probes differ only by them
        while True:
            vid = f"{int(ids.integers(0, 2 ** 32)):08x}"
            if vid not in seen:
                seen.add(vid)
                return vid

    rows, truth = [], []

    def camera(rng: np.random.Generator) -> tuple[float, float]:
        return 15.0 * int(rng.integers(0, 13)), HID_ELEVATIONS[int(rng.integers(0, len(HID_ELEVATIONS)))]

    def walk(label: str, type_: str, walker: int, number: int, condition: str, rng: np.random.Generator,
             view: tuple[float, float] | None = None) -> None:
        azimuth, elevation = view or camera(rng)
        rows.append(_row(label, type_, "default", _length(rng, spec.frames, 0.5, 1.5), walker, condition, number,
                         azimuth, elevation))

    for i in range(n_train):
        for number in range(HID_TRAIN_SEQUENCES):
            rng = random_stream("hid-train", spec.seed, i, number)
            walk(labels[i], f"{number:02d}", i + 1, number, _condition(rng), rng)
    for j in range(n_train, spec.subjects):
        for number in range(HID_GALLERY_SEQUENCES):
            walk(labels[j], f"{number:02d}", j + 1, number, "nm", random_stream("hid-gallery", spec.seed, j, number))
    conditions = [c for c, _ in HID_PROBE_CONDITIONS]
    weights = [w for _, w in HID_PROBE_CONDITIONS]
    for j in range(n_train, spec.subjects):
        for w in range(HID_PROBE_WALKS):
            number = HID_GALLERY_SEQUENCES + w
            rng = random_stream("hid-probe", spec.seed, j, number)
            condition = str(rng.choice(conditions, p=weights))
            azimuth = 15.0 * int(rng.integers(0, 13))
            for elevation in HID_ELEVATIONS:  # the same walk seen by the low and the high camera
                vid = video_id()
                walk("probe", vid, j + 1, number, condition, rng, (azimuth, elevation))
                truth.append((vid, labels[j]))
    partition = {"TRAIN_SET": labels[:n_train], "TEST_SET": labels[n_train:] + ["probe"]}
    return Plan(_table(rows), partition=partition,
                probe_truth=pd.DataFrame(truth, columns=["videoID", "label"]))


LAYOUTS = {
    "casiab": Layout(
        name="casiab",
        views=tuple(f"{v:03d}" for v in range(0, 181, 18)),
        types=tuple([f"nm-{i:02d}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]),
        subjects=124,
        id_width=3,
        plan=_plan_casiab,
    ),
    "oumvlp": Layout(
        name="oumvlp",
        views=tuple(f"{v:03d}" for v in [*range(0, 91, 15), *range(180, 271, 15)]),
        types=("00", "01"),
        subjects=200,  # the protocol's split: odd ids train, even ids test (1,400 probes)
        id_width=5,
        plan=_plan_oumvlp,
    ),
    # 60 training identities as before; 1,000 test identities: 1,000 probes (GREW: 1,000 gallery
    # sequences; Gait3D: one probe per identity against about 3,500 gallery sequences, as the real
    # set's 1,000 probes against 5,000)
    "grew": Layout(name="grew", views=(), types=("00", "01", "02", "03"), subjects=1060, id_width=5, plan=_plan_grew,
                   test_subjects=1000),
    "gait3d": Layout(name="gait3d", views=(), types=(), subjects=1060, id_width=4, plan=_plan_gait3d, frames=24,
                     test_subjects=1000),
    "hid": Layout(name="hid", views=("default",), types=(), subjects=250, id_width=4, plan=_plan_hid),
}


def plan_dataset(spec: SynthSpec) -> Plan:
    """The sequences (and side files) of ``spec``, without rendering anything."""
    if spec.subjects < 1 or spec.frames < 1:
        raise DataError("a synthetic dataset needs at least one subject and one frame per sequence")
    if spec.distractors < 0 or (spec.distractors and spec.layout != "grew"):
        raise DataError(f"distractors are a GREW feature (a count >= 0); layout {spec.layout!r} got "
                        f"{spec.distractors}")
    try:
        frame_width(spec.height)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return LAYOUTS[spec.layout].plan(spec)


def sequence_table(spec: SynthSpec) -> pd.DataFrame:
    """One row per sequence (subject, type, view, length and what to render) in storage order."""
    return plan_dataset(spec).table


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------

def _render_walker(args) -> int:
    """Render the sequences of one walker identity into the shared frame array."""
    root, spec_dict, items = args
    from .walker import render_sequence

    spec = SynthSpec(**spec_dict)
    frames = np.load(Path(root) / "frames.npy", mmap_mode="r+")
    for offset, length, walker, condition, sequence, azimuth, elevation, occlusion in items:
        frames[offset:offset + length] = render_sequence(
            walker, condition, azimuth, seed=spec.seed, sequence=sequence, frames=length,
            frame_step=spec.frame_step, elevation_deg=elevation, height=spec.height, occlusion=occlusion)
    frames.flush()
    return len(items)


def is_synthetic_output(path: str | Path) -> bool:
    """Whether the folder ``path`` is a synthetic packed store :func:`generate` wrote."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("synthetic") is True and "generator" in meta


def generate(spec: SynthSpec, out: str | Path, workers: int | None = None, progress: bool = True,
             force: bool = False, cache: bool = False) -> PackedStore:
    """Render ``spec`` into a packed store at ``out`` (written to a temporary folder first, so an
    interrupted generation never leaves a half-written dataset behind). ``out`` must be new or
    empty; with ``force`` an earlier synthetic store there is replaced once the new one is
    complete (anything else is never touched). ``workers``: processes (default one per CPU; 1
    renders in this process). Layouts with side files write them next to the store:
    ``partition.json`` (gait3d), ``probe_truth.csv`` (grew). ``checksums.json`` records a checksum
    per block of ``frames.npy`` (see :func:`verify_frames`). ``cache``: ``out`` is gaitbench's own
    cache entry of ``spec``, replaced whatever it holds."""
    out = Path(out)
    own = cache or is_synthetic_output(out)
    check_target(out, own, force or cache, "synthetic dataset")
    plan = plan_dataset(spec)
    meta = {
        "dataset": spec.layout,
        "synthetic": True,
        "generator": spec.generator_info(),
        "fingerprint": spec.fingerprint(),
    }
    if plan.partition is not None:
        meta["partition"] = plan.partition
        meta["partition_file"] = PARTITION_FILE
    if plan.probe_truth is not None:
        meta["probe_truth_file"] = PROBE_TRUTH_FILE
    table = plan.table
    from ..progress import progress as progress_bar

    with building(out, replace=own and (force or cache)) as tmp:
        writer = PackedWriter(tmp, table, (spec.height, frame_width(spec.height)), meta)
        jobs = []
        # one job per walker identity: its body parameters are drawn once per process
        for _, group in table.assign(offset=writer.index["offset"]).groupby("walker", sort=True):
            items = [(int(r.offset), int(r.length), int(r.walker), str(r.condition), int(r.sequence),
                      float(r.azimuth), float(r.elevation), r.occlusion) for r in group.itertuples(index=False)]
            jobs.append((str(tmp), asdict(spec), items))
        workers = workers or int(os.environ.get("GAITBENCH_SYNTH_WORKERS") or 0) or min(len(jobs), os.cpu_count() or 1)
        with progress_bar(total=len(table), desc=f"synthesising {spec.layout}", unit="seq", enabled=progress) as bar:
            if workers <= 1:
                for job in jobs:
                    bar.update(_render_walker(job))
            else:
                # spawn: safe even when the parent already started torch's thread pools
                with mp.get_context("spawn").Pool(workers) as pool:
                    for done in pool.imap_unordered(_render_walker, jobs):
                        bar.update(done)
        if plan.partition is not None:
            (tmp / PARTITION_FILE).write_text(json.dumps(plan.partition, indent=2), "utf-8")
        if plan.probe_truth is not None:
            plan.probe_truth.to_csv(tmp / PROBE_TRUTH_FILE, index=False)
        write_checksums(tmp)
        writer.finish()
    return PackedStore(out)


# ----------------------------------------------------------------------------------------------
# cache integrity
# ----------------------------------------------------------------------------------------------

CHECKSUM_FILE = "checksums.json"
CHECKSUM_BLOCK = 4 << 20  # bytes of frames.npy per checksum
VERIFY_ALL_BELOW = 256 << 20  # smaller arrays are checked whole on reuse; larger ones by a sample
VERIFY_SAMPLE = 16  # blocks checked of a larger array (with the first and the last)


def _block_crcs(path: Path, blocks=None) -> dict[int, int]:
    import zlib

    out = {}
    size = path.stat().st_size
    with open(path, "rb") as fh:
        for b in (range(-(-size // CHECKSUM_BLOCK)) if blocks is None else blocks):
            fh.seek(b * CHECKSUM_BLOCK)
            out[b] = zlib.crc32(fh.read(CHECKSUM_BLOCK))
    return out


def write_checksums(root: str | Path) -> None:
    """Record the CRC-32 of every block of ``root/frames.npy`` in ``root/checksums.json``."""
    from ..io import write_json_atomic

    frames = Path(root) / "frames.npy"
    crcs = _block_crcs(frames)
    write_json_atomic(Path(root) / CHECKSUM_FILE, {"file": "frames.npy", "bytes": frames.stat().st_size,
                                                   "block_bytes": CHECKSUM_BLOCK, "algorithm": "crc32",
                                                   "blocks": [crcs[b] for b in range(len(crcs))]})


def verify_frames(root: str | Path, sample: int | None = VERIFY_SAMPLE, seed: int | None = None) -> str | None:
    """None when ``root/frames.npy`` matches the checksums recorded at generation, else what is
    wrong. Arrays under :data:`VERIFY_ALL_BELOW` bytes are checked whole; larger ones in ``sample``
    blocks drawn at random (with the first and the last), so repeated uses cover the whole array
    and damage to a sizeable part of it is found at once. ``sample=None`` checks every block."""
    root = Path(root)
    frames = root / "frames.npy"
    try:
        recorded = json.loads((root / CHECKSUM_FILE).read_text("utf-8"))
        blocks, block_bytes = [int(c) for c in recorded["blocks"]], int(recorded["block_bytes"])
        size = int(recorded["bytes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its {CHECKSUM_FILE} is missing or unreadable ({type(exc).__name__})"
    if block_bytes != CHECKSUM_BLOCK:
        return f"its {CHECKSUM_FILE} uses blocks of {block_bytes} bytes, not {CHECKSUM_BLOCK}"
    try:
        actual = frames.stat().st_size
    except OSError:
        return "frames.npy is missing"
    if actual != size or len(blocks) != -(-size // CHECKSUM_BLOCK):
        return f"frames.npy holds {actual} bytes, {size} were written"
    if sample is None or size <= VERIFY_ALL_BELOW or len(blocks) <= sample + 2:
        chosen = range(len(blocks))
    else:
        rng = np.random.default_rng(seed)
        chosen = sorted({0, len(blocks) - 1, *rng.choice(len(blocks), size=sample, replace=False).tolist()})
    for b, crc in _block_crcs(frames, chosen).items():
        if crc != blocks[b]:
            return (f"block {b} of frames.npy (bytes {b * CHECKSUM_BLOCK} to {min(size, (b + 1) * CHECKSUM_BLOCK)}) "
                    "does not match its checksum recorded at generation")
    return None


def ensure_synthetic(spec: SynthSpec | None = None, root: str | Path | None = None, workers: int | None = None,
                     progress: bool = True, say: Callable[[str], None] | None = None) -> PackedStore:
    """The cached synthetic dataset of ``spec``, generated first if it is not there yet. A cached
    set whose frames no longer match the checksums recorded at generation (:func:`verify_frames`)
    is generated again, with a message through ``say`` (default: standard error). Temporaries of
    killed generations are removed first (never those of a generation still running)."""
    from ..io import remove_stale_temporaries

    spec = spec or SynthSpec()
    base = Path(root) if root else cache_dir() / "synthetic"
    path = base / spec.dirname()
    say = say or (lambda line: print(line, file=sys.stderr))
    for tmp, size in remove_stale_temporaries(base):
        say(f"removed {tmp.name}, left by a generation that was killed ({size / 2**20:.0f} MiB)")
    if (path / "meta.json").is_file():
        try:
            store = PackedStore(path)
            # a cache written before reduced CASIA-B sets carried their partition is made again
            stale = _casiab_needs_partition(spec) and not (path / PARTITION_FILE).is_file()
            if store.meta.get("fingerprint") == spec.fingerprint() and not stale:
                if not (path / CHECKSUM_FILE).is_file():  # cached before checksums were recorded
                    with contextlib.suppress(GaitbenchError):
                        write_checksums(path)
                    return store
                problem = verify_frames(path)
                if problem is None:
                    return store
                say(f"the cached synthetic dataset {path} is damaged: {problem}; generating it again")
        except DataError as exc:
            say(f"the cached synthetic dataset {path} is damaged: {exc}; generating it again")
    base.mkdir(parents=True, exist_ok=True)
    return generate(spec, path, workers=workers, progress=progress, cache=True)
