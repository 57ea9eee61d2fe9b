"""Query-expansion stages: new probe and/or gallery features from their neighbours.

Every stage finds neighbours with the protocol's distance (``StageInput.distances``), returns
new features and invalidates the distance; the next stage or the engine recomputes it. Feature
arithmetic is float32 on the evaluation device, in row chunks.

``aqe`` (side: probe; not transductive)
    Average query expansion (Chum et al., ICCV 2007): ``q' = (q + sum of its n nearest gallery
    sequences) / (n + 1)``. Parameter ``n`` (default 5).
``alpha-qe`` (side: probe; not transductive)
    Alpha query expansion (Radenovic, Tolias, Chum, TPAMI 2018): ``q' = (q + sum_i w_i d_i) /
    (1 + sum_i w_i)`` over the ``n`` nearest gallery sequences ``d_i``, ``w_i = max(s_i, 0) **
    alpha`` with ``s_i`` the cosine similarity of the protocol's "cos" metric (mean over parts of
    the per-part cosine). The weighted *mean* has the direction of Radenovic's normalised sum, so
    rankings under "cos" are theirs; the mean keeps features on the gallery's scale for "euc".
    Negative similarities get weight 0 (an odd alpha would make them negative). Parameters ``n``
    (5), ``alpha`` (3.0, their default).
``dba`` (side: gallery; not transductive: it uses the gallery only)
    Database-side augmentation (Arandjelovic & Zisserman, CVPR 2012; alpha weights as in Gordo et
    al. 2017): every gallery sequence becomes the mean of itself and its ``n`` nearest *other*
    gallery sequences, weighted like alpha-qe; ``alpha = 0`` (the default) is the plain average.
    Computed from the original gallery (one shot). Parameters ``n`` (5), ``alpha`` (0.0).
``cluster-qe`` (side: both; transductive)
    The clustering QE described for GaitMask (Lin et al., HID 2021): probe and gallery sequences
    together are clustered by the protocol's distance, and every sequence moves ``weight`` of the
    way to the mean of the *other* members of its cluster, ``x' = x + weight * (mean - x)``
    (``exclude_self=false``: the mean including itself). Singletons keep their features exactly;
    gallery-only clusters are changed too; one shot, not iterated. The report leaves the
    clustering open; ``method`` chooses:

    - ``"mutual-knn"`` (default): link two sequences when each is among the other's ``k``
      nearest (self excluded) and their distance is at most ``threshold`` (default inf: no cut);
      clusters are the connected components. With ``k = 1`` (default) they are mutual
      nearest-neighbour pairs: every sequence has one nearest, so no cluster has more than two
      members and none can chain. ``k >= 2`` components can chain through intermediate
      sequences (two identities joined by one mutual link between their nearest members).
    - ``"threshold"``: single-linkage agglomerative clustering cut at ``threshold`` (required,
      in the protocol's distance units): connected components of "distance <= threshold". It
      chains: a loose threshold makes one big cluster, and the edge list grows with it.

    Defaults ``method="mutual-knn", k=1, threshold=inf, exclude_self=true, weight=0.1``, chosen by
    measurement. The report's sentence read literally ("updated to the mean feature
    representation of the other representations in the same cluster") is ``weight=1``. On
    HID-like synthetic embeddings (:func:`gaitbench.testing.hid_like_embeddings`: 100 subjects,
    plain rank-1 40-90%, 2, 4 or 8 probes and 1 or 2 gallery sequences per subject, 4-6 seeds)
    with the ``rerank`` stage (preset ``opengait-hid``) after it, rank-1 against re-ranking alone:

    - the former defaults (mutual 3-NN components, ``weight=1``): 5-18 points *below* (means
      over seeds per regime); the components chain across subjects;
    - full replacement (``weight=1``, or the mean including self) was below too, for ``k`` 1-3,
      with or without a cluster-size cap (3, 4), a relative distance cut (a quantile of the
      nearest-neighbour distances, or a nearest/second-nearest ratio) or probe-probe links
      only. Collapsing members onto one feature is the problem more than wrong links: merging
      only mutual pairs of the same subject (an oracle) scored -4.8 to +3.6 against re-ranking
      alone over 4 seeds, the same pairs moved a quarter of the way +0.7 to +5.0;
    - ``k=1`` with ``weight=0.1``: +0.6 on average over 108 sets. With 2 gallery sequences per
      subject: +1.1 (4 probes) and +2.5 (8 probes) in the 64% regime, +0.3 and +2.3 at 40%,
      +0.1 to +0.6 at 90% (little left to gain). With 2 probes, or 1 gallery sequence, it
      stays within about 1-2 points of re-ranking alone, either side (a 6-seed mean is noisy
      by about 1 point there; the worst, -2.2 at 90% with 2 probes and 1 gallery sequence, was
      +0.8 on 12 other seeds). Weights 0.15-0.25 gain more with 8 probes and lose more with 2;
      ``k=2`` (with or without a size cap), relative cuts and probe-probe links added nothing
      reliable to ``k=1``, so the defaults have none: no distance scale, the same for every
      metric.

    ``tests/test_hid2021_pipeline.py`` keeps this (and docs/hid2021.md has its table).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .rerank import smallest_k
from .stages import StageInput, with_features

__all__ = ["apply_aqe", "apply_alpha_qe", "apply_cluster_qe", "apply_dba", "cluster_labels", "connected_components",
           "expand"]

_ROWS = 256  # rows per chunk of gathered neighbour features ([rows, n, C, P])


def _int_param(stage: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"stage {stage!r}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _alpha_param(stage: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or math.isinf(value):
        raise ConfigError(f"stage {stage!r}: alpha must be a finite number >= 0, got {value!r}")
    return float(value)


def part_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the "cos" metric between ``x`` ``[n, C, P]`` and each of ``y``
    ``[n, k, C, P]``: mean over parts of the per-part cosine (eps 1e-12), ``[n, k]``."""
    xn = F.normalize(x, p=2, dim=1, eps=1e-12)
    yn = F.normalize(y, p=2, dim=2, eps=1e-12)
    return (xn[:, None] * yn).sum(2).mean(-1)


