"""Ranked retrieval of probes against one gallery: rank-k (CMC), mAP and mINP.

Semantics (those of the reference evaluators: OpenGait ``opengait/evaluation/evaluator.py``,
``cross_view_gallery_evaluation``, ``evaluate_real_scene`` and ``evaluate_Gait3D``, and
``metric.py::evaluate_rank``, at commit 0efafd4):

* Each probe's gallery is ranked by ascending distance. Ties are broken stably: the gallery item
  earliest in input order ranks first (the reference's ``argsort``/``topk`` break them arbitrarily).
* ``exclude="same_subject_same_view"`` removes, per probe, the gallery items of the probe's own
  subject at the probe's own view (the cross-view-gallery protocol); impostors at that view stay.
* A probe *hits at rank k* when one of its k nearest gallery items has its subject.
* AP of a probe with ``R`` positives = ``(1/R) * sum_k precision@k * m_k`` over the **whole**
  ranking; INP = ``R / rank of the hardest (last) positive``. Probes with no positive in the
  gallery have neither and are left out of mAP/mINP.
* Rank-k for a probe without positives: ``missing_gallery="miss"`` counts it as a miss (GREW,
  cross-view ACC), ``"exclude"`` leaves it out (Gait3D, whose reference skips such probes entirely).
* ``average="probes"``: means over probes. ``average="probe_views"``: the mean over each probe view
  first (rounded to ``round_values`` decimals, as the cross-view reference does), then the
  unweighted mean over the views.

Performance: the distances come in row blocks from a :class:`DistanceSource`. For rank-k alone, no
sort is needed: the rank of a probe's first hit is the number of gallery items strictly closer than
its nearest positive plus the tied items before it, one pass over the block. mAP/mINP sort each
block's rows once (stable). Everything is batched torch on the evaluation device; no Python loop
over probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NO_HIT = np.iinfo(np.int64).max


@dataclass
class ProbeScores:
    """Per-probe results (numpy, in probe order): ``first`` 0-based rank of the first hit
    (``NO_HIT`` without positives), ``ap`` and ``inp`` (NaN without positives), ``positives``."""

    first: np.ndarray
    ap: np.ndarray
    inp: np.ndarray
    positives: np.ndarray


def bytes_per_cell(ranking: bool) -> int:
    """Temporaries per probe x gallery cell: distances, and for a full ranking the sort indices,
    the matches and their cumulative sum."""
    return 4 + (8 + 8 + 1 + 4 + 4 if ranking else 4 + 1 + 1)


@torch.no_grad()
def score_block(dist: torch.Tensor, p_subj: torch.Tensor, g_subj: torch.Tensor, *, ranking: bool,
                excluded: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Scores of one block: ``dist`` ``[b, g]``, subject codes ``p_subj`` ``[b]`` and ``g_subj`` ``[g]``;
    ``excluded`` ``[b, g]`` bool removes gallery items per probe. Returns tensors ``first``
    (int64, ``g`` when there is no positive), ``positives`` and, with ``ranking``, ``ap``, ``inp``."""
    b, g = dist.shape
    pos = g_subj[None, :] == p_subj[:, None]
    if excluded is not None:
        pos &= ~excluded
        dist = dist.masked_fill(excluded, float("inf"))  # excluded items rank after every real one
    npos = pos.sum(1)
    if not ranking:
        # rank of the first hit = #closer items + #items tied with it that come earlier
        inf = torch.tensor(float("inf"), device=dist.device)
        pos_d = torch.where(pos, dist, inf)
        best = pos_d.argmin(1)  # first index among the nearest positives
        dbest = pos_d.gather(1, best[:, None])
        cols = torch.arange(g, device=dist.device)[None, :]
        first = (dist < dbest).sum(1) + ((dist == dbest) & (cols < best[:, None])).sum(1)
        first = torch.where(npos > 0, first, torch.full_like(first, g))
        return {"first": first, "positives": npos}
    order = torch.sort(dist, dim=1, stable=True).indices
    m = pos.gather(1, order)
    del order
    cs = m.cumsum(1, dtype=torch.int32)
    first = torch.where(npos > 0, m.to(torch.int8).argmax(1), torch.full_like(npos, g))
    ranks = torch.arange(1, g + 1, device=dist.device, dtype=torch.float32)
    ap = (cs.to(torch.float32) / ranks * m).sum(1) / npos.clamp(min=1)
    last = g - 1 - m.flip(1).to(torch.int8).argmax(1)
    inp = npos.to(torch.float32) / (last + 1).to(torch.float32)
    nan = torch.tensor(float("nan"), device=dist.device)
    return {"first": first, "positives": npos, "ap": torch.where(npos > 0, ap, nan),
            "inp": torch.where(npos > 0, inp, nan)}


