"""Readable reference port of k-reciprocal re-ranking (Zhong et al., CVPR 2017).

Written from the steps of the float32 "ranklist" form (zhunzhong07/person-re-ranking
``python-version/re_ranking_ranklist.py`` at commit 278f2c7, which torchreid and fast-reid ship),
one statement per step, with Python loops. It is slow on
purpose: tests cross-check :mod:`gaitbench.evaluation.rerank` against it, and the benchmark
times it. Two deliberate, documented choices where the original leaves things open:

- ties in the neighbour order are broken by the lower index (a stable argsort; the original's
  quicksort leaves the order of equal distances unspecified);
- a row whose maximum is not positive (all distances zero: one sequence, or identical features)
  is left unscaled instead of being divided by zero (the original produces NaN there).
"""

from __future__ import annotations

import numpy as np

from gaitbench.evaluation.distance import part_distance


def reference_rerank(q_g, q_q, g_g, *, k1: int, k2: int, lambda_value: float, squared: bool) -> np.ndarray:
    """Re-ranked distance ``[Q, G]`` from the three distance matrices (float32 throughout)."""
    q_g = np.asarray(q_g, dtype=np.float32)
    q_q = np.asarray(q_q, dtype=np.float32)
    g_g = np.asarray(g_g, dtype=np.float32)
    num_query = q_g.shape[0]

    # Step 1: the full block matrix over [probe; gallery], squared elementwise when asked.
    original = np.concatenate(
        [np.concatenate([q_q, q_g], axis=1), np.concatenate([q_g.T, g_g], axis=1)], axis=0
    ).astype(np.float32)
    if squared:
        original = np.power(original, 2).astype(np.float32)

    # Step 2: divide by the column maxima and transpose (row i / max of row i when symmetric).
    col_max = np.max(original, axis=0)
    col_max = np.where(col_max > 0, col_max, np.float32(1.0)).astype(np.float32)
    dist = np.transpose(original / col_max)
    all_num = dist.shape[0]

    # Step 3: the neighbour order of every row (ties: lower index first).
    initial_rank = np.argsort(dist, axis=1, kind="stable").astype(np.int32)

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = initial_rank[i, :k]
        backward = initial_rank[forward, :k]
        rows = np.where(backward == i)[0]
        return forward[rows]

    # Step 4: k-reciprocal sets, their expansion, unit-sum Gaussian-kernel weights.
    half = int(np.around(k1 / 2.0)) + 1
    V = np.zeros_like(dist, dtype=np.float32)
    for i in range(all_num):
        k_reciprocal = reciprocal(i, k1 + 1)
        expansion = k_reciprocal
        for candidate in k_reciprocal:
            candidate_reciprocal = reciprocal(int(candidate), half)
            overlap = len(np.intersect1d(candidate_reciprocal, k_reciprocal))
            if overlap > 2.0 / 3 * len(candidate_reciprocal):
                expansion = np.append(expansion, candidate_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)

    # Step 5: only the probe rows take part in the final mix.
    dist = dist[:num_query]

    # Step 6: local query expansion over the k2 nearest rows, for all rows.
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe

    # Step 7: inverted index, column -> rows with a non-zero weight there.
    inv_index = [np.where(V[:, j] != 0)[0] for j in range(all_num)]

    # Step 8: Jaccard distance of every probe to every sequence, sum of minima over shared columns.
    jaccard = np.zeros_like(dist, dtype=np.float32)
    for i in range(num_query):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        non_zero = np.where(V[i, :] != 0)[0]
        for j in non_zero:
            rows = inv_index[j]
            temp_min[0, rows] = temp_min[0, rows] + np.minimum(V[i, j], V[rows, j])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)

    # Step 9: mix and keep the probe x gallery block.
    final = jaccard * (1 - lambda_value) + dist * lambda_value
    return final[:, num_query:]


def reference_rerank_matrix(full, num_query: int, **kwargs) -> np.ndarray:
    """:func:`reference_rerank` on one ``[N, N]`` matrix over ``[probe; gallery]``."""
    full = np.asarray(full, dtype=np.float32)
    q = num_query
    return reference_rerank(full[:q, q:], full[:q, :q], full[q:, q:], **kwargs)


def reference_rerank_embeddings(probe, gallery, metric: str = "euc", **kwargs) -> np.ndarray:
    """The reference starting from embeddings: the three distance matrices, then the loops."""
    return reference_rerank(
        part_distance(probe, gallery, metric), part_distance(probe, probe, metric),
        part_distance(gallery, gallery, metric), **kwargs,
    )