def expand(base: torch.Tensor, source: torch.Tensor, neighbours: torch.Tensor, alpha: float | None = None
           ) -> torch.Tensor:
    """``(x + sum_j w_j source[nbr_j]) / (1 + sum_j w_j)`` for every row ``x`` of ``base``:
    ``w = 1`` when ``alpha`` is None, else ``max(cosine, 0) ** alpha``."""
    out = torch.empty_like(base)
    for r0 in range(0, len(base), _ROWS):
        r1 = min(r0 + _ROWS, len(base))
        x = base[r0:r1]
        near = source[neighbours[r0:r1]]  # [b, n, C, P]
        if alpha is None:
            w = torch.ones(near.shape[:2], dtype=base.dtype, device=base.device)
        else:
            w = part_cosine(x, near).clamp_(min=0).pow_(alpha)
        total = x + (w[:, :, None, None] * near).sum(1)
        out[r0:r1] = total / (1 + w.sum(1))[:, None, None]
    return out


def apply_aqe(data: StageInput, *, n: int) -> StageInput:
    """The ``aqe`` stage (probe side): each probe averaged with its ``n`` nearest gallery items."""
    n = _int_param("aqe", "n", n, 1)
    if len(data.gallery) == 0 or len(data.probe) == 0:
        return with_features(data)
    _, near = smallest_k(data.current_distance(), n)
    return with_features(data, probe=expand(data.probe, data.gallery, near))


def apply_alpha_qe(data: StageInput, *, n: int, alpha: float) -> StageInput:
    """The ``alpha-qe`` stage (probe side): similarity**alpha-weighted mean with ``n`` neighbours."""
    n = _int_param("alpha-qe", "n", n, 1)
    alpha = _alpha_param("alpha-qe", alpha)
    if len(data.gallery) == 0 or len(data.probe) == 0:
        return with_features(data)
    _, near = smallest_k(data.current_distance(), n)
    return with_features(data, probe=expand(data.probe, data.gallery, near, alpha))


def _nearest_others(data: StageInput, x: torch.Tensor, k: int):
    """Each row's ``k`` nearest other rows of ``x`` (self excluded): ``(distances, indices)``."""
    blocks = data.distance_blocks(x)
    n = len(x)
    dists, idx = [], []
    for r0 in range(0, n, _ROWS):
        r1 = min(r0 + _ROWS, n)
        d = blocks(slice(r0, r1), slice(0, n))
        rows = torch.arange(r1 - r0, device=d.device)
        d[rows, rows + r0] = math.inf
        v, i = smallest_k(d, k)
        dists.append(v)
        idx.append(i)
    return torch.cat(dists), torch.cat(idx)


def apply_dba(data: StageInput, *, n: int, alpha: float) -> StageInput:
    """The ``dba`` stage (gallery side): each gallery item averaged with ``n`` gallery neighbours."""
    n = _int_param("dba", "n", n, 1)
    alpha = _alpha_param("dba", alpha)
    g = len(data.gallery)
    if g < 2:
        return with_features(data)
    _, near = _nearest_others(data, data.gallery, min(n, g - 1))
    return with_features(data, gallery=expand(data.gallery, data.gallery, near, alpha))


