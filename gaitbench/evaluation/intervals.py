"""How sure a rank-1 figure is: percentile bootstrap intervals over probes.

Every rank-1 accuracy gaitbench reports is, before any rounding, an aggregate of per-probe hits:

    rank1 = 100 * mean over strata s of ( mean over the cells c of s of  hits(s, c) / counted(s, c) )

where a *stratum* is a probe view for the cross-view protocols (CASIA-B, OU-MVLP: the mean over
probe views first) and the whole probe set otherwise (Gait3D, GREW, HID), a *cell* is a gallery view
(its identical view excluded where the protocol says so) or the single gallery, ``hits(s, c)`` the
number of the stratum's probes whose nearest gallery item in cell ``c`` has their subject and
``counted(s, c)`` the probes that count in that cell (all of them, or only those whose subject has a
gallery sequence there, by the protocol's ``missing_gallery`` rule). Cells without a counted probe
are skipped, as the evaluator does.

The interval resamples the probes of each stratum with replacement (a stratified bootstrap: the
number of probes per view is fixed by the protocol, not random) and recomputes that aggregate;
the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the replicates
(Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13). Probes are the unit of
resampling because they are what a larger test set would add; the gallery is held fixed.

The per-cell rounding some evaluators apply (CASIA-B's two decimals) is not applied to the
replicates: the interval describes the unrounded statistic, which differs from the rounded
headline by at most the rounding step.

The computation is vectorised: a replicate's resampled probe counts ``w`` turn every cell's hits
and counted probes into two matrix products, so 1,000 replicates over a CASIA-B-sized probe set
take milliseconds, and replicates are processed in chunks so memory stays bounded for OU-MVLP-sized
probe sets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

REPLICATES = 1000
LEVEL = 0.95
SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # resample indices held at once (x 8 bytes)


@dataclass(frozen=True)
class Interval:
    """A rank-1 figure (percent, unrounded) with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    num_probes: int
    level: float = LEVEL
    replicates: int = REPLICATES
    seed: int = SEED
    method: str = "percentile bootstrap over probes"

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return {**asdict(self), "half_width": self.half_width}


def _as_inputs(hits, counted, strata, cells):
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim == 1:
        hits = hits[:, None]
    if hits.ndim != 2:
        raise ValueError(f"hits must be [probes] or [probes, cells]; got shape {hits.shape}")
    n, c = hits.shape
    counted = np.ones_like(hits) if counted is None else np.broadcast_to(np.asarray(counted, dtype=bool).reshape(
        n, -1), hits.shape)
    strata = np.zeros(n, np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
    if strata.shape != (n,):
        raise ValueError(f"strata must give one stratum per probe ({n}); got shape {strata.shape}")
    if n and strata.min() < 0:
        raise ValueError("strata must be non-negative stratum numbers")
    n_strata = int(strata.max()) + 1 if n else 0
    cells = np.ones((n_strata, c), bool) if cells is None else np.asarray(cells, dtype=bool)
    if cells.shape != (n_strata, c):
        raise ValueError(f"cells must be [strata, cells] = {(n_strata, c)}; got shape {cells.shape}")
    return hits, counted, strata, cells


def aggregate(hits, counted=None, strata=None, cells=None, weights=None) -> float:
    """The rank-1 aggregate (percent) of the module docstring, with optional per-probe ``weights``
    (resample counts); NaN when no cell has a counted probe."""
    hits, counted, strata, cells = _as_inputs(hits, counted, strata, cells)
    w = np.ones(len(hits)) if weights is None else np.asarray(weights, dtype=float)
    return float(_aggregate_batch(hits, counted, strata, cells, w[None, :])[0])


def _aggregate_batch(hits, counted, strata, cells, w) -> np.ndarray:
    """``w`` ``[B, n]`` probe weights -> ``[B]`` aggregates."""
    rows = []
    for s in range(cells.shape[0]):
        sel = strata == s
        ws = w[:, sel]
        h = ws @ (hits[sel] & counted[sel]).astype(float)  # [B, c]
        d = ws @ counted[sel].astype(float)
        use = (d > 0) & cells[s][None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(use, h / np.where(d > 0, d, 1), 0.0)
        n_use = use.sum(1)
        rows.append(np.where(n_use > 0, acc.sum(1) / np.maximum(n_use, 1), np.nan))
    per_stratum = np.stack(rows, 1)  # [B, S]
    ok = ~np.isnan(per_stratum)
    with np.errstate(invalid="ignore"):
        return 100.0 * np.where(ok.any(1), np.nansum(per_stratum, 1) / np.maximum(ok.sum(1), 1), np.nan)


def resample_indices(rng: np.random.Generator, strata: np.ndarray, replicates: int):
    """The bootstrap draws, in the order :func:`rank1_interval` makes them: for each block of
    replicates and each stratum in order, ``rng.integers(0, n_s, (block, n_s))`` indices into the
    stratum's probes (in their input order). Yields ``(start, stop, {stratum: indices})``."""
    n_strata = int(strata.max()) + 1 if len(strata) else 0
    sizes = np.bincount(strata, minlength=n_strata)
    block = max(1, min(replicates, _CHUNK_ELEMENTS // max(1, len(strata))))
    for b0 in range(0, replicates, block):
        b1 = min(replicates, b0 + block)
        yield b0, b1, {s: rng.integers(0, sizes[s], size=(b1 - b0, sizes[s])) for s in range(n_strata) if sizes[s]}


def rank1_interval(hits, counted=None, strata=None, cells=None, *, replicates: int = REPLICATES,
                   level: float = LEVEL, seed: int = SEED) -> Interval:
    """The rank-1 aggregate of ``hits`` ``[n]`` or ``[n, cells]`` (bool) with a stratified percentile
    bootstrap interval.

    ``counted``: which (probe, cell) pairs count (default all); ``strata``: each probe's stratum
    (default one); ``cells``: ``[strata, cells]`` bool, the cells a stratum's mean runs over
    (default all). ``seed`` makes the interval reproducible."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1; got {replicates}")
    hits, counted, strata, cells = _as_inputs(hits, counted, strata, cells)
    n = len(hits)
    if n == 0:
        raise ValueError("no probes: a rank-1 interval needs at least one")
    estimate = float(_aggregate_batch(hits, counted, strata, cells, np.ones((1, n)))[0])
    rng = np.random.default_rng(seed)
    positions = {s: np.flatnonzero(strata == s) for s in range(cells.shape[0])}
    values = np.empty(replicates)
    for b0, b1, draws in resample_indices(rng, strata, replicates):
        offsets = np.arange(b1 - b0)[:, None] * n
        flat = np.concatenate([(offsets + positions[s][idx]).ravel() for s, idx in draws.items()])
        w = np.bincount(flat, minlength=(b1 - b0) * n).reshape(b1 - b0, n).astype(float)
        values[b0:b1] = _aggregate_batch(hits, counted, strata, cells, w)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("no replicate has a counted probe")
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return Interval(estimate=estimate, low=float(low), high=float(high), num_probes=n, level=level,
                    replicates=replicates, seed=seed)
