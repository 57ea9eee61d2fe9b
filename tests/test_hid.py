"""The HID protocol (CASIA-E competitions): identification of unlabelled probes, the submission
file, scoring against a truth file, the synthetic HID layout, data check, pretreatment of the raw
HID tree, and the protocol end to end (run, then evaluate the saved embeddings)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from gaitbench.data.synthetic import SynthSpec, generate, plan_dataset
from gaitbench.errors import DataError
from gaitbench.evaluation.engine import evaluate
from gaitbench.evaluation.identification import read_truth, write_predictions
from gaitbench import get_protocol


def hid():
    return get_protocol("hid")


def labelled(subjects, types, views=None):
    return np.asarray(subjects), np.asarray(types), np.asarray(views or ["default"] * len(subjects))


# --------------------------------------------------------------------------- identification


def toy():
    """Gallery: subject a at 0, b at 10 (two sequences each); probes (video ids in `type`) at
    1 (-> a), 9 (-> b), 4.9 (-> a) and 6 (-> b)."""
    emb = np.array([[0.0], [0.5], [10.0], [10.5], [1.0], [9.0], [4.9], [6.0]], np.float32)[:, :, None]
    subj, typ, vw = labelled(["a", "a", "b", "b", "probe", "probe", "probe", "probe"],
                             ["00", "01", "00", "01", "v1", "v2", "v3", "v4"])
    return emb, subj, typ, vw


def test_each_probe_gets_the_subject_of_its_nearest_gallery_sequence():
    emb, subj, typ, vw = toy()
    report = evaluate(hid(), emb, subj, typ, vw)
    assert report.metrics == {}  # no truth: nothing to score
    assert report.predictions.videos.tolist() == ["v1", "v2", "v3", "v4"]
    assert report.predictions.predicted.tolist() == ["a", "b", "a", "b"]
    probe = report.tables["probe"]
    assert (probe["num_probes"], probe["num_gallery"], probe["num_gallery_subjects"]) == (4, 4, 2)


def test_truth_scores_rank1_of_the_predictions():
    emb, subj, typ, vw = toy()
    truth = {"v1": "a", "v2": "b", "v3": "b", "v4": "b"}  # v3 is predicted a: one miss of four
    report = evaluate(hid(), emb, subj, typ, vw, truth=truth)
    assert report.metrics == {"rank1": 75.0}
    assert report.tables["probe"]["values"] == {"rank1": 75.0}


def test_a_truth_that_does_not_cover_the_probes_is_an_error_naming_them():
    emb, subj, typ, vw = toy()
    with pytest.raises(DataError, match=r"1 probes of the embeddings are not in .*v4"):
        evaluate(hid(), emb, subj, typ, vw, truth={"v1": "a", "v2": "b", "v3": "a"})
    with pytest.raises(DataError, match=r"1 probes of .* are not among the embeddings: zz"):
        evaluate(hid(), emb, subj, typ, vw, truth={"v1": "a", "v2": "b", "v3": "a", "v4": "b", "zz": "a"})


def test_ties_go_to_the_gallery_sequence_earliest_in_input_order():
    emb = np.array([[0.0], [2.0], [1.0]], np.float32)[:, :, None]  # the probe at 1 is 1 from both
    subj, typ, vw = labelled(["b", "a", "probe"], ["00", "00", "v"])
    assert evaluate(hid(), emb, subj, typ, vw).predictions.predicted.tolist() == ["b"]


def test_probes_and_gallery_must_exist_and_video_ids_be_unique():
    emb, subj, typ, vw = toy()
    with pytest.raises(DataError, match="no unlabelled probes"):
        evaluate(hid(), emb[:4], subj[:4], typ[:4], vw[:4])
    dup = typ.copy()
    dup[5] = "v1"
    with pytest.raises(DataError, match="probe video ids occur more than once.*v1"):
        evaluate(hid(), emb, subj, dup, vw)


def test_stages_change_the_predictions_and_are_recorded():
    from gaitbench.evaluation.pipeline import resolve_stages
    from gaitbench.plugins import get_plugins

    emb, subj, typ, vw = toy()
    stages = resolve_stages(["rerank"], {"rerank": {"preset": "opengait-hid"}}, get_plugins().stages())
    report = evaluate(hid(), emb, subj, typ, vw, stages=stages)
    assert [s["name"] for s in report.stages] == ["rerank"] and report.stages[0]["params"]["k1"] == 6
    assert len(report.predictions.predicted) == 4


def test_submission_file_and_truth_file(tmp_path):
    emb, subj, typ, vw = toy()
    found = evaluate(hid(), emb, subj, typ, vw).predictions
    path = write_predictions(tmp_path / "sub" / "submission.csv", hid().evaluation, found)
    rows = list(csv.reader(path.open()))
    assert rows == [["videoID", "label"], ["v1", "a"], ["v2", "b"], ["v3", "a"], ["v4", "b"]]
    assert list(path.parent.iterdir()) == [path]  # no temporary left behind
    # the submission itself is a valid truth file (same columns), and leading zeros survive
    assert read_truth(path) == {"v1": "a", "v2": "b", "v3": "a", "v4": "b"}
    zeros = tmp_path / "t.csv"
    zeros.write_text("videoID,label\n0001,0007\n")
    assert read_truth(zeros) == {"0001": "0007"}


@pytest.mark.parametrize("text,match", [
    ("videoID\nv1\n", "two columns"),
    ("videoID,label\nv1,a,extra\n", "line 2"),
    ("videoID,label\nv1,a\nv1,b\n", "listed twice"),
    ("videoID,label\n", "lists no probes"),
])
def test_malformed_truth_files_are_one_clear_error(tmp_path, text, match):
    path = tmp_path / "truth.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        read_truth(path)
    with pytest.raises(DataError, match="truth file not found"):
        read_truth(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- synthetic layout


def test_synthetic_hid_layout_as_opengait_s_hid_tree():
    plan = plan_dataset(SynthSpec(layout="hid", subjects=20))
    table, part, truth = plan.table, plan.partition, plan.probe_truth
    assert set(table["view"]) == {"default"}
    assert part["TRAIN_SET"] == [f"{i:04d}" for i in range(8)]  # 40% train, as 100 of the default 250
    assert part["TEST_SET"] == [f"{i:04d}" for i in range(8, 20)] + ["probe"]
    probes = table[table.subject == "probe"]
    assert probes["type"].is_unique and sorted(probes["type"]) == sorted(truth["videoID"])
    assert list(truth.columns) == ["videoID", "label"] and set(truth["label"]) == set(part["TEST_SET"][:-1])
    gallery = table[table.subject.isin(part["TEST_SET"]) & (table.subject != "probe")]
    assert set(gallery["type"]) == {"00", "01"} and set(gallery["condition"]) == {"nm"}
    # each probe walk is filmed by the low and the high camera: pairs of videos of one walk; four
    # walks per test subject, so query expansion and re-ranking have several probes to relate
    assert (probes.groupby(["walker", "sequence"]).size() == 2).all()
    assert (probes.groupby("walker").size() == 8).all()
    assert (probes.groupby(["walker", "sequence"])["elevation"].nunique() == 2).all()
    assert set(probes["condition"]) == {"nm", "bg", "cl"}


@pytest.fixture(scope="module")
def small_hid(tmp_path_factory):
    return generate(SynthSpec(layout="hid", subjects=12, frames=4, seed=3), tmp_path_factory.mktemp("hid") / "hid",
                    progress=False, workers=1)


def test_data_check_hid(small_hid, tmp_path):
    from gaitbench.data.check import check_dataset
    from gaitbench.data.store import open_store
    from gaitbench.protocols import resolve_split

    proto = resolve_split(hid(), small_hid)  # the dataset's own partition.json
    report = check_dataset(small_hid, proto, read_frames=False)
    assert report.ok, report.problems
    assert [c["subjects"] for c in report.counts] == [5, 8]  # 5 training subjects; 7 test subjects and "probe"
    # a partition without "probe" in TEST_SET leaves no probes: one problem naming what is missing
    part = tmp_path / "p.json"
    part.write_text(json.dumps({"TRAIN_SET": proto.split.train, "TEST_SET": [s for s in proto.split.test
                                                                          if s != "probe"]}))
    report = check_dataset(open_store(small_hid.root), resolve_split(hid(), small_hid, part), read_frames=False)
    assert not report.ok and any("no unlabelled probes" in p for p in report.problems)


# --------------------------------------------------------------------------- end to end


def cli(*args):
    from gaitbench.cli import cli as group

    result = CliRunner().invoke(group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_hid_run_writes_the_submission_and_scores_it_and_evaluate_agrees(small_hid, tmp_path):
    run_dir = tmp_path / "run"
    out = cli("run", "--method", "gaitgl", "--protocol", "hid", "--data-root", str(small_hid.root), "--iterations", "1",
              "--recipe", "quick", "--quiet", "--set", "sampler.P=4", "--set", "sampler.K=2", "--set", "sampler.frames=4",
              "--set", "sampler.min_frames=1", "--out", str(run_dir))
    assert "SYNTHETIC" in out and "submission written" in out
    result = json.loads((run_dir / "result.json").read_text())
    truth_file = small_hid.root / "probe_truth.csv"
    assert set(result["metrics"]) == {"rank1"}
    assert result["submission"] == {"path": str(run_dir / "submission.csv"), "truth": str(truth_file)}
    rows = list(csv.reader((run_dir / "submission.csv").open()))
    truth = read_truth(truth_file)
    assert rows[0] == ["videoID", "label"] and sorted(r[0] for r in rows[1:]) == sorted(truth)
    hits = np.mean([truth[video] == label for video, label in rows[1:]])
    assert result["metrics"]["rank1"] == pytest.approx(100 * hits)

    # the saved embeddings give the same predictions and score
    sub = tmp_path / "again.csv"
    report = tmp_path / "r.json"
    cli("evaluate", "--protocol", "hid", "--embeddings", str(run_dir / "embeddings.npz"), "--truth", str(truth_file),
        "--submission", str(sub), "--json", str(report))
    assert sub.read_text() == (run_dir / "submission.csv").read_text()
    assert json.loads(report.read_text())["metrics"] == result["metrics"]
    # without a truth file: predictions, no score
    out = cli("evaluate", "--protocol", "hid", "--embeddings", str(run_dir / "embeddings.npz"))
    assert "no truth file" in out


def test_truth_is_refused_for_protocols_with_labelled_probes(tmp_path):
    from gaitbench.cli import cli as group

    emb, subj, typ, vw = toy()
    np.savez(tmp_path / "e.npz", embeddings=emb, subjects=subj, types=typ, views=vw)
    (tmp_path / "t.csv").write_text("videoID,label\nv1,a\n")
    result = CliRunner().invoke(group, ["evaluate", "--protocol", "grew", "--embeddings", str(tmp_path / "e.npz"),
                                        "--truth", str(tmp_path / "t.csv")])
    assert result.exit_code != 0 and "identification protocols" in result.output


# --------------------------------------------------------------------------- pretreatment


def test_pretreat_raw_hid_tree_into_opengait_s_hid_layout(tmp_path):
    from gaitbench.data.layouts import list_sequences
    from gaitbench.data.pretreat import pretreat_tree
    from gaitbench.data.store import open_store

    rng = np.random.default_rng(0)
    for rel in ("train/0000/00", "train/0000/01", "gallery/0500/00", "probe/4f3a2b1c"):
        d = tmp_path / "raw" / rel
        d.mkdir(parents=True)
        for i in range(3):
            img = np.zeros((80, 60), np.uint8)
            x = int(rng.integers(10, 40))
            img[5:75, x:x + 12] = 255
            cv2.imwrite(str(d / f"{i:03d}.png"), img)
    seqs, layout = list_sequences(tmp_path / "raw", "hid")
    assert layout == "hid-raw"
    assert [s[:3] for s in seqs] == [("0000", "00", "default"), ("0000", "01", "default"),
                                     ("0500", "00", "default"), ("probe", "4f3a2b1c", "default")]
    summary = pretreat_tree(tmp_path / "raw", tmp_path / "pkl", "hid", progress=False, workers=1)
    assert summary.written == 4
    files = sorted(p.relative_to(tmp_path / "pkl").as_posix() for p in (tmp_path / "pkl").rglob("*.pkl"))
    # as OpenGait's pretreatment_HID.py names them: <id>/<seq>/default/<seq>.pkl
    assert files == ["0000/00/default/00.pkl", "0000/01/default/01.pkl", "0500/00/default/00.pkl",
                     "probe/4f3a2b1c/default/4f3a2b1c.pkl"]
    store = open_store(tmp_path / "pkl")
    assert store.frames(0).shape == (3, 64, 64)  # the GaitSet pretreatment the HID reports use
