"""Single-view-gallery cross-view rank-1 protocol (CASIA-B, OU-MVLP, ...).

Semantics (those of the reference implementation, OpenGait
``opengait/evaluation/evaluator.py::single_view_gallery_evaluation`` at commit 0efafd4):

* For each probe set ``S`` (e.g. ``NM = [nm-05, nm-06]``), each probe view
  ``v1`` and each gallery view ``v2`` of ``view_list``: the probes are the
  sequences with ``type in S`` and ``view == v1``; the gallery is the
  sequences with ``type in gallery_types`` and ``view == v2``. Types are
  matched exactly (no substring matching).
* ``cell[v1, v2] = round(100 * hits / n_probes(v1), round_cells)`` where a
  hit is a probe whose nearest gallery item at ``v2`` has the probe's
  subject. Cells are rounded *before* any averaging, as the reference does
  (``np.round``, i.e. round-half-even on the scaled binary value).
* A probe whose subject has no gallery sequence at ``v2`` still counts in
  the denominator and is a miss (the reference never filters probes).
* Identical-view cells (``v1 == v2``) are computed and kept in the matrix;
  with ``exclude_identical_view`` they are left out of the averages:
  ``row[v1] = (sum_j cell[v1, j] - cell[v1, v1]) / (V - 1)`` and
  ``S/rank1 = mean over v1 of row[v1]`` ("de_diag"). Without it, plain means
  over all ``V`` gallery views.
* ``report_valid=True`` adds ``S/rank1_valid``: the same, but probes whose
  subject has no gallery at ``v2`` are removed from that cell's denominator
  (OU-MVLP's second convention, not implemented by the reference). A cell
  with no valid probe is ``None`` in the tables, skipped in the averages, and
  listed under ``tables[S]["valid"]["skipped_cells"]`` (a warning is issued):
  a row is the mean of its remaining (off-diagonal) cells, and the metric the
  mean of the rows that kept at least one cell (rows left empty are listed
  under ``skipped_probe_views``). No NaN is ever reported.
* Probe sets, the gallery and every view of ``view_list`` must be non-empty
  (``ValueError`` otherwise, naming what is missing); views found in the data
  but absent from ``view_list`` are ignored and listed in
  ``tables["ignored_views"]``.

Tie-breaking: the reference uses ``topk``, which breaks ties arbitrarily.
gaitbench breaks them stably: among gallery items at exactly the same
(float32) distance, the one that comes first in the input order wins.

Performance: one probe x gallery distance matrix per probe set (in row
chunks bounded to ~512 MB), then per gallery view one row-wise argmin over
that view's (contiguous, input-ordered) gallery columns for all probes at
once, giving a hit matrix ``[n_probe, V]`` that is aggregated per probe view
with ``bincount``. No Python loop over view pairs or probes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch

from gaitbench.evaluation.distance import METRICS
from gaitbench.evaluation.intervals import rank1_interval

__all__ = ["ViewMatrixResult", "evaluate_view_matrix", "de_diag", "RESERVED_TABLE_KEYS"]

RESERVED_TABLE_KEYS = ("ignored_views", "settings")

# Bound on one probe-chunk x gallery float32 distance matrix.
_DIST_CHUNK_BYTES = 512 * 1024 * 1024

TIE_BREAK = "stable: among equal distances the gallery item earliest in input order wins"


@dataclass
class ViewMatrixResult:
    """Result of :func:`evaluate_view_matrix`.

    ``metrics``: ``{"<set>/rank1": value, ...}`` in percent (plus
    ``"<set>/rank1_valid"`` with ``report_valid``).
    ``tables``: JSON-serialisable. ``tables[<set>]`` holds ``views``,
    ``matrix`` (probe-view rows x gallery-view columns, diagonal included),
    ``per_probe_view`` ({view: row value}), ``num_probes`` ({view: n}),
    ``num_gallery`` ({view: n}), ``probe_types`` and, with ``report_valid``,
    ``valid`` (``matrix``, ``per_probe_view``, ``num_valid_probes``,
    ``skipped_cells``, ``skipped_probe_views``). ``tables["ignored_views"]``
    lists views present in the data but not in ``view_list``;
    ``tables["settings"]`` records the options used.
    """

    metrics: dict[str, float]
    tables: dict = field(default_factory=dict)


def de_diag(acc, exclude_identical_view: bool = True) -> tuple[np.ndarray, float]:
    """Per-row averages of a square view matrix and their mean.

    With ``exclude_identical_view`` the diagonal is left out and each row is
    divided by ``V - 1``; otherwise plain row means. Returns ``(rows, mean)``.
    """
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"de_diag needs a square matrix; got shape {a.shape}")
    v = a.shape[0]
    if exclude_identical_view:
        if v < 2:
            raise ValueError("excluding identical views needs at least 2 views")
        off = a.copy()
        np.fill_diagonal(off, 0.0)
        rows = off.sum(axis=1) / (v - 1)
    else:
        rows = a.mean(axis=1)
    return rows, float(rows.mean())


def _nonfinite_rows(emb: np.ndarray) -> np.ndarray:
    """Indices of rows holding NaN/inf. A per-row sum screens cheaply (NaN/inf
    propagate); rows whose sum is not finite are then checked exactly, so a
    sum that merely overflows is not an error."""
    if not np.issubdtype(emb.dtype, np.floating) or emb.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    flat = emb.reshape(emb.shape[0], -1)
    sums = flat.sum(axis=1, dtype=np.float32 if emb.dtype == np.float16 else None)
    cand = np.flatnonzero(~np.isfinite(sums))
    if cand.size == 0:
        return cand
    return cand[~np.isfinite(flat[cand]).all(axis=1)]


def _labels(seq, name: str, n: int) -> np.ndarray:
    if isinstance(seq, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of strings, not a single string")
    arr = np.asarray([str(s) for s in seq], dtype=str)
    if arr.shape[0] != n:
        raise ValueError(f"length mismatch: embeddings has {n} rows but {name} has {arr.shape[0]} entries")
    return arr


def _round(x: np.ndarray, decimals: int | None) -> np.ndarray:
    return x if decimals is None else np.round(x, decimals)


def _check_options(metric: str, round_cells) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if round_cells is not None and (isinstance(round_cells, bool) or int(round_cells) != round_cells):
        raise ValueError(f"round_cells must be an int or None; got {round_cells!r}")


def _embedding_array(embeddings) -> np.ndarray:
    """``embeddings`` as a contiguous ``[N, C, P]`` array (``[N, D]`` is ``P = 1``)."""
    emb = np.asarray(embeddings)
    if emb.ndim == 2:
        emb = emb[:, :, None]
    if emb.ndim != 3:
        raise ValueError(f"embeddings must have shape [N, C, P] (or [N, D]); got {emb.shape}")
    return np.ascontiguousarray(emb)


def _check_values(emb: np.ndarray) -> None:
    if not np.issubdtype(emb.dtype, np.number) or np.issubdtype(emb.dtype, np.complexfloating):
        raise ValueError(f"embeddings must be a real numeric array; got dtype {emb.dtype}")
    bad = _nonfinite_rows(emb)
    if bad.size:
        raise ValueError(
            f"embeddings contain NaN/inf in {bad.size} sequence(s), first indices {bad[:10].tolist()}"
        )


def _checked_view_list(view_list: Sequence[str], exclude_identical_view: bool) -> list[str]:
    views_l = [str(v) for v in view_list]
    if not views_l:
        raise ValueError("view_list is empty")
    dup = sorted({v for v in views_l if views_l.count(v) > 1})
    if dup:
        raise ValueError(f"view_list has duplicated views: {dup}")
    if exclude_identical_view and len(views_l) < 2:
        raise ValueError("exclude_identical_view=True needs at least 2 views in view_list")
    return views_l


def _checked_types(probe_sets: Mapping[str, Sequence[str]],
                   gallery_types: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """``(probe types by probe set, gallery types)`` as lists of strings."""
    if not probe_sets:
        raise ValueError("probe_sets is empty")
    gallery_l = [str(t) for t in gallery_types]
    if not gallery_l:
        raise ValueError("gallery_types is empty")
    sets: dict[str, list[str]] = {}
    for name, tlist in probe_sets.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"probe set names must be non-empty strings; got {name!r}")
        if name in RESERVED_TABLE_KEYS:
            raise ValueError(f"probe set name {name!r} is reserved (tables keys {RESERVED_TABLE_KEYS})")
        if isinstance(tlist, str):
            raise ValueError(f"probe set {name!r}: types must be a list of strings, not a string")
        sets[name] = [str(t) for t in tlist]
    return sets, gallery_l


def _view_indices(vw: np.ndarray, views_l: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per row, the position of its view in ``views_l`` (-1: not evaluated), and the views of the
    data left out of ``views_l``."""
    data_views = set(vw.tolist())
    missing = [v for v in views_l if v not in data_views]
    if missing:
        raise ValueError(f"views in view_list absent from the data: {missing}")
    view_pos = {v: i for i, v in enumerate(views_l)}
    ignored = sorted(data_views - set(views_l))
    vidx = np.fromiter((view_pos.get(v, -1) for v in vw), dtype=np.int64, count=len(vw))
    return vidx, ignored


