"""Rank-1 intervals: the vectorised stratified bootstrap against a brute-force one, and against the
evaluator itself run on resampled probe sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaitbench import get_protocol
from gaitbench.evaluation.engine import evaluate
from gaitbench.evaluation.intervals import aggregate, rank1_interval
from gaitbench.evaluation.view_matrix import evaluate_view_matrix
from gaitbench.results.tables import interval_line


def brute_aggregate(hits, counted, strata, cells, probes):
    """The aggregate over the (possibly repeated) probe list ``probes``, by plain loops."""
    per_stratum = []
    for s in range(cells.shape[0]):
        accs = []
        for c in range(hits.shape[1]):
            if not cells[s, c]:
                continue
            members = [p for p in probes if strata[p] == s and counted[p, c]]
            if members:
                accs.append(sum(bool(hits[p, c]) for p in members) / len(members))
        if accs:
            per_stratum.append(sum(accs) / len(accs))
    return 100.0 * sum(per_stratum) / len(per_stratum)


def brute_bootstrap(hits, counted, strata, cells, replicates, level, seed):
    """Resample each stratum's probes with replacement (the documented draws: one
    ``integers(0, n_s, (replicates, n_s))`` per stratum in order) and recompute by loops."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(strata == s) for s in range(cells.shape[0])]
    draws = [rng.integers(0, len(m), size=(replicates, len(m))) for m in members]
    values = []
    for b in range(replicates):
        probes = [int(m[i]) for m, d in zip(members, draws) for i in d[b]]
        values.append(brute_aggregate(hits, counted, strata, cells, probes))
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def random_case(seed, n=60, strata=3, cells=4):
    rng = np.random.default_rng(seed)
    hits = rng.random((n, cells)) < 0.7
    counted = rng.random((n, cells)) < 0.9
    st = rng.integers(0, strata, n)
    cellmask = ~np.eye(strata, cells, dtype=bool)  # a probe view's own gallery view left out
    return hits, counted, st, cellmask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_equals_brute_force(seed):
    hits, counted, st, cells = random_case(seed)
    got = rank1_interval(hits, counted, st, cells, replicates=200, level=0.9, seed=seed)
    lo, hi = brute_bootstrap(hits, counted, st, cells, 200, 0.9, seed)
    assert got.low == pytest.approx(lo, abs=1e-9) and got.high == pytest.approx(hi, abs=1e-9)
    all_probes = list(range(len(hits)))
    assert got.estimate == pytest.approx(brute_aggregate(hits, counted, st, cells, all_probes), abs=1e-9)
    assert got.low <= got.estimate <= got.high and got.num_probes == len(hits)


def test_single_stratum_interval_is_about_the_binomial_one():
    """A plain rank-1 over probes: the bootstrap's half-width is the binomial normal one."""
    rng = np.random.default_rng(3)
    hits = rng.random(1200) < 0.6
    iv = rank1_interval(hits, replicates=2000)
    p = hits.mean()
    normal = 100 * 1.96 * math.sqrt(p * (1 - p) / len(hits))
    assert iv.estimate == pytest.approx(100 * p)
    assert iv.half_width == pytest.approx(normal, rel=0.12)


def test_seeded_and_reproducible():
    hits, counted, st, cells = random_case(5)
    a = rank1_interval(hits, counted, st, cells, seed=4)
    assert a == rank1_interval(hits, counted, st, cells, seed=4)
    assert (a.low, a.high) != (rank1_interval(hits, counted, st, cells, seed=5).low,
                               rank1_interval(hits, counted, st, cells, seed=5).high)


def test_chunked_replicates_give_the_same_interval(monkeypatch):
    from gaitbench.evaluation import intervals

    hits, counted, st, cells = random_case(6, n=90)
    whole = rank1_interval(hits, counted, st, cells, replicates=300)
    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 90 * 7)  # 7 replicates per block
    # blocks draw in a different order, so the replicates differ: same estimate, interval close
    chunked = rank1_interval(hits, counted, st, cells, replicates=300)
    assert chunked.estimate == whole.estimate
    assert abs(chunked.low - whole.low) < 3 and abs(chunked.high - whole.high) < 3


def test_errors_name_what_was_wrong():
    with pytest.raises(ValueError, match="no probes"):
        rank1_interval(np.zeros(0, bool))
    with pytest.raises(ValueError, match="level"):
        rank1_interval(np.ones(4, bool), level=95)
    with pytest.raises(ValueError, match="strata"):
        rank1_interval(np.ones(4, bool), strata=[0, 1])


# --------------------------------------------------------------------------- against the evaluator

VIEWS = ("000", "090", "180")
SETS = {"NM": ["nm-05", "nm-06"]}
GALLERY = ["nm-01", "nm-02"]


def casia_like(seed, n_subjects=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_subjects, 6, 2)).astype(np.float32)
    emb, subj, typ, vw = [], [], [], []
    for s in range(n_subjects):
        for t in GALLERY + SETS["NM"]:
            for v in VIEWS:
                if t == "nm-01" and v == "180" and s == 0:
                    continue  # subject 0 lacks one gallery cell: a probe without gallery there
                emb.append(centres[s] + rng.normal(scale=1.1, size=(6, 2)).astype(np.float32))
                subj.append(f"{s:03d}"), typ.append(t), vw.append(v)
    return np.stack(emb), np.array(subj), np.array(typ), np.array(vw)


