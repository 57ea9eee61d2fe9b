"""Verification figures (TAR@FAR, EER, ROC) and CMC curves: the fast block-wise code against the
readable pair-by-pair / probe-by-probe references, on small cases with ties; the option's plumbing
(``--set verification=true``) and its error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitbench.errors import ConfigError, DataError
from gaitbench.evaluation.reference import reference_rank_metrics, reference_verification
from gaitbench.evaluation.source import DistanceSource
from gaitbench.evaluation.verification import far_label, verify


class FixedDistances(DistanceSource):
    """A distance source handing out a given matrix (rows = probes, columns = gallery) in small
    blocks, so the two-pass block code is exercised across block boundaries."""

    def __init__(self, dist, rows_per_block=3):
        super().__init__(np.zeros((1, 1, 1), np.float32))
        self.dist = np.asarray(dist, np.float32)
        self.step = rows_per_block
        self.n_probe = len(self.dist)  # rows 0..n_probe-1 are the probes, the gallery follows

    def blocks(self, p_idx, g_idx, bytes_per_cell=4, name=""):
        import torch

        for r0 in range(0, len(p_idx), self.step):
            r1 = min(len(p_idx), r0 + self.step)
            yield r0, r1, torch.from_numpy(self.dist[np.ix_(p_idx[r0:r1], g_idx - self.n_probe)])


def _case(seed, n_probe=40, n_gallery=60, subjects=12, levels=None):
    rng = np.random.default_rng(seed)
    p_subj = rng.integers(0, subjects, n_probe)
    g_subj = rng.integers(0, subjects, n_gallery)
    dist = rng.random((n_probe, n_gallery)) + 0.6 * (p_subj[:, None] != g_subj[None, :])
    if levels:  # coarse values: many ties between genuine and impostor distances
        dist = np.round(dist * levels) / levels
    return dist.astype(np.float32), p_subj, g_subj


def _fast(dist, p_subj, g_subj, rows_per_block=3, excluded=None, fars=(1e-2, 1e-3, 1e-4)):
    n_p, n_g = dist.shape
    source = FixedDistances(dist, rows_per_block)
    subj = np.r_[p_subj, g_subj]
    return verify(source, np.arange(n_p), np.arange(n_p, n_p + n_g), subj, excluded=excluded, fars=fars)


@pytest.mark.parametrize("seed,levels", [(0, None), (1, 8), (2, 20), (3, 3)])
def test_tar_at_far_and_eer_equal_brute_force(seed, levels):
    dist, p_subj, g_subj = _case(seed, levels=levels)
    fars = (0.3, 0.1, 0.05, 1e-2, 1e-3, 1e-4)
    fast = _fast(dist, p_subj, g_subj, fars=fars)
    tars, eer = reference_verification(dist, p_subj, g_subj, fars=fars)
    assert fast.eer == pytest.approx(eer, abs=1e-12)
    for f in fars:
        if tars[f] is None:
            assert fast.tar[f] is None
        else:
            assert fast.tar[f] == pytest.approx(tars[f], abs=1e-12), f
    assert fast.genuine + fast.impostors == dist.size
    # FAR 1e-3 and 1e-4 need 1,000 / 10,000 impostors: with ~2,200 only the first is resolvable
    assert fast.tar[1e-3] is not None and fast.tar[1e-4] is None
    assert any("10,000 impostor pairs" in n for n in fast.notes)


def test_excluded_pairs_are_not_pairs():
    dist, p_subj, g_subj = _case(5, levels=10)
    rng = np.random.default_rng(9)
    mask = rng.random(dist.shape) < 0.3

    def excluded(p_rows, g_rows):
        import torch

        return torch.from_numpy(mask[np.ix_(p_rows, g_rows - dist.shape[0])])

    fast = _fast(dist, p_subj, g_subj, excluded=excluded, fars=(0.1, 1e-2))
    pairs = {(q, j) for q, j in zip(*np.nonzero(mask))}
    tars, eer = reference_verification(dist, p_subj, g_subj, fars=(0.1, 1e-2), excluded=pairs)
    assert fast.genuine + fast.impostors == dist.size - mask.sum()
    assert fast.eer == pytest.approx(eer, abs=1e-12)
    assert fast.tar[0.1] == pytest.approx(tars[0.1], abs=1e-12) and fast.tar[1e-2] == pytest.approx(tars[1e-2])


def test_hand_computed_case():
    # probes a, b; gallery a, b, c, c: genuine (a,a)=0.1, (b,b)=0.5; impostors 0.2 0.3 0.4 0.6 0.7 0.8
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.6, 0.5, 0.7, 0.8]], np.float32)
    fast = _fast(dist, np.array([0, 1]), np.array([0, 1, 2, 2]), fars=(0.5, 0.2))
    # FAR <= 1/6 (0.2 * 6 = 1.2 -> 1 impostor): accept d < 0.3 -> TAR 1/2; FAR <= 3/6: d < 0.6 -> TAR 1
    assert fast.tar == {0.2: 0.5, 0.5: 1.0}
    # t = 0.1: FAR 0, FRR 1/2; t = 0.5: FAR 3/6, FRR 0 -> EER 1/2
    assert fast.eer == pytest.approx(0.5) and fast.eer_threshold == pytest.approx(0.1)
    assert list(fast.roc_far) == pytest.approx([0.0, 0.5]) and list(fast.roc_tar) == pytest.approx([0.5, 1.0])
    assert far_label(1e-3) == "TAR@FAR=1e-3"


def test_no_genuine_pairs_is_an_error():
    dist = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="needs genuine and impostor pairs"):
        _fast(dist, np.array([0, 0]), np.array([1, 2, 3]))


def test_roc_is_thinned_and_monotone():
    dist, p_subj, g_subj = _case(4, n_probe=200, n_gallery=150, subjects=40)
    fast = _fast(dist, p_subj, g_subj, rows_per_block=17)
    assert 2 <= len(fast.roc_far) <= 200
    assert (np.diff(fast.roc_far) > 0).all() and (np.diff(fast.roc_tar) >= 0).all()


# --- the evaluation engine: CMC and verification through the protocols --------------------------

def _labelled_embeddings(seed=0, subjects=8):
    rng = np.random.default_rng(seed)
    subj, typ, view, emb = [], [], [], []
    centres = rng.normal(size=(subjects, 16))
    for s in range(subjects):
        for t in ("nm-01", "nm-02", "bg-01", "bg-02", "cl-01", "cl-02"):
            for v in ("000", "090", "180"):
                subj.append(f"{s:03d}")
                typ.append(t)
                view.append(v)
                emb.append(centres[s] + 1.2 * rng.normal(size=16))
    return np.asarray(emb, np.float32)[:, :, None], np.array(subj), np.array(typ), np.array(view)


def _crossview_protocol():
    from gaitbench.protocols import resolve_protocol
    from gaitbench.plugins import get_plugins

    proto = resolve_protocol("casiab-crossview", get_plugins().protocols())
    return proto.with_evaluation(views=["000", "090", "180"])


def test_cross_view_cmc_is_the_mean_of_per_view_reference_curves():
    from gaitbench.evaluation.engine import evaluate

    emb, subj, typ, view = _labelled_embeddings()
    # fewer probes at view 000: the mean of the per-view curves is then not the mean over probes
    keep = ~((view == "000") & np.char.endswith(typ, "-01") & np.isin(subj, ["000", "001", "002", "003", "004"]))
    emb, subj, typ, view = emb[keep], subj[keep], typ[keep], view[keep]
    proto = _crossview_protocol()
    report = evaluate(proto, emb, subj, typ, view)
    ev = proto.evaluation
    gallery = np.isin(typ, ev.gallery_types)
    flat = emb[:, :, 0].astype(np.float64)
    for name, types in ev.probe_sets.items():
        probes = np.isin(typ, types)
        curves = []
        for v in ev.views:
            q_idx = np.flatnonzero(probes & (view == v))
            # the cross-view gallery: the probe's own subject at its own view removed, per probe
            rows = []
            for q in q_idx:
                keep = np.flatnonzero(gallery & ~((subj == subj[q]) & (view == v)))
                d = np.sqrt(((flat[keep] - flat[q]) ** 2).sum(1))
                cmc, _, _, _ = reference_rank_metrics(d[None, :], [subj[q]], list(subj[keep]), max_rank=50)
                rows.append(cmc)
            width = min(len(r) for r in rows)
            curves.append(np.mean([r[:width] for r in rows], axis=0) * 100)
        expected = np.mean(curves, axis=0)
        got = np.asarray(report.tables[name]["cmc"])
        assert got[:len(expected)] == pytest.approx(expected, abs=1e-3)
        assert got[0] == pytest.approx(report.metrics[f"{name}/rank1"], abs=0.01)


def test_verification_in_the_report_and_its_pairs():
    from gaitbench.evaluation.engine import evaluate

    emb, subj, typ, view = _labelled_embeddings(1)
    proto = _crossview_protocol()
    plain = evaluate(proto, emb, subj, typ, view)
    report = evaluate(proto, emb, subj, typ, view, verification=True)
    assert {k: v for k, v in report.metrics.items() if k in plain.metrics} == plain.metrics
    ev = proto.evaluation
    flat = emb[:, :, 0].astype(np.float64)
    gallery = np.flatnonzero(np.isin(typ, ev.gallery_types))
    for name, types in ev.probe_sets.items():
        probes = np.flatnonzero(np.isin(typ, types))
        d = np.sqrt(((flat[probes][:, None] - flat[gallery][None]) ** 2).sum(-1))
        excluded = {(i, j) for i, q in enumerate(probes) for j, g in enumerate(gallery)
                    if subj[q] == subj[g] and view[q] == view[g]}
        tars, eer = reference_verification(d, subj[probes], subj[gallery], excluded=excluded)
        table = report.tables[name]["verification"]
        assert report.metrics[f"{name}/EER"] == pytest.approx(100 * eer, abs=1e-6)
        assert report.metrics[f"{name}/TAR@FAR=1e-2"] == pytest.approx(100 * tars[1e-2], abs=1e-6)
        assert f"{name}/TAR@FAR=1e-4" not in report.metrics and table["tar_at_far"]["TAR@FAR=1e-4"] is None
        assert table["genuine_pairs"] + table["impostor_pairs"] == len(probes) * len(gallery) - len(excluded)
        assert len(table["roc"]["far"]) == len(table["roc"]["tar"]) >= 2
    assert "same subject at the same view excluded" in report.tables["settings"]["verification"]["pairs"]
    json.dumps(report.tables)  # JSON-able as it is written


def test_verification_on_identification_protocol_is_refused():
    from gaitbench.evaluation.engine import evaluate
    from gaitbench.plugins import get_plugins
    from gaitbench.protocols import resolve_protocol

    proto = resolve_protocol("hid", get_plugins().protocols())
    emb, subj, typ, view = _labelled_embeddings(2, subjects=4)
    subj = subj.copy()
    subj[typ == "cl-02"] = "probe"
    with pytest.raises(DataError, match="verification needs probes with known subjects"):
        evaluate(proto, emb, subj, typ, view, verification=True)


def test_set_verification_option():
    from gaitbench.evaluation.pipeline import split_overrides

    changes, _ = split_overrides(["verification=true"])
    assert changes == {"verification": True}
    with pytest.raises(ConfigError, match="verification takes true or false"):
        split_overrides(["verification=sometimes"])
    with pytest.raises(ConfigError, match="did you mean 'verification'"):
        split_overrides(["verificaton=true"])


def test_evaluate_cli_verification_in_table_and_json(tmp_path):
    from gaitbench.evaluation.embeddings import write_embeddings
    import pandas as pd

    from .conftest import run_cli

    rng = np.random.default_rng(3)
    views = [f"{v:03d}" for v in range(0, 181, 18)]
    labels = pd.DataFrame([(f"{s:03d}", t, v) for s in range(75, 81) for t in ("nm-01", "nm-02", "bg-01", "bg-02",
                                                                               "cl-01", "cl-02") for v in views],
                          columns=["subject", "type", "view"])
    centres = rng.normal(size=(6, 16))
    codes = labels["subject"].astype(int).to_numpy() - 75
    emb = (centres[codes] + rng.normal(size=(len(labels), 16))).astype(np.float32)[:, :, None]
    path = write_embeddings(tmp_path / "emb.npz", emb, labels, protocol="casiab-crossview", synthetic=True)
    out = tmp_path / "report.json"
    proc = run_cli("evaluate", "--protocol", "casiab-crossview", "--embeddings", str(path),
                   "--set", "verification=true", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "verification (%):" in proc.stdout and "TAR@FAR=1e-2" in proc.stdout
    data = json.loads(out.read_text())
    assert {"NM/EER", "NM/TAR@FAR=1e-2", "CL/EER"} <= set(data["metrics"])
    assert data["tables"]["NM"]["verification"]["roc"]["far"][0] == 0.0
    plain = run_cli("evaluate", "--protocol", "casiab-crossview", "--embeddings", str(path))
    assert plain.returncode == 0 and "verification" not in plain.stdout
    bad = run_cli("evaluate", "--protocol", "casiab-crossview", "--embeddings", str(path), "--set", "verification=yes")
    assert bad.returncode != 0 and "verification takes true or false" in bad.stderr and "Traceback" not in bad.stderr


def test_identification_cmc_against_the_reference():
    from gaitbench.evaluation.engine import evaluate
    from gaitbench.plugins import get_plugins
    from gaitbench.protocols import resolve_protocol

    proto = resolve_protocol("hid", get_plugins().protocols())
    emb, subj, typ, view = _labelled_embeddings(4, subjects=10)
    probes = np.flatnonzero(typ == "cl-02")
    true = subj[probes].copy()
    true[:3] = "999"  # three probes whose subject has no gallery: misses at every rank
    videos = np.array([f"v{i:04d}" for i in range(len(probes))])
    subj, typ = subj.astype("<U16"), typ.astype("<U16")
    subj[probes], typ[probes] = "probe", videos
    report = evaluate(proto, emb, subj, typ, view, truth=dict(zip(videos.tolist(), true.tolist())))
    gallery = np.flatnonzero(subj != "probe")
    flat = emb[:, :, 0].astype(np.float64)
    d = np.sqrt(((flat[probes][:, None] - flat[gallery][None]) ** 2).sum(-1))
    cmc, _, _, valid = reference_rank_metrics(d, list(true), list(subj[gallery]), max_rank=50)
    expected = 100 * cmc * valid / len(probes)  # the reference skips probes without gallery; here they miss
    got = report.tables["probe"]["cmc"]
    assert got == pytest.approx(list(expected), abs=1e-3)
    assert got[0] == pytest.approx(report.metrics["rank1"])