class _Gallery(NamedTuple):
    """The gallery rows grouped by view, input order kept within a view (the stable tie-break)."""

    rows: np.ndarray  # row indices, view after view
    bounds: np.ndarray  # [V + 1]: the rows at view j are rows[bounds[j]:bounds[j + 1]]
    counts: np.ndarray  # [V] gallery rows per view
    subjects: np.ndarray  # subject code of each of ``rows``
    has_subject: np.ndarray  # [n_subjects, V]: the subject has a gallery sequence at the view


def _gallery(typ: np.ndarray, vidx: np.ndarray, subj_code: np.ndarray, gallery_l: list[str],
             views_l: list[str]) -> _Gallery:
    V = len(views_l)
    gmask = np.isin(typ, gallery_l) & (vidx >= 0)
    g_count = np.bincount(vidx[gmask], minlength=V)
    no_gal = [views_l[i] for i in range(V) if g_count[i] == 0]
    if no_gal:
        raise ValueError(f"no gallery sequences (types {gallery_l}) at view(s) {no_gal}")
    g_idx = np.flatnonzero(gmask)
    g_idx = g_idx[np.argsort(vidx[g_idx], kind="stable")]
    g_subj = subj_code[g_idx]
    n_subj = int(subj_code.max()) + 1 if len(subj_code) else 0
    has_gallery = np.zeros((n_subj, V), dtype=bool)
    has_gallery[g_subj, vidx[g_idx]] = True
    return _Gallery(g_idx, np.concatenate([[0], np.cumsum(g_count)]), g_count, g_subj, has_gallery)