def connected_components(n: int, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Component label (0..c-1, by first member) of each of ``n`` nodes linked by edges
    ``src[i] - dst[i]``: minimum-label propagation with pointer jumping, all tensor ops."""
    labels = torch.arange(n, device=src.device)
    if len(src):
        while True:
            low = torch.minimum(labels[src], labels[dst])
            new = labels.clone()
            new.scatter_reduce_(0, src, low, reduce="amin")
            new.scatter_reduce_(0, dst, low, reduce="amin")
            while True:  # a label is a node of the same component with a smaller index
                jumped = new[new]
                if torch.equal(jumped, new):
                    break
                new = jumped
            if torch.equal(new, labels):
                break
            labels = new
    return torch.unique(labels, return_inverse=True)[1]


def _cluster_edges(data: StageInput, x: torch.Tensor, method: str, k: int, threshold: float):
    n = len(x)
    if method == "mutual-knn":
        dist, near = _nearest_others(data, x, min(k, n - 1))
        mutual = (near[near] == torch.arange(n, device=near.device)[:, None, None]).any(-1)
        keep = mutual & (dist <= threshold)
        src = torch.arange(n, device=near.device)[:, None].expand_as(near)[keep]
        return src, near[keep]
    blocks = data.distance_blocks(x)
    src, dst = [], []
    for r0 in range(0, n, _ROWS):
        r1 = min(r0 + _ROWS, n)
        d = blocks(slice(r0, r1), slice(r0, n))  # upper stripe: each pair once
        rows = torch.arange(r1 - r0, device=d.device)
        d[rows, rows] = math.inf
        hit = torch.nonzero(d <= threshold)
        src.append(hit[:, 0] + r0)
        dst.append(hit[:, 1] + r0)
    return torch.cat(src), torch.cat(dst)


def _cluster_params(method, k, threshold, exclude_self, weight):
    """The ``cluster-qe`` parameters checked (ConfigError naming the stage and the parameter)."""
    where = "stage 'cluster-qe'"
    if method not in ("mutual-knn", "threshold"):
        raise ConfigError(f"{where}: method must be 'mutual-knn' or 'threshold', got {method!r}")
    k = _int_param("cluster-qe", "k", k, 1)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold) \
            or threshold < 0:
        raise ConfigError(f"{where}: threshold must be a number >= 0 (inf: no cut), got {threshold!r}")
    threshold = float(threshold)
    if method == "threshold" and not math.isfinite(threshold):
        raise ConfigError(f"{where}: method 'threshold' needs a finite threshold "
                          "(--set stages.cluster-qe.threshold=...)")
    if not isinstance(exclude_self, bool):
        raise ConfigError(f"{where}: exclude_self must be true or false, got {exclude_self!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
        raise ConfigError(f"{where}: weight must be a number in (0, 1] (1: replace by the cluster mean), "
                          f"got {weight!r}")
    return method, k, threshold, exclude_self, float(weight)


def cluster_labels(data: StageInput, x: torch.Tensor, *, method: str = "mutual-knn", k: int = 1,
                   threshold: float = math.inf) -> torch.Tensor:
    """Cluster label (0..c-1) of every row of ``x`` ``[n, C, P]`` as ``cluster-qe`` forms them
    (the module docstring): connected components of the mutual-``k``-NN links (``method``
    "mutual-knn") or of "distance <= threshold" (``method`` "threshold"), distances by
    ``data``'s metric."""
    method, k, threshold, _, _ = _cluster_params(method, k, threshold, True, 1.0)
    if len(x) < 2:
        return torch.zeros(len(x), dtype=torch.long, device=x.device)
    src, dst = _cluster_edges(data, x, method, k, threshold)
    return connected_components(len(x), src, dst)


def apply_cluster_qe(data: StageInput, *, method: str, k: int, threshold: float, exclude_self: bool,
                     weight: float) -> StageInput:
    """The ``cluster-qe`` stage (both sides, transductive); see the module docstring."""
    method, k, threshold, exclude_self, weight = _cluster_params(method, k, threshold, exclude_self, weight)
    q = len(data.probe)
    x = torch.cat([data.probe, data.gallery])
    if len(x) < 2:
        return with_features(data)
    labels = cluster_labels(data, x, method=method, k=k, threshold=threshold)
    count = torch.bincount(labels)
    sums = torch.zeros((len(count),) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    sums.index_add_(0, labels, x)
    size = count[labels].to(x.dtype)[:, None, None]
    if exclude_self:  # the mean of the other members; a singleton keeps its own feature
        target = torch.where(size > 1, (sums[labels] - x) / (size - 1).clamp_(min=1), x)
    else:
        target = sums[labels] / size
    # lerp: x + weight * (target - x), exactly ``target`` at weight 1 and ``x`` for singletons
    new = torch.lerp(x, target, weight)
    return with_features(data, probe=new[:q], gallery=new[q:])
