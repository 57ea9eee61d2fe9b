"""Identification of unlabelled probes against a labelled gallery (the HID competitions).

Every probe is assigned the subject of its nearest gallery sequence, as OpenGait's
``HID_submission`` does (``opengait/evaluation/evaluator.py`` at commit 0efafd4: an ascending sort
of the probe's distances, the label of the first gallery sequence). Ties go to the gallery sequence
earliest in input order. The predictions are what the competition file holds (``videoID,label``).

The data carry no identities for the probes. A *truth file* with the same two columns (the
competition's answer key, or the one the synthetic HID set ships) scores the predictions:
``rank1`` is the share of probes assigned their true subject. A truth file that names probes the
embeddings lack, or lacks some of them, is an error naming them: a silently partial score would not
be the competition's.

One difference from OpenGait, deliberately: ``HID_submission`` writes each probe's *view* label as
its video id, but OpenGait's own HID pretreatment stores probes as ``probe/<videoID>/default``, so
the view is ``default`` for every probe. gaitbench takes the video id from the label the protocol
names (``video_label = "type"``), which is the video id in that tree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import write_text_atomic

_SHOW = 5


@dataclass
class Identification:
    """What :func:`identify` found: the probes' video ids (in input order), the predicted subject of
    each, and the sizes of the problem."""

    videos: np.ndarray
    predicted: np.ndarray
    num_gallery: int
    num_gallery_subjects: int


def split_rows(ev, subj: np.ndarray, typ: np.ndarray, vw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probe rows, gallery rows, probe video ids)`` of an identification protocol; DataError when
    either side is empty or two probes share a video id."""
    pm = subj == ev.probe_subject
    gm = ~pm
    if ev.gallery_types:
        gm &= np.isin(typ, ev.gallery_types)
    if not pm.any():
        raise DataError(f"no unlabelled probes (subject {ev.probe_subject!r}) among the embeddings: embed the "
                        "test set including the probe set")
    if not gm.any():
        raise DataError(f"the gallery is empty (types {ev.gallery_types or 'every labelled test sequence'})")
    p_idx, g_idx = np.flatnonzero(pm), np.flatnonzero(gm)
    videos = (typ if ev.video_label == "type" else vw)[p_idx]
    values, counts = np.unique(videos, return_counts=True)
    if (counts > 1).any():
        dup = values[counts > 1]
        raise DataError(f"{len(dup)} probe video ids occur more than once ({', '.join(dup[:_SHOW])}): the "
                        "submission needs one row per video")
    return p_idx, g_idx, videos


def identify(ev, source, subj: np.ndarray, typ: np.ndarray, vw: np.ndarray) -> Identification:
    """Each probe's nearest gallery subject, from the (possibly post-processed) distances of
    ``source`` (a :class:`~gaitbench.evaluation.source.DistanceSource`)."""
    from .retrieval import top_identities

    p_idx, g_idx, videos = split_rows(ev, subj, typ, vw)
    top = top_identities(source, p_idx, g_idx, subj[g_idx], 1, unique=False)
    return Identification(videos, top[:, 0].astype(str), int(len(g_idx)), int(len(set(subj[g_idx].tolist()))))


def read_truth(path: str | Path) -> dict[str, str]:
    """A truth file: a CSV with a header and two columns, a probe's video id and its subject
    (``videoID,label`` as the HID submission, or ``videoId,subject`` as the synthetic GREW's). Values
    are kept as strings (leading zeros matter)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"truth file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"truth file {path} is not a readable CSV: {exc}") from None
    if not rows or len(rows[0]) != 2:
        raise DataError(f"truth file {path}: expected a header and two columns (videoID,label)")
    truth: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"truth file {path}, line {number}: expected 'videoID,label', got {','.join(row)!r}")
        video, label = row[0].strip(), row[1].strip()
        if video in truth and truth[video] != label:
            raise DataError(f"truth file {path}, line {number}: video {video!r} is listed twice with different labels")
        truth[video] = label
    if not truth:
        raise DataError(f"truth file {path} lists no probes")
    return truth


def score(found: Identification, truth: dict[str, str], source: str = "the truth file") -> dict[str, float]:
    """``{"rank1": percent}`` of the predictions against ``truth`` (video id -> subject); DataError
    when the two do not cover the same probes, naming the first differences."""
    videos = found.videos.tolist()
    have = set(videos)
    missing = [v for v in videos if v not in truth]
    extra = sorted(set(truth) - have)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} probes of the embeddings are not in {source}: "
                         + ", ".join(missing[:_SHOW]) + (", ..." if len(missing) > _SHOW else ""))
        if extra:
            parts.append(f"{len(extra)} probes of {source} are not among the embeddings: "
                         + ", ".join(extra[:_SHOW]) + (", ..." if len(extra) > _SHOW else ""))
        raise DataError("; ".join(parts))
    return {"rank1": 100.0 * float(correct(found, truth).mean())}


def correct(found: Identification, truth: dict[str, str]) -> np.ndarray:
    """``[n_probe]`` bool: whether each prediction names the probe's subject in ``truth`` (which
    :func:`score` has checked covers every probe)."""
    videos = found.videos.tolist()
    return np.fromiter((truth[v] == p for v, p in zip(videos, found.predicted.tolist())), bool, len(videos))


def write_predictions(path: str | Path, ev, found: Identification) -> Path:
    """The submission file ``<id_column>,<label_column>``, one row per probe, written to a temporary
    beside ``path`` and renamed when complete."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([ev.id_column, ev.label_column])
    writer.writerows(zip(found.videos.tolist(), found.predicted.tolist()))
    return write_text_atomic(path, out.getvalue())