def _probe_rows(typ: np.ndarray, vidx: np.ndarray, name: str, tlist: list[str], views_l: list[str]) -> np.ndarray:
    """Row indices of probe set ``name``; every view of ``views_l`` must have probes."""
    pm = np.isin(typ, tlist) & (vidx >= 0)
    if not pm.any():
        raise ValueError(f"no probes for probe set {name!r} (types {tlist}) at views {views_l}")
    cnt = np.bincount(vidx[pm], minlength=len(views_l))
    empty = [views_l[i] for i in range(len(views_l)) if cnt[i] == 0]
    if empty:
        raise ValueError(f"probe set {name!r} (types {tlist}) has no probes at view(s) {empty}")
    return np.flatnonzero(pm)


def _nearest_gallery_hits(source, name: str, p_idx: np.ndarray, p_subj: np.ndarray, gallery: _Gallery) -> np.ndarray:
    """``[n_probe, V]`` bool: whether each probe's nearest gallery sequence at each view has the
    probe's subject. Distances come from ``source`` in row blocks; one argmin per gallery view."""
    dev = source.device
    V = len(gallery.counts)
    g_subj_t = torch.from_numpy(gallery.subjects).to(dev)
    hits = np.empty((len(p_idx), V), dtype=bool)
    for r0, r1, dist in source.blocks(p_idx, gallery.rows, name=name):  # dist: [b, n_gallery]
        ps = torch.from_numpy(p_subj[r0:r1]).to(dev)
        hb = torch.empty((r1 - r0, V), dtype=torch.bool, device=dev)
        for j in range(V):
            s, e = int(gallery.bounds[j]), int(gallery.bounds[j + 1])
            # torch.argmin returns the first minimal index -> stable tie-break.
            nn = torch.argmin(dist[:, s:e], dim=1)
            hb[:, j] = g_subj_t[s + nn] == ps
        hits[r0:r1] = hb.cpu().numpy()
        del dist
    return hits


