"""Verification (open-set) figures over probe x gallery pairs: ROC, TAR at fixed FAR, EER.

A *genuine* pair is a probe and a gallery sequence of the same subject, an *impostor* pair one of
different subjects; pairs the protocol excludes (same subject at the same view in the cross-view
gallery protocol, the identical view in the single-view-gallery protocols) are not pairs. The score
of a pair is the protocol's distance (after any post-processing stage); a pair is *accepted* at
threshold ``t`` when its distance is ``<= t``.

* ``FAR(t)`` = accepted impostors / impostors, ``TAR(t)`` = accepted genuine pairs / genuine pairs,
  ``FRR = 1 - TAR``.
* ``TAR@FAR=f`` = the largest ``TAR(t)`` over thresholds with ``FAR(t) <= f``. With ``k =
  floor(f * impostors)`` it is the share of genuine distances strictly below the ``(k+1)``-th
  smallest impostor distance (every impostor tied with it is then rejected too). It is reported
  only when ``f * impostors >= 1``: with fewer impostors the rate cannot be told from ``FAR = 0``.
* ``EER`` = ``min over t of max(FAR(t), FRR(t))``: the smallest rate both errors can be held to
  by one threshold. ``FRR`` only changes at genuine distances, so the minimum is at ``t = -inf``
  or at a genuine distance; where the two curves cross at a threshold it is their common value.
* The ROC is ``(FAR, TAR)`` at every genuine distance, thinned to at most ``ROC_POINTS`` points
  spread evenly over ``log10(FAR)``.

Memory: two passes over the distance blocks (the first collects the genuine distances, the second
counts, for each of them, the impostors at or below it and keeps the smallest impostor
distances that TAR@FAR needs), so the peak is one block plus ``1%`` of the impostor pairs.
:func:`gaitbench.evaluation.reference.reference_verification` is the readable version, pair by
pair, that the tests hold this one to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

FARS = (1e-2, 1e-3, 1e-4)
ROC_POINTS = 200


def far_label(far: float) -> str:
    """``1e-3`` -> ``"TAR@FAR=1e-3"``: the metric's name in reports and JSON."""
    exponent = round(math.log10(far))
    text = f"1e{exponent}" if math.isclose(10.0 ** exponent, far) else f"{far:g}"
    return f"TAR@FAR={text}"


@dataclass
class Verification:
    """Verification figures of one probe set (rates as fractions in ``[0, 1]``)."""

    genuine: int
    impostors: int
    tar: dict[float, float | None]  # FAR -> TAR, None where f * impostors < 1
    eer: float
    eer_threshold: float
    roc_far: np.ndarray
    roc_tar: np.ndarray
    notes: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Percent values for the report's metrics (unresolvable TAR@FAR left out)."""
        out = {far_label(f): 100.0 * v for f, v in self.tar.items() if v is not None}
        out["EER"] = 100.0 * self.eer
        return out

    def table(self) -> dict[str, Any]:
        """The JSON-able table: counts, TAR@FAR (null where unresolvable), EER, ROC points (%)."""
        return {"genuine_pairs": self.genuine, "impostor_pairs": self.impostors,
                "tar_at_far": {far_label(f): (None if v is None else round(100.0 * v, 4)) for f, v in self.tar.items()},
                "eer": round(100.0 * self.eer, 4), "eer_threshold": float(self.eer_threshold),
                "roc": {"far": [float(x) for x in np.round(100.0 * self.roc_far, 6)],
                        "tar": [float(x) for x in np.round(100.0 * self.roc_tar, 4)]},
                "notes": list(self.notes)}


def _pair_masks(p_subj: torch.Tensor, g_subj: torch.Tensor, excluded: torch.Tensor | None):
    genuine = g_subj[None, :] == p_subj[:, None]
    impostor = ~genuine
    if excluded is not None:
        genuine &= ~excluded
        impostor &= ~excluded
    return genuine, impostor