def score_probes(source, p_idx: np.ndarray, g_idx: np.ndarray, subj_code: np.ndarray, *, ranking: bool,
                 views_code: np.ndarray | None = None, name: str = "") -> ProbeScores:
    """Scores of probes ``p_idx`` against gallery ``g_idx`` (rows of the source). With
    ``views_code``, same-subject same-view gallery items are excluded per probe."""
    dev = source.device
    g_subj = torch.from_numpy(subj_code[g_idx]).to(dev)
    g_view = None if views_code is None else torch.from_numpy(views_code[g_idx]).to(dev)
    n = len(p_idx)
    first = np.empty(n, np.int64)
    npos = np.empty(n, np.int64)
    ap = np.full(n, np.nan)
    inp = np.full(n, np.nan)
    for r0, r1, dist in source.blocks(p_idx, g_idx, bytes_per_cell(ranking), name=name):
        ps = torch.from_numpy(subj_code[p_idx[r0:r1]]).to(dev)
        excluded = None
        if g_view is not None:
            pv = torch.from_numpy(views_code[p_idx[r0:r1]]).to(dev)
            excluded = (g_subj[None, :] == ps[:, None]) & (g_view[None, :] == pv[:, None])
        out = score_block(dist, ps, g_subj, ranking=ranking, excluded=excluded)
        f = out["first"].cpu().numpy()
        first[r0:r1] = np.where(f >= len(g_idx), NO_HIT, f)
        npos[r0:r1] = out["positives"].cpu().numpy()
        if ranking:
            ap[r0:r1] = out["ap"].double().cpu().numpy()
            inp[r0:r1] = out["inp"].double().cpu().numpy()
    return ProbeScores(first, ap, inp, npos)


def summarise(scores: ProbeScores, ranks, *, want_map: bool, want_minp: bool, missing_gallery: str,
              where: str) -> dict[str, float]:
    """Metrics in percent over one group of probes (``where`` names it in errors)."""
    valid = scores.positives > 0
    counted = np.ones_like(valid) if missing_gallery == "miss" else valid
    if not counted.any():
        raise ValueError(f"{where}: no probe has a gallery sequence of its own subject, so rank-k is undefined")
    out = {f"rank{k}": 100.0 * float(np.mean(scores.first[counted] < k)) for k in ranks}
    if want_map or want_minp:
        if not valid.any():
            raise ValueError(f"{where}: no probe has a gallery sequence of its own subject, so mAP is undefined")
        if want_map:
            out["mAP"] = 100.0 * float(np.mean(scores.ap[valid]))
        if want_minp:
            out["mINP"] = 100.0 * float(np.mean(scores.inp[valid]))
    return out


def cmc_curve(scores: ProbeScores, max_rank: int, missing_gallery: str, n_gallery: int) -> list[float]:
    """CMC in percent up to ``min(max_rank, n_gallery)`` (the reference truncates at 50)."""
    counted = np.ones(len(scores.first), bool) if missing_gallery == "miss" else scores.positives > 0
    f = scores.first[counted]
    top = min(max_rank, n_gallery)
    if len(f) == 0:
        return []
    hist = np.bincount(np.minimum(f, top), minlength=top + 1)[:top]
    return [round(float(v), 4) for v in 100.0 * np.cumsum(hist) / len(f)]


@torch.no_grad()
def top_identities(source, p_idx: np.ndarray, g_idx: np.ndarray, g_labels: np.ndarray, top: int,
                   unique: bool = True) -> np.ndarray:
    """For each probe, the ``top`` nearest gallery identities (strings, ``[n_probe, top]``).

    ``unique``: an identity's distance is that of its nearest gallery sequence and it appears once
    per row; otherwise gallery sequences are ranked and an identity can repeat (the reference).
    Ties are broken stably (identities in order of first appearance in the gallery)."""
    ids, first_at, code = np.unique(g_labels, return_index=True, return_inverse=True)
    # renumber identities in order of first appearance so stable ties follow the gallery order
    order = np.argsort(first_at, kind="stable")
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(len(order))
    ids, code = ids[order], rank_of[code]
    n_ids = len(ids)
    width = min(top, n_ids if unique else len(g_idx))
    out = np.empty((len(p_idx), top), dtype=object)
    out[:] = ""
    code_t = torch.from_numpy(code.astype(np.int64)).to(source.device)
    for r0, r1, dist in source.blocks(p_idx, g_idx, 4 + 8 + 4, name="submission"):
        if unique:
            per_id = torch.full((r1 - r0, n_ids), float("inf"), device=dist.device)
            per_id.scatter_reduce_(1, code_t.expand(r1 - r0, -1), dist, reduce="amin")
            best = torch.sort(per_id, dim=1, stable=True).indices[:, :width]
        else:
            best = code_t[torch.sort(dist, dim=1, stable=True).indices[:, :width]]
        out[r0:r1, :width] = ids[best.cpu().numpy()]
    return out