def _valid_table(hit_counts: np.ndarray, n_valid: np.ndarray, views_l: list[str], offdiag: np.ndarray,
                 round_cells: int | None) -> tuple[float | None, dict]:
    """The ``rank1_valid`` convention: a cell's denominator counts only the probes whose subject
    has gallery at its view; cells without such a probe are skipped. Returns ``(metric or None,
    table)``."""
    V = len(views_l)
    ok = n_valid > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        vcells = _round(hit_counts * 100 / np.where(ok, n_valid, 1), round_cells)
    use = ok & offdiag
    skipped_cells = [[views_l[i], views_l[j]] for i, j in zip(*np.nonzero(offdiag & ~ok))]
    row_ok = use.any(axis=1)
    vrows = np.where(use, vcells, 0.0).sum(axis=1) / np.maximum(use.sum(axis=1), 1)
    skipped_rows = [views_l[i] for i in range(V) if not row_ok[i]]
    vtable = {
        "matrix": [[float(vcells[i, j]) if ok[i, j] else None for j in range(V)] for i in range(V)],
        "per_probe_view": {views_l[i]: (float(vrows[i]) if row_ok[i] else None) for i in range(V)},
        "num_valid_probes": n_valid.tolist(),
        "skipped_cells": skipped_cells,
        "skipped_probe_views": skipped_rows,
    }
    if not row_ok.any():
        vtable["note"] = "no cell has a valid probe; rank1_valid not reported"
        return None, vtable
    return float(vrows[row_ok].mean()), vtable


def _probe_set_result(probe_types: list[str], p_view: np.ndarray, p_subj: np.ndarray, hits: np.ndarray,
                      gallery: _Gallery, views_l: list[str], offdiag: np.ndarray, round_cells: int | None,
                      report_valid: bool) -> tuple[float, float | None, dict]:
    """``(rank1, rank1_valid or None, table)`` of one probe set from its hit matrix."""
    V = len(views_l)
    n_probes = np.bincount(p_view, minlength=V)  # [V]
    flat = (p_view[:, None] * V + np.arange(V)[None, :])  # cell index per (probe, gallery view)
    hit_counts = np.bincount(flat[hits], minlength=V * V).reshape(V, V)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = _round(hit_counts * 100 / n_probes[:, None], round_cells)
    rows = np.where(offdiag, cells, 0.0).sum(axis=1) / offdiag.sum(axis=1)
    table = {
        "views": list(views_l),
        "probe_types": probe_types,
        "matrix": cells.tolist(),
        "per_probe_view": {views_l[i]: float(rows[i]) for i in range(V)},
        "num_probes": {views_l[i]: int(n_probes[i]) for i in range(V)},
        "num_gallery": {views_l[i]: int(gallery.counts[i]) for i in range(V)},
    }
    table["rank1_interval"] = rank1_interval(hits, None, p_view, offdiag).as_dict()
    valid = None
    if report_valid:
        has = gallery.has_subject[p_subj]
        n_valid = np.bincount(flat[has], minlength=V * V).reshape(V, V)
        valid, table["valid"] = _valid_table(hit_counts, n_valid, views_l, offdiag, round_cells)
        if valid is not None:
            table["valid"]["rank1_interval"] = rank1_interval(hits, has, p_view, offdiag).as_dict()
    return float(rows.mean()), valid, table


