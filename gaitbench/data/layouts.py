"""Raw silhouette trees as the benchmarks distribute them (and as OpenGait's rearrange scripts
leave them): which folders hold which sequence, with its labels and PNG frames. Used by the
pretreatment and by the store over already pretreated PNG trees; reads directory entries only."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError, did_you_mean

DATASETS = ("casiab", "oumvlp", "gait3d", "grew", "hid")
_OUMVLP_FOLDER = re.compile(r"^Silhouette_(\d+)-(\d+)$")


class RawSequence(NamedTuple):
    """One sequence of a raw tree: its labels and its PNG frames sorted by file name."""

    subject: str
    type: str
    view: str
    frames: list[Path]


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise DataError(did_you_mean(str(dataset), DATASETS, "dataset"))
    return dataset


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
