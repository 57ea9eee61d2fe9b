"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, CVPR 2017), exact and loop-free.

What it computes
----------------
Exactly the reference algorithm of k-reciprocal re-ranking (Z. Zhong, L. Zheng, D. Cao, S. Li,
CVPR 2017) in the float32 "ranklist" form of zhunzhong07/person-re-ranking
``python-version/re_ranking_ranklist.py`` at commit 278f2c7 (torchreid and fast-reid ship the same
code), over the ``N = Q + G`` sequences ``[probe; gallery]``:

1. ``d``: the input distance between all sequences, squared elementwise when ``squared``.
2. ``D[i] = d[i] / max(d[i])``: every row divided by its maximum (a row whose maximum is not
   positive, i.e. all distances zero, is left unscaled: the reference divides by zero there).
3. Neighbour order of each row by ``D``, ties broken by the lower index (a stable sort).
4. ``R(i)``: the first ``k1 + 1`` neighbours of ``i`` (``i`` itself included) that have ``i``
   among their own first ``k1 + 1``. For each ``c`` in ``R(i)``, ``Rh(c)`` is the same set with
   ``round(k1 / 2) + 1`` neighbours (Python's round-half-even); it joins the expansion set when
   ``|Rh(c) & R(i)| > 2/3 |Rh(c)|`` (strict; evaluated exactly as ``3|..| > 2|..|``).
5. ``V[i, E(i)] = exp(-D[i, E(i)]) / sum(...)`` on the expansion set ``E(i)``, zero elsewhere.
6. Local query expansion (when ``k2 != 1``): ``V[i] <- mean of V over i's first k2 neighbours``,
   for all ``N`` rows (other probes included: the stage is transductive).
7. Jaccard distance ``1 - m / (2 - m)`` with ``m = sum_j min(V[p, j], V[g, j])`` (rows of ``V`` sum
   to 1, so this is ``1 - sum min / sum max``).
8. ``final = (1 - lambda) * jaccard + lambda * D``, the ``[Q, G]`` probe x gallery block.

``k1 + 1``, the half neighbourhood and ``k2`` are clamped to ``N`` (with a warning), as the
reference's slicing does silently. Everything is float32. The reference's float16 ``V``
(OpenGait, reid-strong-baseline) is not followed: it changes values by about 1e-3 and coarsens
ties; the float32 ranklist form is the one with a readable port to test against
(``tests/reference_rerank.py``; the two agree to 1e-5).

Inputs are explicit: ``distance`` ("protocol" = the protocol's metric, or a metric name) and
``squared``. Presets (:data:`gaitbench.builtin.RERANK_PRESETS`):

- ``zhong2017`` (default): the protocol's distance squared, k1=20, k2=6, lambda=0.3. "Squared
  Euclidean" for part-based embeddings means the square of the protocol's distance (for "euc",
  the mean over parts of the per-part Euclidean distance, squared), which is what the reference
  ranklist function computes when given the protocol's distance matrices; it keeps the
  protocol's neighbour order. For one-part features this is the paper's squared L2. For the
  squared L2 of the flattened ``C*P`` vector (torchreid on flattened features), set
  ``distance="flat_euc"``.
- ``opengait-hid``: the protocol's distance unsquared, k1=6, k2=6, lambda=0.3 (OpenGait's
  ``HID_submission``).

How (memory ``O(Q*G + N*k)``, no dense ``N x N`` matrix)
-------------------------------------------------------
- One pass over row stripes of the upper triangle: stripe ``I`` holds ``d(I, I.start:)``. Rows
  of ``I`` take their candidates from it, and the part right of the stripe's diagonal block,
  transposed, feeds the candidates of the later rows (``d`` is symmetric, so half the GEMM work).
  Each row keeps its ``k + 8`` smallest entries by an int64 key that sorts like (value, index),
  plus its running maximum; the ``Q x G`` block is kept for the final mix.
- After the pass, candidates are normalised by the row maxima and re-sorted by (``D``, index);
  the 8 spare candidates absorb ties that the division can create. A row whose tie group reaches
  past the spares is reported by a warning (not seen outside constructed inputs).