def _settings(metric: str, gallery_l: list[str], views_l: list[str], exclude_identical_view: bool,
              round_cells: int | None) -> dict:
    """The options a result was computed with (``tables["settings"]``)."""
    return {
        "metric": metric,
        "gallery_types": gallery_l,
        "view_list": views_l,
        "exclude_identical_view": bool(exclude_identical_view),
        "round_cells": None if round_cells is None else int(round_cells),
        "tie_break": TIE_BREAK,
    }


def evaluate_view_matrix(
    embeddings,
    subjects: Sequence[str],
    types: Sequence[str],
    views: Sequence[str],
    *,
    probe_sets: Mapping[str, Sequence[str]],
    gallery_types: Sequence[str],
    view_list: Sequence[str],
    metric: str = "euc",
    exclude_identical_view: bool = True,
    round_cells: int | None = 2,
    device: str = "cpu",
    report_valid: bool = False,
    source=None,
) -> ViewMatrixResult:
    """Cross-view rank-1 accuracy with a single-view gallery.

    ``embeddings``: ``[N, C, P]`` (or ``[N, D]``) array, float16 or float32;
    ``subjects``/``types``/``views``: ``N`` strings each. See the module
    docstring for the semantics. Raises ``ValueError`` on inconsistent input
    (length mismatch, non-finite embeddings, empty probe sets or probe views,
    views of ``view_list`` absent from the data or without gallery).

    ``source``: a :class:`gaitbench.evaluation.source.DistanceSource` over the same rows (fused
    embeddings, post-processing stages, a memory budget); default: plain distances of ``embeddings``.
    """
    # ---- validation, in the order the errors are reported -----------------
    _check_options(metric, round_cells)
    emb = _embedding_array(embeddings)
    n = emb.shape[0]
    subj = _labels(subjects, "subjects", n)
    typ = _labels(types, "types", n)
    vw = _labels(views, "views", n)
    _check_values(emb)
    views_l = _checked_view_list(view_list, exclude_identical_view)
    sets, gallery_l = _checked_types(probe_sets, gallery_types)
    vidx, ignored = _view_indices(vw, views_l)
    subj_code = np.unique(subj, return_inverse=True)[1].astype(np.int64)
    gallery = _gallery(typ, vidx, subj_code, gallery_l, views_l)
    probes = {name: _probe_rows(typ, vidx, name, tlist, views_l) for name, tlist in sets.items()}

    # ---- one distance pass per probe set, then counts per view cell --------
    if source is None:
        from .source import DistanceSource

        source = DistanceSource(emb, metric, device=device, max_bytes=_DIST_CHUNK_BYTES)
    V = len(views_l)
    # the cells a probe view's row averages over
    offdiag = ~np.eye(V, dtype=bool) if exclude_identical_view else np.ones((V, V), dtype=bool)
    metrics: dict[str, float] = {}
    tables: dict = {"ignored_views": ignored,
                    "settings": _settings(metric, gallery_l, views_l, exclude_identical_view, round_cells)}
    for name, p_idx in probes.items():
        hits = _nearest_gallery_hits(source, name, p_idx, subj_code[p_idx], gallery)
        rank1, rank1_valid, tables[name] = _probe_set_result(
            sets[name], vidx[p_idx], subj_code[p_idx], hits, gallery, views_l, offdiag, round_cells, report_valid)
        metrics[f"{name}/rank1"] = rank1
        if rank1_valid is not None:
            metrics[f"{name}/rank1_valid"] = rank1_valid
        skipped_cells = tables[name]["valid"]["skipped_cells"] if report_valid else []
        if skipped_cells:  # warned here, so that stacklevel=2 names the caller
            warnings.warn(
                f"probe set {name!r}: {len(skipped_cells)} view cell(s) have no probe with a gallery "
                f"of its subject and are skipped in {name}/rank1_valid: {skipped_cells[:5]}",
                stacklevel=2,
            )

    return ViewMatrixResult(metrics=metrics, tables=tables)
