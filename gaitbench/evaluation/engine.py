"""Evaluate embeddings under a protocol: the one path used by ``run`` and ``evaluate``."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from ..io import write_text_atomic


@dataclass
class Report:
    """What an evaluation produced: metrics in percent, tables, and seconds per stage."""

    protocol: str
    protocol_version: str
    metrics: dict[str, float]
    tables: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    num_sequences: int = 0
    # identification protocols (HID): each probe's video id and predicted subject, for the
    # submission file (not part of the run record: one row per probe)
    predictions: Any = None


def _check_inputs(embeddings, subjects, types, views):
    sources = list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]
    out = []
    for k, emb in enumerate(sources):
        emb = np.asarray(emb)
        if emb.ndim == 2:
            emb = emb[:, :, None]
        if emb.ndim != 3 or emb.dtype.kind != "f":
            raise DataError(f"embeddings must be float [N, C, P] (or [N, D]); found {emb.dtype} {emb.shape}")
        out.append(np.ascontiguousarray(emb))
    n = len(out[0])
    if any(len(e) != n for e in out):
        raise DataError(f"fused embeddings differ in length: {[len(e) for e in out]}")
    labels = []
    for name, arr in (("subjects", subjects), ("types", types), ("views", views)):
        arr = np.asarray(arr).astype(str)
        if len(arr) != n:
            raise DataError(f"embeddings ({n}) and {name} ({len(arr)}) differ in length")
        labels.append(arr)
    if n == 0:
        raise DataError("there are no embeddings to evaluate")
    from .view_matrix import _nonfinite_rows

    for emb in out:
        bad = _nonfinite_rows(emb)
        if bad.size:
            first = ", ".join(f"{labels[0][i]}/{labels[1][i]}/{labels[2][i]}" for i in bad[:5])
            raise DataError(f"embeddings contain NaN/inf in {bad.size} sequence(s), first: {first}")
    return out, labels


def evaluate(protocol, embeddings, subjects, types, views, *, device: str = "cpu", metric: str | None = None,
             stages: Sequence = (), max_bytes: int | None = None, truth: dict[str, str] | None = None,
             truth_source: str = "the truth file", verification: bool = False) -> Report:
    """Evaluate test-set ``embeddings`` ``[N, C, P]`` (or ``[N, D]``; or a list of such arrays of the
    same sequences, whose distances are averaged) with their labels.

    ``stages``: ``[(Stage, params)]`` post-processing applied to each probe-set x gallery problem.
    ``max_bytes``: memory budget of the distance blocks (default 512 MB).
    ``truth``: for identification protocols (HID), the probes' subjects by video id (from a truth
    file, ``truth_source`` in messages); without it such a protocol predicts but has no metrics.
    ``verification``: also the open-set figures of every probe set (TAR at FAR 1e-2/1e-3/1e-4,
    EER, ROC; :mod:`gaitbench.evaluation.verification`) over its genuine and impostor pairs."""
    from .source import DistanceSource

    sources, (subj, typ, vw) = _check_inputs(embeddings, subjects, types, views)
    ev = protocol.evaluation
    if verification and ev.kind == "identification":  # refused before any work is done
        raise DataError(f"verification needs probes with known subjects; the probes of {protocol.describe()} are "
                        "unlabelled (drop verification=true)")
    metric = metric or ev.metric
    source = DistanceSource(sources, metric, device=device, stages=stages, max_bytes=max_bytes)
    started = time.perf_counter()
    predictions = None
    try:
        if ev.kind == "view_matrix":
            metrics, tables = _view_matrix(ev, sources[0], subj, typ, vw, metric, device, source)
        elif ev.kind == "retrieval":
            metrics, tables = _retrieval(protocol, subj, typ, vw, source)
        elif ev.kind == "identification":
            metrics, tables, predictions = _identification(ev, subj, typ, vw, source, truth, truth_source)
        else:  # pragma: no cover - protocols are validated on load
            raise DataError(f"protocol {protocol.describe()}: unsupported evaluation kind {ev.kind!r}")
        if verification:
            _verification(protocol, subj, typ, vw, source, metrics, tables)
    except ValueError as exc:
        raise DataError(f"cannot evaluate under protocol {protocol.describe()}: {exc}") from None
    total = time.perf_counter() - started
    timings = source.timings()
    timings["metrics_s"] = round(max(0.0, total - source.seconds - source.stage_seconds), 4)
    timings["evaluate_s"] = round(total, 4)
    if metric != ev.metric:
        tables.setdefault("settings", {})["metric"] = metric
    return Report(protocol.name, protocol.version, metrics, tables, timings, stages=source.records,
                  num_sequences=len(subj), predictions=predictions)


def _verification(protocol, subj, typ, vw, source, metrics: dict, tables: dict) -> None:
    """Add each probe set's verification figures to ``metrics`` (``<set>/TAR@FAR=1e-2``, ``<set>/EER``)
    and ``tables[<set>]["verification"]``. The pairs are the protocol's probe x gallery pairs: the
    single-view-gallery protocols pair each probe with the gallery at every view (the identical view
    left out when the protocol leaves it out), the cross-view gallery leaves out the probe's own
    subject at its own view."""
    import torch

    from .verification import verify

    ev = protocol.evaluation
    subj_code, view_code = _codes(subj), _codes(vw)
    if ev.kind == "view_matrix":
        views_ok = np.isin(vw, ev.views)
        gm = np.isin(typ, ev.gallery_types) & views_ok
        sets = {name: np.isin(typ, types) & views_ok for name, types in ev.probe_sets.items()}
        same_view = ev.exclude_identical_view
        same_subject_only = False
    else:
        sets, gm = _retrieval_sets(protocol, subj, typ, vw)
        same_view = ev.exclude == "same_subject_same_view"
        same_subject_only = True
    g_idx = np.flatnonzero(gm)
    dev = source.device
    g_view = torch.from_numpy(view_code[g_idx]).to(dev)
    g_subj = torch.from_numpy(subj_code[g_idx]).to(dev)

    def excluded(p_rows, g_rows):
        if not same_view:
            return None
        pv = torch.from_numpy(view_code[p_rows]).to(dev)
        out = g_view[None, :] == pv[:, None]
        if same_subject_only:
            out &= g_subj[None, :] == torch.from_numpy(subj_code[p_rows]).to(dev)[:, None]
        return out

    tables.setdefault("settings", {})["verification"] = {
        "pairs": "probe x gallery" + (" (same subject at the same view excluded)" if same_view and same_subject_only
                                      else " (identical view excluded)" if same_view else ""),
        "accept": "distance <= threshold", "distance": source.metric}
    for name, pm in sets.items():
        result = verify(source, np.flatnonzero(pm), g_idx, subj_code, excluded=excluded, name=name)
        values = result.metrics()
        table = tables.setdefault(name, {"num_probes": int(pm.sum())})
        table["verification"] = result.table()
        for k, x in values.items():
            metrics[f"{name}/{k}" if ev.prefix_metrics else k] = x


def _identification(ev, subj, typ, vw, source, truth, truth_source):
    from .identification import identify, score

    found = identify(ev, source, subj, typ, vw)
    table: dict[str, Any] = {"num_probes": int(len(found.videos)), "num_gallery": found.num_gallery,
                             "num_gallery_subjects": found.num_gallery_subjects,
                             "truth": truth_source if truth is not None else None}
    tables: dict[str, Any] = {"settings": {"metric": source.metric, "prediction": "subject of the nearest gallery "
                                           "sequence; ties: the gallery sequence earliest in input order"},
                              "probe": table}
    metrics = score(found, truth, truth_source) if truth is not None else {}
    table["values"] = dict(metrics)
    if truth is not None:
        from .identification import correct
        from .intervals import rank1_interval

        table["rank1_interval"] = rank1_interval(correct(found, truth)).as_dict()
        table["cmc"] = _identification_cmc(ev, subj, typ, vw, source, truth)
    return metrics, tables, found


def _identification_cmc(ev, subj, typ, vw, source, truth) -> list[float]:
    """The CMC of scored identification probes over the gallery sequences (rank-1 is the
    predictions' score: the nearest sequence decides, ties to the earliest); a probe whose subject
    has no gallery sequence is a miss at every rank."""
    from .identification import split_rows
    from .retrieval import cmc_curve, score_probes

    p_idx, g_idx, videos = split_rows(ev, subj, typ, vw)
    labels = subj.astype(object)
    labels[p_idx] = [truth[v] for v in videos.tolist()]  # score() checked that the truth covers them
    scores = score_probes(source, p_idx, g_idx, _codes(labels.astype(str)), ranking=False, name="probe")
    return cmc_curve(scores, 50, "miss", len(g_idx))


def _view_matrix(ev, emb, subj, typ, vw, metric, device, source):
    from .view_matrix import evaluate_view_matrix

    result = evaluate_view_matrix(
        emb, subj, typ, vw, probe_sets=ev.probe_sets, gallery_types=ev.gallery_types, view_list=ev.views,
        metric=metric, exclude_identical_view=ev.exclude_identical_view, round_cells=ev.round_cells,
        device=device, report_valid=ev.missing_gallery in {"exclude", "both"}, source=source,
    )
    metrics = dict(result.metrics)
    if ev.missing_gallery == "exclude":  # the "valid" convention becomes the headline number
        metrics = {k.replace("/rank1_valid", "/rank1"): v for k, v in metrics.items() if k.endswith("_valid")}
    if not ev.prefix_metrics:
        metrics = {k.split("/", 1)[1]: v for k, v in metrics.items()}
    return metrics, result.tables


def _codes(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def probe_keys(subj, typ, vw) -> np.ndarray:
    """``"<subject>-<type>-<view>"``: how a partition's PROBE_SET names sequences."""
    return np.char.add(np.char.add(np.char.add(np.char.add(subj, "-"), typ), "-"), vw)


def _retrieval_sets(protocol, subj, typ, vw) -> tuple[dict[str, np.ndarray], np.ndarray]:
    ev = protocol.evaluation
    sub = ev.submission
    labelled = subj != sub.probe_subject if sub is not None else np.ones(len(subj), bool)
    if ev.probe_from_partition:
        wanted = set(protocol.split.probe_set)
        if not wanted:
            raise ValueError(f"the partition ({protocol.split.source or 'none given'}) has no PROBE_SET; "
                             "pass --partition with the dataset's partition JSON")
        pm = np.isin(probe_keys(subj, typ, vw), sorted(wanted))
        if not pm.any():
            example = next(iter(sorted(wanted)))
            raise ValueError(f"none of the {len(wanted)} PROBE_SET sequences of {protocol.split.source} is among "
                             f"the embeddings (e.g. {example!r}; keys are '<subject>-<type>-<view>')")
        sets = {"probe": pm}
    else:
        sets = {}
        for name, ptypes in ev.probe_sets.items():
            pm = np.isin(typ, ptypes) & labelled
            if not pm.any():
                raise ValueError(f"no probes for probe set {name!r} (types {ptypes}); the embeddings have types "
                                 f"{sorted(set(typ.tolist()))[:12]}")
            sets[name] = pm
    if ev.gallery_types:
        gm = np.isin(typ, ev.gallery_types) & labelled
    else:
        gm = labelled & ~np.logical_or.reduce(list(sets.values()))
    if not gm.any():
        raise ValueError(f"the gallery is empty (types {ev.gallery_types or 'all non-probe test sequences'})")
    return sets, gm


def _retrieval(protocol, subj, typ, vw, source):
    from .retrieval import ProbeScores, cmc_curve, score_probes, summarise

    ev = protocol.evaluation
    sets, gm = _retrieval_sets(protocol, subj, typ, vw)
    g_idx = np.flatnonzero(gm)
    subj_code = _codes(subj)
    view_code = _codes(vw) if ev.exclude == "same_subject_same_view" else None
    ranking = ev.map or ev.minp
    metrics: dict[str, float] = {}
    tables: dict[str, Any] = {"settings": {
        "metric": source.metric, "exclude": ev.exclude, "missing_gallery": ev.missing_gallery,
        "average": ev.average, "tie_break": "stable: the gallery item earliest in input order ranks first",
        "num_gallery": int(len(g_idx))}}
    for name, pm in sets.items():
        p_idx = np.flatnonzero(pm)
        if ev.average == "probe_views":
            absent = [v for v in ev.views if not (vw[p_idx] == v).any()]
            if absent:
                raise ValueError(f"probe set {name!r} has no probes at view(s) {absent} of the protocol's views")
        scores = score_probes(source, p_idx, g_idx, subj_code, ranking=ranking, views_code=view_code, name=name)
        kw = dict(want_map=ev.map, want_minp=ev.minp, missing_gallery=ev.missing_gallery)
        table: dict[str, Any] = {"num_probes": int(len(p_idx)), "num_valid": int((scores.positives > 0).sum()),
                                 "num_gallery": int(len(g_idx))}
        if ev.average == "probes":
            values = summarise(scores, ev.ranks, where=f"probe set {name!r}", **kw)
            table["cmc"] = cmc_curve(scores, ev.cmc_max_rank, ev.missing_gallery, len(g_idx))
        else:
            p_views = vw[p_idx]
            extra = sorted(set(p_views.tolist()) - set(ev.views))
            if extra:
                tables.setdefault("ignored_views", sorted(set(tables.get("ignored_views", [])) | set(extra)))
            per_view: dict[str, dict[str, float]] = {}
            cmcs = []
            for v in ev.views:
                sel = p_views == v
                sub = ProbeScores(scores.first[sel], scores.ap[sel], scores.inp[sel], scores.positives[sel])
                vals = summarise(sub, ev.ranks, where=f"probe set {name!r} view {v}", **kw)
                cmcs.append(cmc_curve(sub, ev.cmc_max_rank, ev.missing_gallery, len(g_idx)))
                if ev.round_values is not None:
                    vals = {k: round(x, ev.round_values) for k, x in vals.items()}
                per_view[v] = vals
            values = {k: float(np.mean([per_view[v][k] for v in ev.views])) for k in per_view[ev.views[0]]}
            table["per_probe_view"] = per_view
            # averaged like the metrics: each view's curve, then the unweighted mean over the views
            table["cmc"] = [round(float(x), 4) for x in np.mean(np.asarray(cmcs, dtype=float), axis=0)]
        table["values"] = values
        if any(k == 1 for k in ev.ranks):
            table["rank1_interval"] = _retrieval_interval(scores, ev, vw[p_idx])
        tables[name] = table
        for k, x in values.items():
            metrics[f"{name}/{k}" if ev.prefix_metrics else k] = x
    return metrics, tables


def _retrieval_interval(scores, ev, p_views: np.ndarray) -> dict[str, Any]:
    """The rank-1 bootstrap interval of one probe set (see :mod:`.intervals`): strata are the
    protocol's probe views when it averages over them, else the whole set."""
    from .intervals import rank1_interval

    hits = scores.first < 1
    counted = np.ones_like(hits) if ev.missing_gallery == "miss" else scores.positives > 0
    strata = None
    if ev.average == "probe_views":
        keep = np.isin(p_views, ev.views)  # probes at views outside the protocol's are not in the metric
        hits, counted = hits[keep], counted[keep]
        position = {v: i for i, v in enumerate(ev.views)}
        strata = np.fromiter((position[v] for v in p_views[keep].tolist()), np.int64, int(keep.sum()))
    return rank1_interval(hits, counted, strata).as_dict()


def write_submission(protocol, embeddings, subjects, types, views, path: str | Path, *, device: str = "cpu",
                     metric: str | None = None, stages: Sequence = ()) -> dict[str, Any]:
    """The official-style submission CSV of a protocol with a ``[evaluation.submission]`` section
    (GREW): header ``<id_column>,rank1..rank<top>``, one row per unlabelled probe (its ``view`` label
    is the video id), identities written as the strings they are (leading zeros kept)."""
    from .retrieval import top_identities
    from .source import DistanceSource

    ev = protocol.evaluation
    sub = getattr(ev, "submission", None)
    if sub is None:
        raise DataError(f"protocol {protocol.describe()} defines no submission file")
    sources, (subj, typ, vw) = _check_inputs(embeddings, subjects, types, views)
    pm = subj == sub.probe_subject
    if sub.probe_types:
        pm &= np.isin(typ, sub.probe_types)
    if not pm.any():
        raise DataError(f"no unlabelled probes (subject {sub.probe_subject!r}, types {sub.probe_types or 'any'}) "
                        "among the embeddings: embed the test set including the probe set")
    gm = np.isin(typ, sub.gallery_types) & (subj != sub.probe_subject)
    if not gm.any():
        raise DataError(f"the submission gallery (types {sub.gallery_types}) is empty")
    source = DistanceSource(sources, metric or ev.metric, device=device, stages=stages)
    p_idx, g_idx = np.flatnonzero(pm), np.flatnonzero(gm)
    top = top_identities(source, p_idx, g_idx, subj[g_idx], sub.top, unique=sub.unique_ids)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([sub.id_column] + [f"rank{i}" for i in range(1, sub.top + 1)])
    for video, row in zip(vw[p_idx], top):
        writer.writerow([video, *row])
    write_text_atomic(path, text.getvalue())
    return {"path": str(path), "probes": int(len(p_idx)), "gallery": int(len(g_idx)), "top": sub.top,
            "unique_ids": sub.unique_ids, "stages": source.records}