- Reciprocal sets and the expansion rule are integer tensor ops on the neighbour lists
  (``nbr[nbr] == i``), in row chunks. ``V`` is a sorted sparse (row, column, value) list with
  about 20 entries per row; ``D`` at an expansion entry outside the row's candidates is computed
  for just those pairs.
- Local QE concatenates the ``k2`` neighbour rows of ``V`` and sums duplicates; Jaccard is a
  column join: every probe entry meets the gallery entries of its column, and ``min`` is
  accumulated into a dense ``[Q, G]`` buffer in bounded chunks.

The same code runs on CPU and CUDA. The effective distance matrix is the upper stripes mirrored
(plus the diagonal blocks as computed); on a symmetric input matrix that is the matrix itself.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError
from .distance import METRICS
from .stages import StageInput, with_distance

__all__ = ["apply_rerank", "k_reciprocal", "order_keys", "rerank", "rerank_matrix", "smallest_k",
           "memory_estimate"]

_MARGIN = 8  # spare candidates per row for ties created by the row normalisation
_SENTINEL = torch.iinfo(torch.int64).max
_SHIFT = 1 << 32
_CPU_STRIPE_ROWS = 256
_GPU_STRIPE_BYTES = 4 << 30  # float32 stripe + two int64 key tensors
_CPU_CHUNK_ROWS = 2048
_GPU_CHUNK_ROWS = 32768
_CPU_PAIRS = 1 << 20  # (probe entry, gallery entry) pairs per Jaccard chunk (~100 MB of temporaries)
_GPU_PAIRS = 1 << 26


# -- ordering helpers ------------------------------------------------------------------------------

def _ordered_bits(values: torch.Tensor) -> torch.Tensor:
    """int64 ``bits * 2**32`` where ``bits`` (int32) sorts like the float32 ``values``."""
    v = values.to(torch.float32).contiguous()
    if bool(torch.signbit(v).any()):  # negative values or -0.0 (distances rarely have any)
        v = torch.where(v == 0, torch.zeros((), dtype=v.dtype, device=v.device), v)  # -0.0 ties +0.0
        bits = v.view(torch.int32)
        bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    else:
        bits = v.view(torch.int32)
    return bits.to(torch.int64).mul_(_SHIFT)