def view_matrix(emb, subj, typ, vw):
    return evaluate_view_matrix(emb, subj, typ, vw, probe_sets=SETS, gallery_types=GALLERY, view_list=VIEWS,
                                round_cells=None, report_valid=True)


def part_distance(a, b):
    """Mean over parts of the per-part Euclidean distance (the protocols' ``euc``), float64."""
    return np.sqrt(((a[:, None].astype(np.float64) - b[None]) ** 2).sum(2)).mean(2)


def nearest_hits(emb, subj, vw, probe_rows, gallery_rows):
    """``[n_probe, V]``: whether each probe's nearest gallery sequence at each view has its subject."""
    hits = np.zeros((len(probe_rows), len(VIEWS)), bool)
    for j, v in enumerate(VIEWS):
        g = gallery_rows[vw[gallery_rows] == v]
        hits[:, j] = subj[g][part_distance(emb[probe_rows], emb[g]).argmin(1)] == subj[probe_rows]
    return hits


def test_view_matrix_interval_is_the_bootstrap_of_the_evaluator():
    """The statistic the interval resamples is the evaluator's own rank-1: on a resampled probe set
    (drawn probes duplicated as sequences, gallery kept) the evaluator gives what the interval
    module computes from the probes' hits with the resample counts as weights; and the reported
    interval is the brute-force bootstrap of those hits."""
    emb, subj, typ, vw = casia_like(0)
    result = view_matrix(emb, subj, typ, vw)
    iv = result.tables["NM"]["rank1_interval"]
    assert iv["estimate"] == pytest.approx(result.metrics["NM/rank1"], abs=1e-9)
    assert iv["num_probes"] == 8 * 2 * 3 and iv["low"] <= iv["estimate"] <= iv["high"]

    probe_rows = np.flatnonzero(np.isin(typ, SETS["NM"]))
    gallery_rows = np.flatnonzero(np.isin(typ, GALLERY))
    hits = nearest_hits(emb, subj, vw, probe_rows, gallery_rows)
    strata = np.array([VIEWS.index(v) for v in vw[probe_rows]])
    offdiag = ~np.eye(len(VIEWS), dtype=bool)
    ones = np.ones_like(hits)
    lo, hi = brute_bootstrap(hits, ones, strata, offdiag, 1000, 0.95, 0)
    assert (iv["low"], iv["high"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))

    rng = np.random.default_rng(11)
    for _ in range(3):
        picked = np.concatenate([rng.choice(probe_rows[strata == s], size=(strata == s).sum()) for s in range(3)])
        rows = np.concatenate([gallery_rows, picked])
        again = view_matrix(emb[rows], subj[rows], typ[rows], vw[rows])
        weights = np.array([np.sum(picked == r) for r in probe_rows], float)
        assert aggregate(hits, None, strata, offdiag, weights) == pytest.approx(again.metrics["NM/rank1"], abs=1e-9)


def test_retrieval_interval_is_the_bootstrap_of_nearest_neighbour_hits():
    """GREW-like retrieval (probe 02 against gallery 01, a probe without gallery a miss): the
    interval equals the brute-force bootstrap of hits computed with explicit distances."""
    rng = np.random.default_rng(2)
    n_subj = 50
    centres = rng.normal(size=(n_subj, 16, 2)).astype(np.float32)
    subj, typ, emb = [], [], []
    for s in range(n_subj):
        for t in ("01", "02"):
            if t == "01" and s == 3:
                continue  # a probe without gallery
            subj.append(f"{s:05d}"), typ.append(t)
            emb.append(centres[s] + rng.normal(scale=1.3, size=(16, 2)).astype(np.float32))
    emb, subj, typ = np.stack(emb), np.array(subj), np.array(typ)
    vw = np.array(["0"] * len(subj))
    report = evaluate(get_protocol("grew"), emb, subj, typ, vw)
    (name, table), = [(k, t) for k, t in report.tables.items() if isinstance(t, dict) and "rank1_interval" in t]
    p, g = np.flatnonzero(typ == "02"), np.flatnonzero(typ == "01")
    hits = subj[g][part_distance(emb[p], emb[g]).argmin(1)] == subj[p]
    iv = table["rank1_interval"]
    assert iv["estimate"] == pytest.approx(100 * hits.mean())
    assert iv["estimate"] == pytest.approx(table["values"]["rank1"])
    lo, hi = brute_bootstrap(hits[:, None], np.ones((len(hits), 1), bool), np.zeros(len(hits), int),
                             np.ones((1, 1), bool), 1000, 0.95, 0)
    assert (iv["low"], iv["high"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    line = interval_line(report.tables)
    assert line == (f"rank-1 95% interval (percentile bootstrap over probes, 1,000 replicates): {name} "
                    f"{iv['low']:.2f}-{iv['high']:.2f} (+/-{iv['half_width']:.2f}, {n_subj:,} probes)")
