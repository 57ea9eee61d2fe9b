"""Protocol files and the retrieval evaluator: golden cases, cross-checks against the readable
reference implementations, a probe without gallery in each protocol, and bad input."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gaitbench.errors import ConfigError, DataError
from gaitbench.evaluation.engine import evaluate, write_submission
from gaitbench.evaluation.reference import reference_cross_view, reference_part_distance, reference_rank_metrics
from gaitbench.evaluation.retrieval import score_block
from gaitbench import get_protocol
from gaitbench.protocols import Split, load_protocol, resolve_split

BUILTIN = ["casiab", "casiab-st", "casiab-mt", "casiab-crossview", "oumvlp", "grew", "gait3d"]


def test_every_builtin_protocol_loads_with_a_version():
    for name in BUILTIN:
        proto = get_protocol(name)
        assert proto.name == name and proto.version.count(".") == 2


def test_split_variants_and_id_syntax():
    st, mt = get_protocol("casiab-st"), get_protocol("casiab-mt")
    assert st.split.ids("train") == {f"{i:03d}" for i in range(1, 25)}
    assert st.split.ids("test") == {f"{i:03d}" for i in range(25, 125)}
    assert mt.split.ids("train") == {f"{i:03d}" for i in range(1, 63)}
    assert mt.split.ids("test") == {f"{i:03d}" for i in range(63, 125)}
    ou = get_protocol("oumvlp").split
    assert len(ou.ids("train")) == 5153 and len(ou.ids("test")) == 5154
    assert "10307" in ou.ids("test") and "10305" in ou.ids("train") and not ou.ids("train") & ou.ids("test")
    grew = get_protocol("grew").split
    avail = ["00001train", "00002train", "00001", "00042", "probe", "junk"]
    assert grew.ids("train", avail) == {"00001train", "00002train"}
    assert grew.ids("test", avail) == {"00001", "00042", "probe"}
    with pytest.raises(ValueError, match="pattern"):
        grew.ids("train")


def test_gait3d_needs_a_partition(tmp_path):
    proto = get_protocol("gait3d")
    with pytest.raises(DataError, match="--partition.*PROBE_SET"):
        resolve_split(proto, None)
    part = tmp_path / "Gait3D.json"
    part.write_text(json.dumps({"TRAIN_SET": ["0001"], "TEST_SET": ["0002"], "PROBE_SET": ["0002-camid0_videoid1-seq0"]}))
    resolved = resolve_split(proto, None, part)
    assert resolved.split.probe_set == ["0002-camid0_videoid1-seq0"] and resolved.split.ids("test") == {"0002"}

    class Store:  # the dataset's own partition.json is used when none is given
        root = tmp_path

    (tmp_path / "partition.json").write_text(part.read_text())
    assert resolve_split(proto, Store()).split.probe_set == ["0002-camid0_videoid1-seq0"]


def test_protocol_validation_errors(tmp_path):
    text = get_protocol("gait3d").source
    body = open(text).read()
    bad = tmp_path / "bad.toml"
    bad.write_text(body.replace("ranks = [1, 5, 10]", "ranks = [1, 5, 100]"))
    with pytest.raises(ConfigError, match="ranks"):
        load_protocol(bad)
    bad.write_text(body.replace('missing_gallery = "exclude"', 'missing_gallery = "drop"'))
    with pytest.raises(ConfigError, match="missing_gallery"):
        load_protocol(bad)
    bad.write_text(body.replace("minp = true", "minp = true\nmnip = true"))
    with pytest.raises(ConfigError, match="did you mean 'minp'"):
        load_protocol(bad)


# ---------------------------------------------------------------------------------------- golden
def _line(positions):
    """1-D embeddings: the distance between two items is |x - y|."""
    return np.asarray(positions, np.float32).reshape(-1, 1, 1)


def _gait3d(probe_keys):
    proto = get_protocol("gait3d")
    return replace(proto, split=Split(partition="dataset", probe_set=list(probe_keys), source="test"))


def test_ap_and_inp_on_a_five_item_ranking():
    # gallery a b a c b at 1..5; probe b at 0 hits at ranks 2 and 5; probe a at 10 sees b b c a a
    # (gallery placed so that a's ranking is reversed); probe z has no gallery and is dropped.
    gal_subj = ["a", "b", "a", "c", "b"]
    emb = _line([0, 10, 0.5] + [1, 2, 3, 4, 5])  # probe b, probe a, probe z
    subj = ["b", "a", "z"] + gal_subj
    types = ["p", "p", "p"] + ["g"] * 5
    views = [f"v{i}" for i in range(8)]
    # probe a at 10: distances 9, 8, 7, 6, 5 -> order c? no: order by distance = b(5), c(4)... compute:
    report = evaluate(_gait3d(["b-p-v0", "a-p-v1", "z-p-v2"]), emb, subj, types, views)
    # probe b: AP = (1/2 + 2/5) / 2 = 0.45, INP = 2/5
    # probe a at 10: ranking b(5) c(4) a(3) b(2) a(1): hits at 3 and 5: AP = (1/3 + 2/5)/2, INP = 2/5
    ap_a, ap_b = (1 / 3 + 2 / 5) / 2, 0.45
    assert report.metrics["mAP"] == pytest.approx(100 * (ap_a + ap_b) / 2)
    assert report.metrics["mINP"] == pytest.approx(100 * 0.4)
    assert report.metrics["rank1"] == 0.0 and report.metrics["rank5"] == 100.0
    assert report.tables["probe"]["num_probes"] == 3 and report.tables["probe"]["num_valid"] == 2
    assert report.tables["probe"]["cmc"] == [0.0, 50.0, 100.0, 100.0, 100.0]


def test_notes_worked_example_exactly():
    # opengait-notes 1.6: probe a with ranking b, b, c, a, a gives AP 0.325 and INP 0.4
    dist = np.array([[1, 2, 3, 4, 5]], np.float32)
    labels = np.array(["b", "b", "c", "a", "a"])
    cmc, mAP, mINP, n = reference_rank_metrics(dist, ["a"], labels)
    assert (mAP, mINP, n) == (pytest.approx(0.325), pytest.approx(0.4), 1)
    out = score_block(torch.from_numpy(dist), torch.tensor([0]), torch.tensor([1, 1, 2, 0, 0]), ranking=True)
    assert float(out["ap"][0]) == pytest.approx(0.325) and float(out["inp"][0]) == pytest.approx(0.4)
    assert int(out["first"][0]) == 3


@pytest.mark.parametrize("ties", [False, True])
def test_retrieval_matches_the_reference_on_random_galleries(ties):
    rng = np.random.default_rng(3 if ties else 4)
    n_subj, n = 30, 240
    subj = rng.integers(0, n_subj, n).astype(str)
    emb = rng.normal(size=(n, 8, 4)).astype(np.float32)
    if ties:  # duplicated embeddings give exactly tied distances
        emb[n // 2:] = emb[: n - n // 2]
    probes = rng.choice(n, 60, replace=False)
    keys = [f"{subj[i]}-t{i}-v{i}" for i in range(n)]
    report = evaluate(_gait3d([keys[i] for i in probes]), emb, subj, [f"t{i}" for i in range(n)],
                      [f"v{i}" for i in range(n)])
    gal = np.setdiff1d(np.arange(n), probes)
    probes = np.sort(probes)
    dist = reference_part_distance(emb[probes], emb[gal])
    cmc, mAP, mINP, _ = reference_rank_metrics(dist, subj[probes], subj[gal])
    assert report.metrics["rank1"] == pytest.approx(100 * cmc[0])
    assert report.metrics["rank5"] == pytest.approx(100 * cmc[4])
    assert report.metrics["rank10"] == pytest.approx(100 * cmc[9])
    assert report.metrics["mAP"] == pytest.approx(100 * mAP, abs=1e-6)
    assert report.metrics["mINP"] == pytest.approx(100 * mINP, abs=1e-6)


def test_rank_only_path_equals_the_sorting_path():
    rng = np.random.default_rng(0)
    dist = torch.from_numpy(rng.integers(0, 5, (50, 40)).astype(np.float32))  # many ties
    ps, gs = torch.from_numpy(rng.integers(0, 6, 50)), torch.from_numpy(rng.integers(0, 6, 40))
    excl = torch.from_numpy(rng.random((50, 40)) < 0.1)
    fast = score_block(dist, ps, gs, ranking=False, excluded=excl)
    full = score_block(dist, ps, gs, ranking=True, excluded=excl)
    assert torch.equal(fast["first"], full["first"]) and torch.equal(fast["positives"], full["positives"])


def test_cross_view_gallery_matches_the_reference():
    rng = np.random.default_rng(5)
    views = ["000", "018", "036", "054", "072", "090", "108", "126", "144", "162", "180"]
    rows = [(f"{s:03d}", t, v) for s in range(75, 83) for t in ["nm-01", "nm-02", "bg-01", "bg-02", "cl-01", "cl-02"]
            for v in views]
    subj, typ, vw = (np.array(c) for c in zip(*rows))
    emb = rng.normal(size=(len(rows), 16, 2)).astype(np.float32)
    emb += 1.5 * rng.normal(size=(8, 1, 16, 2)).astype(np.float32).repeat(66, 0).reshape(-1, 16, 2)  # subject signal
    report = evaluate(get_protocol("casiab-crossview"), emb, subj, typ, vw)
    gal = np.flatnonzero(np.isin(typ, ["nm-02", "bg-02", "cl-02"]))
    for name, ptype in (("NM", "nm-01"), ("BG", "bg-01"), ("CL", "cl-01")):
        p = np.flatnonzero(typ == ptype)
        dist = reference_part_distance(emb[p], emb[gal])
        acc, mAP = reference_cross_view(dist, subj[p], subj[gal], vw[p], vw[gal])
        assert report.metrics[f"{name}/rank1"] == pytest.approx(acc)
        assert report.metrics[f"{name}/mAP"] == pytest.approx(mAP)
    assert set(report.tables["NM"]["per_probe_view"]) == set(views)


# ------------------------------------------------------------------ probes without gallery
def _oumvlp_like(missing_gallery_at=None):
    views = get_protocol("oumvlp").evaluation.views
    rows = [(f"{s:05d}", t, v) for s in (2, 4, 6) for t in ("00", "01") for v in views]
    if missing_gallery_at:
        rows.remove(missing_gallery_at)
    subj, typ, vw = (np.array(c) for c in zip(*rows))
    emb = np.stack([np.full((4, 1), int(s), np.float32) for s in subj])  # perfect features
    return emb, subj, typ, vw


def test_oumvlp_rank1_counts_a_missing_gallery_as_a_miss_and_rank1_valid_excludes_it():
    proto = get_protocol("oumvlp")
    report = evaluate(proto, *_oumvlp_like(("00006", "01", "030")))
    assert set(report.metrics) == {"rank1", "rank1_valid"}
    assert report.metrics["rank1_valid"] == 100.0
    # probes of 00006 at every view except 030 miss in the 030 column: 13 rows lose 1/3 of one cell
    expected_rows = [(12 * 100 + 66.67) / 13] * 13 + [100.0]
    assert report.metrics["rank1"] == pytest.approx(np.mean(expected_rows))
    from gaitbench.results.tables import report_table

    table = report_table(report)  # both conventions are printed, each with its mean
    assert "| NM (valid) |" in table and f"{report.metrics['rank1']:.2f}" in table and "100.00" in table


def test_grew_counts_a_probe_without_gallery_as_a_miss():
    proto = get_protocol("grew")
    subj = np.array(["00001", "00001", "00002", "00002", "00003"])
    typ = np.array(["01", "02", "01", "02", "02"])
    emb = _line([1, 1, 5, 5, 3])
    report = evaluate(proto, emb, subj, typ, ["a", "b", "c", "d", "e"])
    assert report.metrics["rank1"] == pytest.approx(200 / 3) and report.metrics["rank20"] == pytest.approx(200 / 3)
    assert set(report.metrics) == {"rank1", "rank5", "rank10", "rank20"}


def test_gait3d_excludes_a_probe_without_gallery():
    subj = ["a", "a", "b", "b", "z"]
    report = evaluate(_gait3d(["a-t-0", "b-t-2", "z-t-4"]), _line([0, 0.1, 5, 5.1, 9]), subj, ["t"] * 5,
                      ["0", "1", "2", "3", "4"])
    assert report.metrics["rank1"] == 100.0 and report.tables["probe"]["num_valid"] == 2


def test_casiab_probe_without_gallery_at_a_view_is_a_miss():
    proto = get_protocol("casiab")
    views = proto.evaluation.views
    types = ["nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02"]
    rows = [(s, t, v) for s in ("075", "076") for t in types for v in views if not (s == "076" and t.startswith("nm-0") and t <= "nm-04" and v == "090")]
    subj, typ, vw = (np.array(c) for c in zip(*rows))
    emb = np.stack([np.full((2, 1), int(s), np.float32) for s in subj])
    report = evaluate(proto, emb, subj, typ, vw)
    matrix = np.array(report.tables["NM"]["matrix"])
    assert matrix[0, views.index("090")] == 50.0 and matrix[0, 0] == 100.0


# ---------------------------------------------------------------------------- submission
def test_grew_submission_keeps_ids_as_strings_without_repeats(tmp_path):
    proto = get_protocol("grew")
    subj = ["00001", "00001", "00020", "00020", "00300", "probe", "probe"]
    typ = ["01", "02", "01", "02", "01", "03", "03"]
    views = ["s1", "s2", "s3", "s4", "s5", "vidA", "vidB"]
    emb = _line([0, 0.1, 1, 1.1, 2, 0.05, 1.9])
    info = write_submission(proto, emb, subj, typ, views, tmp_path / "sub.csv")
    rows = list(csv.reader(open(tmp_path / "sub.csv")))
    assert rows[0] == ["videoId"] + [f"rank{i}" for i in range(1, 21)]
    assert rows[1][:4] == ["vidA", "00001", "00020", "00300"] and rows[2][:4] == ["vidB", "00300", "00020", "00001"]
    assert rows[1][4:] == [""] * 17  # fewer identities than 20: the rest left empty
    assert info["probes"] == 2 and info["gallery"] == 5
    repeated = replace(proto, evaluation=replace(proto.evaluation,
                                                 submission=replace(proto.evaluation.submission, unique_ids=False)))
    write_submission(repeated, emb, subj, typ, views, tmp_path / "ref.csv")
    assert list(csv.reader(open(tmp_path / "ref.csv")))[1][1:4] == ["00001", "00001", "00020"]


def test_submission_without_probes_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no unlabelled probes"):
        write_submission(get_protocol("grew"), _line([0, 1]), ["00001", "00001"], ["01", "02"], ["a", "b"],
                         tmp_path / "x.csv")
    with pytest.raises(DataError, match="defines no submission"):
        write_submission(get_protocol("gait3d"), _line([0]), ["a"], ["t"], ["v"], tmp_path / "x.csv")


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_name_what_is_wrong():
    proto = get_protocol("grew")
    subj, typ = np.array(["00001", "00001"]), np.array(["01", "02"])
    emb = _line([0, 1])
    with pytest.raises(DataError, match="differ in length"):
        evaluate(proto, emb, subj, typ, ["a"])
    nan = emb.copy()
    nan[1] = np.nan
    with pytest.raises(DataError, match="NaN.*00001/02/b"):
        evaluate(proto, nan, subj, typ, ["a", "b"])
    with pytest.raises(DataError, match="no probes for probe set 'local'.*types"):
        evaluate(proto, emb, subj, np.array(["01", "01"]), ["a", "b"])
    with pytest.raises(DataError, match="gallery is empty"):
        evaluate(proto, emb, subj, np.array(["02", "02"]), ["a", "b"])
    with pytest.raises(DataError, match="no embeddings"):
        evaluate(proto, np.zeros((0, 1, 1), np.float32), [], [], [])
    with pytest.raises(DataError, match="PROBE_SET sequences"):
        evaluate(_gait3d(["x-y-z"]), emb, subj, typ, ["a", "b"])
    with pytest.raises(DataError, match=r"no probes at view\(s\) \['018'"):
        cv = get_protocol("casiab-crossview")
        evaluate(cv, _line([0, 1, 2, 3]), ["075"] * 4, ["nm-01", "nm-02", "bg-01", "cl-01"], ["000"] * 4)
