"""Readable, slow reference implementations of the evaluation core.

These follow the written definitions line by line (plain numpy, explicit
loops) and exist so tests can cross-check the fast implementations in
:mod:`gaitbench.evaluation.distance` and :mod:`gaitbench.evaluation.view_matrix`.
Do not use them on real-size data.
"""

from __future__ import annotations

import numpy as np

from gaitbench.evaluation.view_matrix import ViewMatrixResult

__all__ = ["reference_part_distance", "reference_view_matrix", "de_diag"]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` as explicit products summed over channels, one output at a time.

    Not a BLAS GEMM: a GEMM kernel may round a column differently depending on where it falls in
    its tiles (it does with OpenBLAS on AMD EPYC), so exactly duplicated gallery items would get
    different distances and the reference would break ties by rounding noise. Here every pair goes
    through the same arithmetic, as the fast path guarantees too.
    """
    return (a[:, None, :] * b[None, :, :]).sum(axis=2, dtype=np.float32)


def reference_part_distance(x, y, metric: str = "euc") -> np.ndarray:
    """Distance matrix [n_x, n_y] (float32) with a Python loop over parts.

    euc:      d = (1/P) * sum_p sqrt(relu(|x_p|^2 + |y_p|^2 - 2 x_p . y_p))
    cos:      d = 1 - (1/P) * sum_p (x_p/|x_p|) . (y_p/|y_p|)   (eps 1e-12)
    flat_euc: d = sqrt(relu(|x|^2 + |y|^2 - 2 x . y)) on flattened vectors
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    if y.ndim == 2:
        y = y[:, :, None]
    if metric == "flat_euc":
        x = x.reshape(x.shape[0], -1, 1)
        y = y.reshape(y.shape[0], -1, 1)
    elif metric not in ("euc", "cos"):
        raise ValueError(f"unknown metric {metric!r}")
    num_parts = x.shape[2]
    total = np.zeros((x.shape[0], y.shape[0]), dtype=np.float32)
    for p in range(num_parts):
        xp = x[:, :, p]  # [n_x, c]
        yp = y[:, :, p]  # [n_y, c]
        if metric == "cos":
            xn = xp / np.maximum(np.linalg.norm(xp, axis=1, keepdims=True), np.float32(1e-12))
            yn = yp / np.maximum(np.linalg.norm(yp, axis=1, keepdims=True), np.float32(1e-12))
            total += _dot(xn, yn)
        else:
            x2 = np.sum(xp * xp, axis=1)[:, None]
            y2 = np.sum(yp * yp, axis=1)[None, :]
            sq = x2 + y2 - 2 * _dot(xp, yp)
            total += np.sqrt(np.maximum(sq, 0))
    if metric == "cos":
        return (1 - total / num_parts).astype(np.float32)
    return (total / num_parts).astype(np.float32)


def de_diag(acc, exclude_identical_view: bool = True) -> tuple[list[float], float]:
    """Rows ``(sum_j acc[i][j] - acc[i][i]) / (V - 1)`` and their mean (explicit loops).

    Without ``exclude_identical_view``: plain row means.
    """
    v = len(acc)
    rows = []
    for i in range(v):
        s = 0.0
        for j in range(v):
            if exclude_identical_view and i == j:
                continue
            s += float(acc[i][j])
        rows.append(s / (v - 1 if exclude_identical_view else v))
    return rows, sum(rows) / len(rows)


def reference_view_matrix(
    embeddings,
    subjects,
    types,
    views,
    *,
    probe_sets,
    gallery_types,
    view_list,
    metric: str = "euc",
    exclude_identical_view: bool = True,
    round_cells: int | None = 2,
    device: str = "cpu",  # accepted for signature compatibility; always numpy
    report_valid: bool = False,
) -> ViewMatrixResult:
    """Triple loop over (probe set, probe view, gallery view) with a per-probe loop.

    Same semantics as :func:`gaitbench.evaluation.view_matrix.evaluate_view_matrix`
    (stable tie-break: the first gallery item in input order with the minimal
    distance wins) but no input validation beyond what the loops need.
    """
    emb = np.asarray(embeddings)
    subjects = [str(s) for s in subjects]
    types = [str(t) for t in types]
    views = [str(v) for v in views]
    view_list = [str(v) for v in view_list]
    n = len(subjects)
    num_views = len(view_list)

    def rnd(value):
        return value if round_cells is None else float(np.round(value, round_cells))

    metrics = {}
    tables = {"ignored_views": sorted(set(views) - set(view_list))}
    for set_name, probe_types in probe_sets.items():
        matrix = [[0.0] * num_views for _ in range(num_views)]
        vmatrix = [[None] * num_views for _ in range(num_views)]
        num_probes = {}
        for i, v1 in enumerate(view_list):
            probes = [k for k in range(n) if types[k] in probe_types and views[k] == v1]
            num_probes[v1] = len(probes)
            for j, v2 in enumerate(view_list):
                gallery = [k for k in range(n) if types[k] in gallery_types and views[k] == v2]
                dist = reference_part_distance(emb[probes], emb[gallery], metric)
                gallery_subjects = {subjects[g] for g in gallery}
                hits = 0
                valid = 0
                for a, probe in enumerate(probes):
                    best = 0
                    for b in range(1, len(gallery)):
                        if dist[a, b] < dist[a, best]:  # strict: first minimum wins
                            best = b
                    if subjects[gallery[best]] == subjects[probe]:
                        hits += 1
                    if subjects[probe] in gallery_subjects:
                        valid += 1
                matrix[i][j] = rnd(hits * 100 / len(probes))
                if valid > 0:
                    vmatrix[i][j] = rnd(hits * 100 / valid)
        rows, mean = de_diag(matrix, exclude_identical_view)
        metrics[f"{set_name}/rank1"] = mean
        table = {
            "views": list(view_list),
            "matrix": matrix,
            "per_probe_view": dict(zip(view_list, rows)),
            "num_probes": num_probes,
        }
        if report_valid:
            vrows = {}
            for i, v1 in enumerate(view_list):
                values = [
                    vmatrix[i][j]
                    for j in range(num_views)
                    if vmatrix[i][j] is not None and not (exclude_identical_view and i == j)
                ]
                vrows[v1] = sum(values) / len(values) if values else None
            kept = [r for r in vrows.values() if r is not None]
            if kept:
                metrics[f"{set_name}/rank1_valid"] = sum(kept) / len(kept)
            table["valid"] = {"matrix": vmatrix, "per_probe_view": vrows}
        tables[set_name] = table
    return ViewMatrixResult(metrics=metrics, tables=tables)


def reference_rank_metrics(dist, probe_labels, gallery_labels, max_rank: int = 50):
    """Gait3D-style metrics, one probe at a time (the reference's ``evaluate_rank`` written out):
    returns ``(cmc [max_rank], mAP, mINP, num_valid)`` as fractions. Probes without a positive in
    the gallery are skipped. Ties: stable (earliest gallery item first)."""
    dist = np.asarray(dist, dtype=np.float64)
    num_q, num_g = dist.shape
    max_rank = min(max_rank, num_g)
    cmcs, aps, inps = [], [], []
    for q in range(num_q):
        order = np.argsort(dist[q], kind="stable")
        matches = [1 if gallery_labels[j] == probe_labels[q] else 0 for j in order]
        if sum(matches) == 0:
            continue
        hits_so_far, precision_sum, last = 0, 0.0, 0
        cmc = []
        for k, m in enumerate(matches):
            if m:
                hits_so_far += 1
                precision_sum += hits_so_far / (k + 1)
                last = k
            if k < max_rank:
                cmc.append(1.0 if hits_so_far > 0 else 0.0)
        positives = sum(matches)
        cmcs.append(cmc)
        aps.append(precision_sum / positives)
        inps.append(positives / (last + 1))
    if not cmcs:
        raise ValueError("no probe has a positive in the gallery")
    return np.mean(np.asarray(cmcs), axis=0), float(np.mean(aps)), float(np.mean(inps)), len(cmcs)


def reference_cross_view(dist, probe_ids, gallery_ids, probe_views, gallery_views, decimals: int = 2):
    """The cross-view-gallery protocol's per-view loop (``compute_ACC_mAP`` written out): for each
    probe view, ACC = mean rank-1 over its probes (probes without a positive count as 0) and mAP =
    mean AP over the probes with a positive, gallery items of the probe's subject at the probe's
    view removed; each rounded, then the unweighted mean over views. Returns ``(acc, mAP)`` in %."""
    dist = np.asarray(dist, dtype=np.float64)
    accs, maps = [], []
    for view in sorted(set(probe_views)):
        acc, aps = [], []
        for q in range(len(probe_ids)):
            if probe_views[q] != view:
                continue
            keep = [j for j in range(len(gallery_ids))
                    if not (gallery_ids[j] == probe_ids[q] and gallery_views[j] == probe_views[q])]
            order = sorted(keep, key=lambda j: (dist[q, j], j))
            matches = [1 if gallery_ids[j] == probe_ids[q] else 0 for j in order]
            acc.append(matches[0])
            if sum(matches):
                hits, total = 0, 0.0
                for k, m in enumerate(matches):
                    if m:
                        hits += 1
                        total += hits / (k + 1)
                aps.append(total / sum(matches))
        accs.append(round(100 * sum(acc) / len(acc), decimals))
        maps.append(round(100 * sum(aps) / len(aps), decimals))
    return float(np.mean(accs)), float(np.mean(maps))


def reference_verification(dist, probe_labels, gallery_labels, fars=(1e-2, 1e-3, 1e-4), excluded=None):
    """Verification figures pair by pair (:mod:`gaitbench.evaluation.verification` written out):
    every probe x gallery pair not in ``excluded`` (a set of ``(q, j)``) is genuine (same label) or
    impostor; every distinct distance (and minus infinity) is tried as the threshold, a pair being
    accepted when its distance is ``<=`` the threshold. Returns ``({far: tar or None}, eer)`` as
    fractions: TAR@FAR is the best TAR with FAR ``<= far`` (None when ``far * impostors < 1``); EER
    the smallest ``max(FAR, FRR)`` over the thresholds."""
    dist = np.asarray(dist, dtype=np.float64)
    genuine, impostor = [], []
    for q in range(dist.shape[0]):
        for j in range(dist.shape[1]):
            if excluded is not None and (q, j) in excluded:
                continue
            (genuine if probe_labels[q] == gallery_labels[j] else impostor).append(dist[q, j])
    thresholds = [-np.inf] + sorted(set(genuine) | set(impostor))
    curve = []
    for t in thresholds:
        far = sum(1 for d in impostor if d <= t) / len(impostor)
        tar = sum(1 for d in genuine if d <= t) / len(genuine)
        curve.append((far, tar))
    tars = {}
    for f in fars:
        if f * len(impostor) < 1:
            tars[f] = None
        else:
            tars[f] = max(tar for far, tar in curve if far <= f)
    eer = min(max(far, 1.0 - tar) for far, tar in curve)
    return tars, eer
