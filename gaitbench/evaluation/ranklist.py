"""Ranklists: the top-K gallery of a few probes, as the protocol ranks them, hits marked.

For each chosen probe the gallery is the protocol's (the single-view-gallery protocols: every
gallery sequence except those at the probe's own view when the protocol excludes the identical
view; the cross-view gallery: without the probe's subject at its view), ranked by ascending
distance with stable ties, as the metrics rank it. A *hit* is a gallery sequence of the probe's
subject. Identification probes (HID) are unlabelled: their lists have no hits to mark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError


@dataclass
class RankEntry:
    index: int  # row in the embeddings
    subject: str
    type: str
    view: str
    distance: float
    hit: bool | None  # None: the probe's subject is unknown


@dataclass
class Ranklist:
    probe_set: str
    index: int
    subject: str
    type: str
    view: str
    entries: list[RankEntry] = field(default_factory=list)
    first_hit: int | None = None  # 1-based rank of the first hit in the whole ranking (None: no hit)

    def to_json(self) -> dict[str, Any]:
        return {"probe_set": self.probe_set, "subject": self.subject, "type": self.type, "view": self.view,
                "first_hit": self.first_hit,
                "top": [{"subject": e.subject, "type": e.type, "view": e.view, "distance": round(e.distance, 6),
                         "hit": e.hit} for e in self.entries]}


def _problems(protocol, subj, typ, vw):
    """``({probe set: probe mask}, gallery mask, exclude(q) -> gallery mask to drop, labelled)``."""
    from .engine import _retrieval_sets

    ev = protocol.evaluation
    if ev.kind == "view_matrix":
        views_ok = np.isin(vw, ev.views)
        gm = np.isin(typ, ev.gallery_types) & views_ok
        sets = {name: np.isin(typ, types) & views_ok for name, types in ev.probe_sets.items()}
        same_view = ev.exclude_identical_view
        return sets, gm, (lambda q, g: (vw[g] == vw[q]) if same_view else np.zeros(len(g), bool)), True
    if ev.kind == "retrieval":
        sets, gm = _retrieval_sets(protocol, subj, typ, vw)
        cross = ev.exclude == "same_subject_same_view"
        return sets, gm, (lambda q, g: ((subj[g] == subj[q]) & (vw[g] == vw[q])) if cross
                          else np.zeros(len(g), bool)), True
    probes = subj == ev.probe_subject
    gm = ~probes & (np.isin(typ, ev.gallery_types) if ev.gallery_types else True)
    return {"probe": probes}, gm, (lambda q, g: np.zeros(len(g), bool)), False


def choose_probes(mask: np.ndarray, count: int) -> np.ndarray:
    """``count`` probes spread evenly over the set (its first and last included), in input order."""
    rows = np.flatnonzero(mask)
    if len(rows) <= count:
        return rows
    return rows[np.unique(np.linspace(0, len(rows) - 1, count).round().astype(int))]


def ranklists(protocol, embeddings, subjects, types, views, *, top: int = 10, probes: int = 6,
              metric: str | None = None, device: str = "cpu") -> list[Ranklist]:
    """The top-``top`` gallery of ``probes`` probes in all (spread over the probe sets), under
    ``protocol`` with ``metric`` (default the protocol's) on plain distances."""
    from .distance import part_distance
    from .engine import _check_inputs

    if top < 1 or probes < 1:
        raise DataError(f"ranklists need top >= 1 and probes >= 1 (got top {top}, probes {probes})")
    (emb,), (subj, typ, vw) = _check_inputs(embeddings, subjects, types, views)
    try:
        sets, gm, excluded, labelled = _problems(protocol, subj, typ, vw)
    except ValueError as exc:
        raise DataError(f"cannot list rankings under protocol {protocol.describe()}: {exc}") from None
    g_all = np.flatnonzero(gm)
    if not len(g_all):
        raise DataError(f"protocol {protocol.describe()}: the gallery is empty in these embeddings")
    per_set = max(1, probes // max(1, len(sets)))
    out = []
    for name, pm in sets.items():
        chosen = choose_probes(pm, per_set)
        if not len(chosen):
            continue
        dist = part_distance(emb[chosen], emb[g_all], metric or protocol.evaluation.metric, device=device)
        for row, q in enumerate(chosen):
            keep = ~excluded(q, g_all)
            g = g_all[keep]
            order = np.argsort(dist[row][keep], kind="stable")
            hits = (subj[g[order]] == subj[q]) if labelled else None
            first = int(np.argmax(hits)) + 1 if hits is not None and hits.any() else None
            entries = [RankEntry(int(g[j]), str(subj[g[j]]), str(typ[g[j]]), str(vw[g[j]]),
                                 float(dist[row][keep][j]), None if hits is None else bool(hits[k]))
                       for k, j in enumerate(order[:top])]
            out.append(Ranklist(name, int(q), str(subj[q]), str(typ[q]), str(vw[q]), entries, first))
    return out