@torch.no_grad()
def verify(source, p_idx: np.ndarray, g_idx: np.ndarray, subj_code: np.ndarray, *,
           excluded=None, fars: Sequence[float] = FARS, name: str = "") -> Verification:
    """Verification figures of probes ``p_idx`` against gallery ``g_idx`` (rows of ``source``, a
    :class:`~gaitbench.evaluation.source.DistanceSource`), ``subj_code`` the subject of every row.
    ``excluded(p_rows, g_rows)`` returns a ``[b, g]`` bool tensor of pairs that are not pairs (or
    is None)."""
    dev = source.device
    g_subj = torch.from_numpy(subj_code[g_idx]).to(dev)
    fars = sorted((float(f) for f in fars), reverse=True)  # 1e-2, 1e-3, 1e-4: as papers print them
    # pass 1: the genuine distances, and how many impostor pairs there are
    genuine_parts, n_imp = [], 0
    for r0, r1, dist in source.blocks(p_idx, g_idx, 4 + 2, name=f"{name} verification"):
        ps = torch.from_numpy(subj_code[p_idx[r0:r1]]).to(dev)
        ex = excluded(p_idx[r0:r1], g_idx) if excluded is not None else None
        gen, imp = _pair_masks(ps, g_subj, ex)
        genuine_parts.append(dist[gen].double().cpu())
        n_imp += int(imp.sum())
    genuine = torch.sort(torch.cat(genuine_parts)).values if genuine_parts else torch.zeros(0, dtype=torch.float64)
    n_gen = len(genuine)
    if n_gen == 0 or n_imp == 0:
        raise ValueError(f"{name or 'probe set'}: verification needs genuine and impostor pairs; found "
                         f"{n_gen} genuine and {n_imp} impostor pairs")
    keep = int(math.floor(max(fars) * n_imp)) + 1  # the smallest impostor distances TAR@FAR looks at
    # pass 2: impostors at or below each genuine distance; the smallest `keep` impostor distances
    at_or_below = torch.zeros(n_gen + 1, dtype=torch.int64)
    smallest = torch.zeros(0, dtype=torch.float64)
    genuine_dev = genuine.to(dev)
    for r0, r1, dist in source.blocks(p_idx, g_idx, 4 + 2 + 8, name=f"{name} verification"):
        ps = torch.from_numpy(subj_code[p_idx[r0:r1]]).to(dev)
        ex = excluded(p_idx[r0:r1], g_idx) if excluded is not None else None
        _, imp = _pair_masks(ps, g_subj, ex)
        values = dist[imp].double()
        # an impostor at distance d is accepted at every genuine threshold g_j >= d
        first = torch.searchsorted(genuine_dev, values, right=False)
        at_or_below += torch.bincount(first, minlength=n_gen + 1).cpu()
        if len(values):
            k = min(keep, len(values))
            block_small = torch.topk(values, k, largest=False).values.cpu()
            merged = torch.cat([smallest, block_small])
            smallest = torch.topk(merged, min(keep, len(merged)), largest=False).values
    smallest = torch.sort(smallest).values.numpy()
    genuine_np = genuine.numpy()
    far_at = np.cumsum(at_or_below.numpy())[:n_gen] / n_imp  # FAR at threshold genuine[j]
    # TAR at threshold genuine[j]: genuine distances <= genuine[j] (ties: the last of a run counts all)
    tar_at = np.searchsorted(genuine_np, genuine_np, side="right") / n_gen

    tar: dict[float, float | None] = {}
    notes = []
    for f in fars:
        k = int(math.floor(f * n_imp))
        if k < 1:
            tar[f] = None
            notes.append(f"{far_label(f)} needs at least {math.ceil(1 / f):,} impostor pairs; there are {n_imp:,}")
            continue
        bound = smallest[k] if k < len(smallest) else np.inf
        tar[f] = float(np.searchsorted(genuine_np, bound, side="left")) / n_gen

    # EER: t = -inf (FAR 0, FRR 1) or a genuine distance
    worst = np.maximum(far_at, 1.0 - tar_at)
    j = int(np.argmin(worst))
    if worst[j] < 1.0:
        eer, eer_threshold = float(worst[j]), float(genuine_np[j])
    else:
        eer, eer_threshold = 1.0, float("-inf")
    roc_far, roc_tar = _thin_roc(far_at, tar_at)
    return Verification(n_gen, n_imp, tar, eer, eer_threshold, roc_far, roc_tar, notes)


def _thin_roc(far: np.ndarray, tar: np.ndarray, points: int = ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The ROC's corner points (one per distinct FAR, the highest TAR there), at most ``points`` of
    them spread evenly over log10(FAR) (FAR = 0 kept as the first point)."""
    # at equal FAR the curve is vertical: keep the highest TAR
    last = np.r_[far[1:] != far[:-1], True]
    far, tar = far[last], tar[last]
    if len(far) <= points:
        return far, tar
    logf = np.log10(np.clip(far, 1e-12, None))
    targets = np.linspace(logf[0], logf[-1], points)
    idx = np.unique(np.clip(np.searchsorted(logf, targets, side="left"), 0, len(far) - 1))
    return far[idx], tar[idx]