def order_keys(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort like ``(value, index)`` pairs (``0 <= index < 2**32``): the smallest
    keys are the smallest values, equal values by the lower index."""
    return _ordered_bits(values).add_(index)


def _decode(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bits = (keys >> 32).to(torch.int32)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return bits.view(torch.float32), keys & (_SHIFT - 1)


def smallest_k(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest entries of each row of ``values`` ``[n, m]`` in ascending order, ties by
    the lower column (what a stable argsort gives): ``(values, columns)``."""
    k = min(int(k), values.shape[1])
    cols = torch.arange(values.shape[1], device=values.device)
    keys = order_keys(values, cols).topk(k, dim=1, largest=False, sorted=True).values
    return _decode(keys)


# -- the algorithm --------------------------------------------------------------------------------

def _half(k1: int) -> int:
    return int(round(k1 / 2)) + 1  # round-half-even, as np.around


def _stripes(q: int, n: int, rows: int) -> list[tuple[int, int]]:
    """Row blocks of at most ``rows`` rows that do not straddle the probe/gallery boundary."""
    out = []
    for lo, hi in ((0, q), (q, n)):
        out += [(r, min(r + rows, hi)) for r in range(lo, hi, rows)]
    return out


def memory_estimate(num_probe: int, num_gallery: int, k1: int = 20, *, device: str = "cpu") -> dict[str, int]:
    """Rough peak bytes of :func:`k_reciprocal` beyond the prepared embeddings: the ``[Q, G]``
    buffers, the per-row lists and one stripe (a dense reference needs about ``20 * N**2``)."""
    n = num_probe + num_gallery
    m = k1 + 1 + _MARGIN
    rows = _stripe_rows(n, torch.device(device))
    dense_qg = 3 * 4 * num_probe * num_gallery
    lists = n * (m * 8 * 3 + 200 * 12)  # candidate keys/decoded lists; V and V_qe (~100 nnz/row)
    stripe = rows * n * 24
    return {"qg_buffers": dense_qg, "lists": lists, "stripe": stripe, "total": dense_qg + lists + stripe,
            "dense_reference": 20 * n * n}


def _stripe_rows(n: int, device: torch.device) -> int:
    if device.type == "cpu":
        return _CPU_STRIPE_ROWS
    return max(64, min(8192, _GPU_STRIPE_BYTES // (24 * max(n, 1))))


def _merge(current: torch.Tensor, new: torch.Tensor, m: int) -> torch.Tensor:
    both = torch.cat([current, new], dim=1)
    return both.topk(min(m, both.shape[1]), dim=1, largest=False, sorted=False).values


def _candidates(blocks, q: int, n: int, m: int, squared: bool, probe_gallery, device):
    """One pass over the upper stripes: each row's ``m`` smallest keys, its maximum, and the
    (squared) ``[Q, G]`` block."""
    g = n - q
    cand = torch.full((n, m), _SENTINEL, dtype=torch.int64, device=device)
    row_max = torch.full((n,), -math.inf, dtype=torch.float32, device=device)
    qg = torch.empty((q, g), dtype=torch.float32, device=device)
    arange = torch.arange(n, device=device)
    for r0, r1 in _stripes(q, n, _stripe_rows(n, device)):
        if probe_gallery is not None and r0 < q:
            left = blocks(slice(r0, r1), slice(r0, q))
            stripe = torch.cat([left, probe_gallery[r0:r1].to(device=device, dtype=torch.float32)], dim=1)
        else:
            stripe = blocks(slice(r0, r1), slice(r0, n))
        stripe = stripe.square() if squared else stripe.to(torch.float32)
        if r0 < q:
            qg[r0:r1] = stripe[:, q - r0:]
        bits = _ordered_bits(stripe)
        own = bits + arange[r0:][None, :]
        cand[r0:r1] = _merge(cand[r0:r1], own.topk(min(m, own.shape[1]), dim=1, largest=False,
                                                     sorted=False).values, m)
        row_max[r0:r1] = torch.maximum(row_max[r0:r1], stripe.max(dim=1).values)
        if r1 < n:
            width = r1 - r0
            rest = bits[:, width:].add_(arange[r0:r1, None])  # keys of the later rows' entries
            top = rest.topk(min(m, width), dim=0, largest=False, sorted=False).values.t()
            cand[r1:] = _merge(cand[r1:], top, m)
            row_max[r1:] = torch.maximum(row_max[r1:], stripe[:, width:].max(dim=0).values)
        del stripe, bits, own
    return cand, row_max, qg


def _neighbours(cand: torch.Tensor, scale: torch.Tensor, kmax: int, n: int):
    """Candidates normalised and re-sorted by (D, index): ``(cols, D)`` ``[n, m]``."""
    t, cols = _decode(cand.sort(dim=1).values)
    dn = t / scale[:, None]
    order = order_keys(dn, cols).sort(dim=1).values
    dn_sorted, cols_sorted = _decode(order)
    m = cols_sorted.shape[1]
    if m < n:
        # A tie group of D reaching the last spare is still exact when its members share one t
        # (then the key order of t already put equal values by index, excluded ones last).
        # Positions of a D-group are the same in t order and in D order (D is monotone in t).
        last = dn_sorted[:, m - 1:]
        first = (dn_sorted == last).to(torch.uint8).argmax(1, keepdim=True)
        mixed = t.gather(1, first) != t[:, m - 1:]
        risky = (dn_sorted[:, kmax - 1:kmax] == last) & mixed
        count = int(risky.sum())
        if count:
            warnings.warn(f"rerank: {count} rows have ties spanning more than {_MARGIN} spare neighbours; "
                          "their neighbour order may differ from a full stable sort", stacklevel=4)
    return cols_sorted, dn_sorted


def _expansion(nbr: torch.Tensor, k: int, kh: int, chunk: int):
    """The expansion sets as sorted (row, col) pairs."""
    n = nbr.shape[0]
    device = nbr.device
    fwd, fh = nbr[:, :k], nbr[:, :kh]
    arange = torch.arange(n, device=device)
    recip_h = torch.empty((n, kh), dtype=torch.bool, device=device)
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        recip_h[c0:c1] = (fh[fh[c0:c1]] == arange[c0:c1, None, None]).any(-1)
    size_h = recip_h.sum(1)
    keys = []
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        f = fwd[r0:r1]  # [R, k]
        rows = arange[r0:r1]
        recip = (fwd[f] == rows[:, None, None]).any(-1)  # i among the first k of its neighbour
        half = fh[f]  # [R, k, kh] the candidates' half lists
        half_recip = recip_h[f]  # membership of Rh(c)
        in_r = ((half[..., None] == f[:, None, None, :]) & recip[:, None, None, :]).any(-1)
        overlap = (in_r & half_recip).sum(-1)
        accept = recip & (3 * overlap > 2 * size_h[f])
        take = accept[:, :, None] & half_recip
        row_ids = torch.cat([rows[:, None].expand_as(f)[recip], rows[:, None, None].expand_as(half)[take]])
        col_ids = torch.cat([f[recip], half[take]])
        keys.append(torch.unique(row_ids * n + col_ids))
    keys = torch.cat(keys)
    return keys // n, keys % n


def _entry_distances(rows, cols, cand_cols, cand_d, blocks, squared, scale, chunk):
    """``D[rows, cols]``: from the row's candidates, else computed for just those pairs."""
    out = torch.empty(rows.shape, dtype=torch.float32, device=rows.device)
    found = torch.empty(rows.shape, dtype=torch.bool, device=rows.device)
    step = chunk * 32
    for e0 in range(0, len(rows), step):
        e1 = min(e0 + step, len(rows))
        match = cand_cols[rows[e0:e1]] == cols[e0:e1, None]
        found[e0:e1] = match.any(1)
        out[e0:e1] = cand_d[rows[e0:e1]].gather(1, match.to(torch.uint8).argmax(1, keepdim=True))[:, 0]
    missing = torch.nonzero(~found)[:, 0]
    if len(missing):
        mrows, mcols = rows[missing], cols[missing]
        urows, row_pos = torch.unique(mrows, return_inverse=True)
        for u0 in range(0, len(urows), 256):
            u1 = min(u0 + 256, len(urows))
            sel = torch.nonzero((row_pos >= u0) & (row_pos < u1))[:, 0]
            ucols, col_pos = torch.unique(mcols[sel], return_inverse=True)
            block = blocks(urows[u0:u1], ucols).to(torch.float32)
            if squared:
                block = block.square()
            t = block[row_pos[sel] - u0, col_pos]
            out[missing[sel]] = t / scale[mrows[sel]]
    return out


def _query_expansion(rows, cols, vals, nbr, k2: int, n: int, chunk: int):
    """Sparse ``V_qe[i] = mean(V[nbr[i, :k2]])``: (rows, cols, vals) sorted by (row, col)."""
    device = rows.device
    counts = torch.bincount(rows, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    out_r, out_c, out_v = [], [], []
    step = max(1, chunk // 4)
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        nb = nbr[r0:r1, :k2].reshape(-1)
        lens = counts[nb]
        owner = torch.arange(r0, r1, device=device).repeat_interleave(k2).repeat_interleave(lens)
        first = torch.cumsum(lens, 0) - lens
        total = int(lens.sum())
        offsets = torch.arange(total, device=device) - first.repeat_interleave(lens)
        src = starts[nb].repeat_interleave(lens) + offsets
        keys, inverse = torch.unique(owner * n + cols[src], return_inverse=True)
        acc = torch.zeros(len(keys), dtype=torch.float32, device=device).index_add_(0, inverse, vals[src])
        out_r.append(keys // n)
        out_c.append(keys % n)
        out_v.append(acc / k2)
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def _jaccard_overlap(rows, cols, vals, q: int, n: int, pairs: int) -> torch.Tensor:
    """``m[p, g] = sum_j min(V[p, j], V[q + g, j])`` by a column join, ``[Q, G]``."""
    device = rows.device
    g = n - q
    out = torch.zeros((q, g), dtype=torch.float32, device=device)
    if q == 0 or g == 0:
        return out
    is_probe = rows < q
    p_rows, p_cols, p_vals = rows[is_probe], cols[is_probe], vals[is_probe]  # sorted by (row, col)
    gal = torch.nonzero(~is_probe)[:, 0]
    order = torch.argsort(cols[gal], stable=True)
    g_rows, g_cols, g_vals = rows[gal][order] - q, cols[gal][order], vals[gal][order]
    col_count = torch.bincount(g_cols, minlength=n)
    col_start = torch.cumsum(col_count, 0) - col_count
    lens = col_count[p_cols]  # pairs of each probe entry
    ends = torch.cumsum(lens, 0)
    # Pair k (numbered globally) of probe entry e meets gallery entry
    # col_start[col of e] + k - (first pair of e) = k + shift[e]; chunks number their pairs
    # from 0 and add their first pair number to shift.
    wide = q * g >= 2**31 or len(rows) >= 2**31
    index = torch.int64 if wide else torch.int32
    shift = col_start[p_cols] - (ends - lens)  # int64: global pair numbers can exceed 2**31
    base = (p_rows * g).to(index)
    g_rows = g_rows.to(index)
    flat = out.view(-1)
    e0, start = 0, 0
    while e0 < len(p_rows):
        # As many probe entries as keep the number of pairs under ``pairs`` (at least one).
        e1 = max(e0 + 1, int(torch.searchsorted(ends, start + pairs, right=True)))
        e1 = min(e1, len(p_rows))
        end = int(ends[e1 - 1])
        if end > start:
            owner = torch.arange(e1 - e0, device=device, dtype=index).repeat_interleave(
                lens[e0:e1], output_size=end - start)  # the probe entry (in the chunk) of each pair
            local_shift = (shift[e0:e1] + start).to(index)
            other = torch.arange(end - start, device=device, dtype=index).add_(local_shift.index_select(0, owner))
            target = base[e0:e1].index_select(0, owner).add_(g_rows.index_select(0, other))
            value = torch.minimum(p_vals[e0:e1].index_select(0, owner), g_vals.index_select(0, other))
            flat.index_add_(0, target, value)
        e0, start = e1, end
    return out


def k_reciprocal(
    blocks: Callable[[Any, Any], torch.Tensor],
    num_probe: int,
    num_total: int,
    *,
    k1: int,
    k2: int,
    lambda_value: float,
    squared: bool,
    probe_gallery: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Re-ranked ``[Q, G]`` distance (float32 on ``device``) over ``N = num_total`` sequences
    ``[probe; gallery]`` with ``Q = num_probe``.

    ``blocks(rows, cols)`` returns the input distance between sequences ``rows`` and ``cols``
    (slices or index tensors) as a float32 tensor; it is called on the upper stripes, plus a few
    small index blocks. ``probe_gallery`` (optional ``[Q, G]``) is the same distance of probe x
    gallery when already known; those blocks are then not recomputed. ``squared``: square the
    input distance first. See the module docstring for the algorithm.
    """
    device = torch.device(device)
    q, n = int(num_probe), int(num_total)
    g = n - q
    if q == 0 or g <= 0:
        return torch.zeros((q, max(g, 0)), dtype=torch.float32, device=device)
    k = min(k1 + 1, n)
    kh = min(_half(k1), n)
    k2c = min(k2, n)
    if k1 + 1 > n:
        warnings.warn(f"rerank: k1 + 1 = {k1 + 1} exceeds the {n} probe and gallery sequences; using {n}",
                      stacklevel=2)
    if k2 > n:
        warnings.warn(f"rerank: k2 = {k2} exceeds the {n} probe and gallery sequences; using {n}", stacklevel=2)
    with torch.no_grad():
        return _k_reciprocal(blocks, q, n, k, kh, k2, k2c, lambda_value, squared, probe_gallery, device)


def _k_reciprocal(blocks, q, n, k, kh, k2, k2c, lambda_value, squared, probe_gallery, device):
    kmax = max(k, k2c)
    m = min(kmax + _MARGIN, n)
    cpu = device.type == "cpu"
    chunk = _CPU_CHUNK_ROWS if cpu else _GPU_CHUNK_ROWS

    cand, row_max, qg = _candidates(blocks, q, n, m, squared, probe_gallery, device)
    scale = torch.where(row_max > 0, row_max, torch.ones((), device=device))
    cand_cols, cand_d = _neighbours(cand, scale, kmax, n)
    del cand
    nbr = cand_cols[:, :kmax]

    rows, cols = _expansion(nbr, k, kh, chunk)
    dist = _entry_distances(rows, cols, cand_cols, cand_d, blocks, squared, scale, chunk)
    del cand_cols, cand_d
    weight = torch.exp(-dist)
    sums = torch.zeros(n, dtype=torch.float32, device=device).index_add_(0, rows, weight)
    vals = weight / sums[rows]
    if k2 != 1:
        rows, cols, vals = _query_expansion(rows, cols, vals, nbr, k2c, n, chunk)

    jaccard = _jaccard_overlap(rows, cols, vals, q, n, _CPU_PAIRS if cpu else _GPU_PAIRS)
    del rows, cols, vals
    jaccard.div_(2.0 - jaccard).neg_().add_(1)  # 1 - m / (2 - m), in place
    qg.div_(scale[:q, None])
    return jaccard.mul_(1 - lambda_value).add_(qg.mul_(lambda_value))


def _check(k1, k2, lambda_value) -> None:
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"stage 'rerank': {name} must be an integer >= 1, got {value!r}")
    if not (0.0 <= float(lambda_value) <= 1.0):
        raise ConfigError(f"stage 'rerank': lambda must be in [0, 1], got {lambda_value!r}")


def rerank_matrix(full, num_probe: int, *, k1: int, k2: int, lambda_value: float, squared: bool,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Re-ranking of a precomputed ``[N, N]`` distance over ``[probe; gallery]`` (tensor or array;
    the result is ``[Q, G]`` float32 on ``device``, default the matrix's). Only its upper stripes
    are read (it is taken to be symmetric)."""
    _check(k1, k2, lambda_value)
    full = torch.as_tensor(np.asarray(full) if not isinstance(full, torch.Tensor) else full)
    device = torch.device(device) if device is not None else full.device
    full = full.to(device=device, dtype=torch.float32)
    if full.ndim != 2 or full.shape[0] != full.shape[1]:
        raise ValueError(f"expected a square [N, N] distance matrix; got {tuple(full.shape)}")
    if not bool(torch.isfinite(full).all()):
        raise ValueError("the distance matrix contains NaN or inf")

    def blocks(rows, cols):
        return full[rows][:, cols]

    return k_reciprocal(blocks, num_probe, full.shape[0], k1=k1, k2=k2, lambda_value=lambda_value,
                        squared=squared, device=device)


def rerank(probe, gallery, metric: str = "euc", *, k1: int, k2: int, lambda_value: float, squared: bool,
           device: str | torch.device | None = None) -> torch.Tensor:
    """Re-ranked ``[Q, G]`` distance between embeddings ``[Q, C, P]`` and ``[G, C, P]`` (arrays or
    tensors) under ``metric`` ("euc", "cos", "flat_euc")."""
    _check(k1, k2, lambda_value)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    probe_t, gallery_t = (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, np.float32))
                          for x in (probe, gallery))
    if device is not None:
        probe_t, gallery_t = probe_t.to(device), gallery_t.to(device)
    data = StageInput(probe_t.float(), gallery_t.float(), metric)
    return apply_rerank(data, k1=k1, k2=k2, squared=squared, distance="protocol",
                        **{"lambda": lambda_value}).distance


def apply_rerank(data: StageInput, *, k1: int, k2: int, squared: bool, distance: str,
                 **params: Any) -> StageInput:
    """The ``rerank`` stage: ``params`` holds ``lambda`` (a Python keyword, hence not named)."""
    if set(params) != {"lambda"}:
        raise ConfigError(f"stage 'rerank': expected parameter 'lambda', got {sorted(params)}")
    lambda_value = params["lambda"]
    _check(k1, k2, lambda_value)
    if distance != "protocol" and distance not in METRICS:
        raise ConfigError(f"stage 'rerank': distance must be 'protocol' or one of {', '.join(METRICS)}; "
                          f"got {distance!r}")
    source = data if distance in ("protocol", data.metric) else replace(data, metric=distance, distance=None)
    known = source.distance if source.distance_source == "metric" else None
    stacked = torch.cat([source.probe, source.gallery])
    final = k_reciprocal(source.distance_blocks(stacked), len(source.probe), len(stacked), k1=k1, k2=k2,
                         lambda_value=lambda_value, squared=squared, probe_gallery=known,
                         device=source.probe.device)
    return with_distance(data, final, "rerank")
