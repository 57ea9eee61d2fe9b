"""``data check``, ``data pack``, the training loader's workers and what happens to unreadable
or short sequences."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from gaitbench.data.check import check_dataset
from gaitbench.data.export import export_pkl_tree
from gaitbench.data.pack import pack_store
from gaitbench.data.sampling import TripletSampler
from gaitbench.data.store import PklTreeStore, cut_sides, open_store
from gaitbench.data.synthetic import SynthSpec, generate
from gaitbench.errors import DataError
from gaitbench import get_protocol
from gaitbench.protocols import resolve_split

from .conftest import CreatesFile, run_cli


@pytest.mark.parametrize("layout", ["casiab", "oumvlp", "grew", "gait3d", "hid"])
def test_synth_then_check_passes_for_every_layout(tmp_path, layout):
    """A reduced synthetic set (12 subjects) runs its protocol as it is: where the protocol's fixed ids
    do not exist in it (CASIA-B's 001-074 / 075-124), it carries a partition that data check (and
    run, and evaluate) use without --partition."""
    out = tmp_path / layout
    proc = run_cli("data", "synth", "--layout", layout, "--out", str(out), "--subjects", "12", "--frames", "4",
                   "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC" in proc.stdout
    proc = run_cli("data", "check", str(out), "--protocol", layout, "--json", str(tmp_path / "c.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: the protocol can run" in proc.stdout
    found = json.loads((tmp_path / "c.json").read_text())
    assert found["ok"] and {c["split"] for c in found["counts"]} == {"train", "test"}
    if layout == "casiab":  # the LT proportions: 74 of 124 subjects train
        part = json.loads((out / "partition.json").read_text())
        assert part == {"TRAIN_SET": [f"{i:03d}" for i in range(1, 8)], "TEST_SET": [f"{i:03d}" for i in range(8, 13)]}
        assert [c["subjects"] for c in found["counts"]] == [7, 5]


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    """A 12-subject synthetic CASIA-B exported as an OpenGait pkl tree, and its partition."""
    root = tmp_path_factory.mktemp("tree")
    store = generate(SynthSpec(subjects=12, frames=4, seed=3), root / "packed", progress=False, workers=1)
    export_pkl_tree(store, root / "tree")
    part = root / "partition.json"
    ids = [f"{i:03d}" for i in range(1, 13)]
    part.write_text(json.dumps({"TRAIN_SET": ids[:6], "TEST_SET": ids[6:]}))
    return store, root / "tree", part


def _damaged_copy(tiny_tree, tmp_path):
    _, tree, part = tiny_tree
    bad = tmp_path / "tree"
    shutil.copytree(tree, bad)
    for view_dir in bad.glob("*/*/090"):  # a missing view
        if view_dir.parent.parent.name >= "007":
            shutil.rmtree(view_dir)
    np.save  # noqa: B018 - keep linters quiet about the helpers below
    with open(bad / "008" / "nm-05" / "036" / "036.pkl", "wb") as fh:  # an empty sequence
        pickle.dump(np.zeros((0, 64, 64), np.uint8), fh)
    (bad / "009" / "bg-01" / "054" / "054.pkl").write_bytes(b"\x80\x04garbage")  # a corrupt file
    marker = tmp_path / "pwned"
    (bad / "010" / "cl-02" / "072" / "072.pkl").write_bytes(pickle.dumps(CreatesFile(marker)))  # malicious
    return bad, part, marker


def test_check_reports_planted_faults_and_exits_nonzero(tiny_tree, tmp_path):
    bad, part, marker = _damaged_copy(tiny_tree, tmp_path)
    proc = run_cli("data", "check", str(bad), "--protocol", "casiab", "--partition", str(part))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "views of the protocol missing from the test set: ['090']" in out
    assert "008/nm-05/036" in out and "empty" in out
    assert "009/bg-01/054" in out and "not a readable" in out or "unreadable" in out
    assert "010/cl-02/072" in out and "nothing from it was run" in out
    assert "FAILED" in out and not marker.exists()


def test_check_names_partition_ids_not_on_disk(tiny_tree, tmp_path):
    store, _, _ = tiny_tree
    part = tmp_path / "p.json"
    part.write_text(json.dumps({"TRAIN_SET": ["001", "002", "999"], "TEST_SET": [f"{i:03d}" for i in range(7, 13)]}))
    proto = resolve_split(get_protocol("casiab"), store, part)
    report = check_dataset(store, proto)
    assert report.ok
    assert any("ids of the partition are not on disk: 999" in w for w in report.warnings)
    assert any("belong to no split" in w and "003" in w for w in report.warnings)


def test_pack_gives_identical_frames_and_skips_the_unreadable(tiny_tree, tmp_path):
    store, tree, _ = tiny_tree
    summary = pack_store(tree, tmp_path / "packed", progress=False)
    packed = open_store(tmp_path / "packed")
    assert summary.sequences == len(store) and not summary.skipped
    tree_store = PklTreeStore(tree)
    for i in range(0, len(packed), 97):  # same frames through every reader
        row = packed.index.iloc[i]
        j = np.flatnonzero((store.index["subject"] == row["subject"]) & (store.index["type"] == row["type"])
                           & (store.index["view"] == row["view"]))[0]
        np.testing.assert_array_equal(cut_sides(packed.frames(i)), store.frames(j))
        np.testing.assert_array_equal(packed.frames(i), tree_store.frames(i))
    bad, _, marker = _damaged_copy(tiny_tree, tmp_path)
    summary = pack_store(bad, tmp_path / "packed-bad", progress=False)
    assert {s["sequence"].split(" ")[0] for s in summary.skipped} == {"008/nm-05/036", "009/bg-01/054",
                                                                       "010/cl-02/072"}
    with pytest.raises(DataError, match="009/bg-01/054|010/cl-02/072|008/nm-05/036"):
        pack_store(bad, tmp_path / "packed-strict", strict=True, progress=False)
    assert not (tmp_path / "packed-strict").exists() and not marker.exists()
    with pytest.raises(DataError, match="already holds a packed store; pass --force"):
        pack_store(tree, tmp_path / "packed", progress=False)


def test_loader_workers_give_the_same_batches(small_synth):
    store, _ = small_synth
    rows = np.arange(len(store))
    plain = TripletSampler(store, rows, P=3, K=2, frames=6, order="ordered", skip=2, seed=7)
    pooled = TripletSampler(store, rows, P=3, K=2, frames=6, order="ordered", skip=2, seed=7, workers=2, prefetch=2)
    try:
        for _ in range(4):
            a, b = plain.next_batch(), pooled.next_batch()
            np.testing.assert_array_equal(a.sils, b.sils)
            np.testing.assert_array_equal(a.labels, b.labels)
        # the checkpointed position is that of the last batch handed out, not of prefetched ones
        assert pooled.state_dict() == plain.state_dict()
    finally:
        pooled.close()
    resumed = TripletSampler(store, rows, P=3, K=2, frames=6, order="ordered", skip=2, seed=0)
    resumed.load_state_dict(pooled.state_dict())
    np.testing.assert_array_equal(resumed.next_batch().sils, plain.next_batch().sils)


def test_short_sequences_are_left_out_with_a_count(small_synth):
    store, _ = small_synth
    rows = np.arange(len(store))
    lengths = store.index["length"].to_numpy()
    sampler = TripletSampler(store, rows, P=2, K=2, frames=4, seed=0, min_frames=10)
    assert len(sampler.left_out) == int((lengths < 10).sum()) > 0
    assert all(lengths[r] >= 10 for pool in sampler.by_class for r in pool)
    with pytest.raises(DataError, match="at least 99 frames"):
        TripletSampler(store, rows, P=2, K=2, frames=4, seed=0, min_frames=99)


def test_an_unreadable_training_sequence_is_replaced_and_reported(tiny_tree, tmp_path):
    bad, _, marker = _damaged_copy(tiny_tree, tmp_path)
    store = PklTreeStore(bad)
    subj = store.index["subject"].to_numpy()
    rows = np.flatnonzero(subj == "010")  # one of its sequences is the malicious pickle
    sampler = TripletSampler(store, rows, P=1, K=len(rows), frames=3, seed=0)
    batch = sampler.next_batch()
    assert len(batch.sils) == len(rows) and sampler.skipped
    assert any("nothing from it was run" in why for why in sampler.skipped.values())
    assert "010/cl-02/072" in sampler.problems()["examples"][-1]
    strict = TripletSampler(store, rows, P=1, K=len(rows), frames=3, seed=0, strict=True)
    with pytest.raises(DataError, match="072.pkl"):
        strict.next_batch()
    assert not marker.exists()


def test_run_skips_an_unreadable_test_sequence_and_says_so(tiny_tree, tmp_path):
    bad, part, marker = _damaged_copy(tiny_tree, tmp_path)
    shutil.copytree(bad / "007" / "nm-01" / "072", bad / "007" / "nm-01" / "090")  # keep the view set complete
    for s in ("008", "009", "010", "011", "012"):
        src = bad / "007" / "nm-01" / "072" / "072.pkl"
        for t in ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02"):
            dest = bad / s / t / "090"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / "090.pkl")
    args = ["run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(bad), "--partition", str(part),
            "--recipe", "quick", "--iterations", "2", "--quiet", "--set", "sampler.P=2", "--set", "sampler.K=2",
            "--set", "sampler.frames=3", "--set", "sampler.min_frames=1"]
    proc = run_cli(*args, "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert "could not be read and are left out of the evaluation" in proc.stdout
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["data_problems"]["test_unreadable"] == 3
    proc = run_cli(*args, "--strict", "--out", str(tmp_path / "strict"))
    assert proc.returncode != 0 and ".pkl" in proc.stderr
    assert not marker.exists()
