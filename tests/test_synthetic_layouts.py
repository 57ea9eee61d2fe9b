"""The synthetic layouts (CASIA-B, OU-MVLP, GREW, Gait3D) and the pkl-tree export."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from gaitbench.data.export import export_pkl_tree, square_pad
from gaitbench.data.store import INDEX_COLUMNS, PklTreeStore, cut_sides, open_store
from gaitbench.data.synthetic import (LAYOUTS, PARTITION_FILE, PROBE_TRUTH_FILE, SynthSpec, generate, plan_dataset,
                                      sequence_table)
from gaitbench.data.walker import CAMERA_ELEVATION_DEG, Occlusion
from gaitbench.errors import DataError

TINY = {
    "casiab": SynthSpec(layout="casiab", subjects=2, frames=4, seed=1),
    "oumvlp": SynthSpec(layout="oumvlp", subjects=10, frames=4, seed=1),
    "grew": SynthSpec(layout="grew", subjects=5, frames=4, seed=1, distractors=2),
    "gait3d": SynthSpec(layout="gait3d", subjects=8, frames=6, seed=1),
}
OUMVLP_VIEWS = ["000", "015", "030", "045", "060", "075", "090", "180", "195", "210", "225", "240", "255", "270"]


def labels(store) -> dict[tuple[str, str, str], int]:
    """(subject, type, view) -> row of ``store``."""
    return {key: i for i, key in enumerate(zip(store.index["subject"], store.index["type"], store.index["view"]))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Each tiny layout generated once, in this process."""
    root = tmp_path_factory.mktemp("layouts")
    return {name: generate(spec, root / name, workers=1, progress=False) for name, spec in TINY.items()}


# ---------------------------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------------------------

def test_casiab_spec_and_fingerprints_are_unchanged():
    """Cached CASIA-B datasets and the results made from them keep their names."""
    assert SynthSpec() == SynthSpec(layout="casiab", subjects=124, frames=12, frame_step=2.5, seed=0, height=64,
                                    distractors=0)
    assert SynthSpec().fingerprint() == "9e8283ddcafb13ba"
    assert SynthSpec().dirname() == "casiab-n124-f12-s0-9e8283ddcafb13ba"
    assert SynthSpec.full().fingerprint() == "580740cdcbf31ee8"
    assert SynthSpec.full().dirname() == "casiab-n124-f80-s0-580740cdcbf31ee8"
    assert SynthSpec(subjects=3, frames=7, seed=5).fingerprint() == "80da7d1e69665c58"


def test_casiab_table_is_unchanged():
    """Same rows, lengths and walks as before the other layouts existed."""
    spec = SynthSpec(subjects=3, frames=12, seed=2)
    layout = LAYOUTS["casiab"]
    rows = []
    for s in range(1, 4):
        for t_i, type_ in enumerate(layout.types):
            for v_i, view in enumerate(layout.views):
                rng = np.random.default_rng([spec.seed, s, t_i, v_i, 0x5EC])
                rows.append((f"{s:03d}", type_, view, int(rng.integers(9, 16))))
    table = sequence_table(spec)
    expected = pd.DataFrame(rows, columns=["subject", "type", "view", "length"])
    pd.testing.assert_frame_equal(table[["subject", "type", "view", "length"]], expected)
    assert (table["walker"] == table["subject"].astype(int)).all()
    assert (table["condition"] == table["type"].str[:2]).all()
    assert (table["sequence"] == table["type"].str[3:].astype(int)).all()
    assert (table["azimuth"] == table["view"].astype(float)).all()
    assert (table["elevation"] == CAMERA_ELEVATION_DEG).all() and table["occlusion"].isna().all()


def test_layout_defaults():
    for name, layout in LAYOUTS.items():
        spec = SynthSpec(layout=name)
        assert (spec.subjects, spec.frames) == (layout.subjects, layout.frames)
        assert SynthSpec(layout=name, subjects=None, frames=None) == spec
        assert SynthSpec.full(name).frames == 80
    assert {n: (LAYOUTS[n].subjects, LAYOUTS[n].frames) for n in LAYOUTS} == {
        "casiab": (124, 12), "oumvlp": (200, 12), "grew": (1060, 12), "gait3d": (1060, 24), "hid": (250, 12)}
    fingerprints = {SynthSpec(layout=n).fingerprint() for n in LAYOUTS}
    assert len(fingerprints) == 5
    assert SynthSpec(layout="gait3d", height=128).fingerprint() != SynthSpec(layout="gait3d").fingerprint()
    assert SynthSpec(layout="grew", distractors=3).fingerprint() != SynthSpec(layout="grew").fingerprint()


def test_bad_specs_are_rejected():
    with pytest.raises(DataError, match="oumvlp"):
        SynthSpec(layout="oumvpl")
    with pytest.raises(DataError, match="GREW"):
        plan_dataset(SynthSpec(layout="casiab", distractors=2))
    with pytest.raises(DataError, match="multiple of 64"):
        plan_dataset(SynthSpec(layout="gait3d", height=100))
    with pytest.raises(DataError, match="at least one subject"):
        plan_dataset(SynthSpec(layout="grew", subjects=0))
    with pytest.raises(DataError, match=r"test_subjects must lie in \[1, subjects - 1\] = \[1, 9\] so that both sides have identities; got 10"):
        SynthSpec(layout="gait3d", subjects=10, test_subjects=10)
    with pytest.raises(DataError, match="takes its split from the protocol"):
        SynthSpec(layout="casiab", test_subjects=10)


def test_default_test_sides_are_large_enough_to_rank_methods():
    """The default sets' test sides: at least 1,000 probes (rank-1 known to about +-3 points at
    50 %), while the training side keeps its size; a smaller set keeps the layout's share."""
    gait3d = plan_dataset(SynthSpec(layout="gait3d")).partition
    assert (len(gait3d["TRAIN_SET"]), len(gait3d["TEST_SET"]), len(gait3d["PROBE_SET"])) == (60, 1000, 1000)
    grew = sequence_table(SynthSpec(layout="grew"))
    assert (grew["type"] == "02").sum() == 1000 and (grew["type"] == "01").sum() == 1000
    assert grew.loc[grew["type"] == "00", "subject"].nunique() == 60
    oumvlp = sequence_table(SynthSpec(layout="oumvlp"))
    test_probes = oumvlp[(oumvlp["type"] == "00") & (oumvlp["subject"].astype(int) % 2 == 0)]
    assert len(test_probes) >= 1350  # 100 test subjects x 14 views, less the few missing walks
    small = plan_dataset(SynthSpec(layout="gait3d", subjects=8)).partition
    assert (len(small["TRAIN_SET"]), len(small["TEST_SET"])) == (6, 2)
    chosen = plan_dataset(SynthSpec(layout="gait3d", subjects=30, test_subjects=20)).partition
    assert (len(chosen["TRAIN_SET"]), len(chosen["TEST_SET"]), len(chosen["PROBE_SET"])) == (10, 20, 20)


# ---------------------------------------------------------------------------------------------
# every layout
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(TINY))
def test_generate_is_deterministic_and_records_the_generator(tmp_path, tiny, name):
    """Same spec, same bytes -- in this process or a pool of two; the store says what made it."""
    spec = TINY[name]
    a = tiny[name]
    b = generate(spec, tmp_path / name, workers=2, progress=False)
    files = sorted(p.name for p in a.root.iterdir())
    assert files == sorted(p.name for p in b.root.iterdir())
    for f in files:
        assert (a.root / f).read_bytes() == (b.root / f).read_bytes(), f

    info = a.describe()
    assert info["name"] == name and info["synthetic"] and info["fingerprint"] == spec.fingerprint()
    generator = info["generator"]
    assert generator == spec.generator_info() == a.meta["generator"]
    assert generator["name"] == "gaitbench-walker" and generator["version"] and generator["layout_version"]
    assert generator["seed"] == 1 and generator["layout"] == name and generator["subjects"] == spec.subjects
    assert list(pd.read_csv(a.root / "index.csv").columns) == INDEX_COLUMNS

    table = sequence_table(spec)
    pd.testing.assert_frame_equal(a.index[["subject", "type", "view"]], table[["subject", "type", "view"]])
    assert (a.index["length"] == table["length"]).all()
    assert not a.index.duplicated(["subject", "type", "view"]).any()
    for i in range(len(a)):
        x = a.frames(i)
        assert x.shape == (table["length"].iat[i], 64, 44)
        assert (x.reshape(len(x), -1).max(1) == 255).all()  # no blank frame

    other = generate(SynthSpec(**{**spec.__dict__, "seed": 2}), tmp_path / "other", workers=1, progress=False)
    assert other.fingerprint != a.fingerprint
    assert (other.root / "frames.npy").read_bytes() != (a.root / "frames.npy").read_bytes()


def test_oumvlp_labels(tiny):
    store = tiny["oumvlp"]
    index = store.index
    assert sorted(index["subject"].unique()) == [f"{s:05d}" for s in range(1, 11)]
    assert set(index["type"]) == {"00", "01"}
    assert sorted(index["view"].unique()) == OUMVLP_VIEWS
    assert list(LAYOUTS["oumvlp"].views) == OUMVLP_VIEWS
    # both parities: odd ids train, even ids test in the standard split
    assert {int(s) % 2 for s in index["subject"]} == {0, 1}


@pytest.mark.parametrize("subjects,seed", [(100, 0), (10, 0), (10, 1), (13, 7), (37, 3), (250, 5)])
def test_oumvlp_missing_sequences(subjects, seed):
    """About 4 % of (subject, view) pairs lack one walk, on a few subjects; at least one lacks its
    gallery walk 01, so a probe without gallery exists."""
    table = sequence_table(SynthSpec(layout="oumvlp", subjects=subjects, seed=seed))
    counts = table.groupby(["subject", "view"])["type"].agg(list)
    assert len(counts) == subjects * 14  # no pair lost both walks
    incomplete = counts[counts.map(len) == 1]
    assert 0.03 <= len(incomplete) / len(counts) <= 0.05
    assert incomplete.map(lambda types: types == ["00"]).sum() >= 1  # gallery 01 missing
    assert incomplete.index.get_level_values("subject").nunique() <= max(2, 0.25 * subjects)
    assert (table["condition"] == "nm").all()
    assert (table["sequence"] == table["type"].astype(int) + 1).all()


def test_grew_labels_and_probe_truth(tiny):
    store = tiny["grew"]
    spec = TINY["grew"]
    index = store.index
    table = sequence_table(spec)
    train = index[index["subject"].str.endswith("train")]
    probes = index[index["subject"] == "probe"]
    test = index[(index["subject"] != "probe") & ~index["subject"].str.endswith("train")]
    n_train, n_test = 3, 2  # 5 subjects: 40 % test
    assert sorted(train["subject"].unique()) == [f"{i:05d}train" for i in range(1, n_train + 1)]
    assert (train["type"] == "00").all() and (train.groupby("subject").size() == 4).all()
    # test subjects: 01 (gallery) and 02 (local probe); distractors: 01 only
    per_subject = test.groupby("subject")["type"].agg(sorted)
    assert per_subject.to_dict() == {"00001": ["01", "02"], "00002": ["01", "02"], "00003": ["01"], "00004": ["01"]}
    assert (probes["type"] == "03").all() and len(probes) == n_test
    # views are sequence ids, unique in the whole dataset
    assert index["view"].str.fullmatch(r"[0-9a-f]{8}").all() and index["view"].is_unique

    truth = pd.read_csv(store.root / PROBE_TRUTH_FILE, dtype=str)
    assert list(truth.columns) == ["videoId", "subject"] and store.meta["probe_truth_file"] == PROBE_TRUTH_FILE
    assert sorted(truth["videoId"]) == sorted(probes["view"])
    assert sorted(truth["subject"]) == ["00001", "00002"]
    # the truth is right: a probe is a walk of the test subject it names (same walker identity)
    walker_of = table.drop_duplicates("subject").set_index("subject")["walker"]
    probe_walker = table[table["subject"] == "probe"].set_index("view")["walker"]
    for video, subject in zip(truth["videoId"], truth["subject"]):
        assert probe_walker[video] == walker_of[subject]
    assert len(set(table["walker"])) == n_train + n_test + spec.distractors


def test_grew_cameras_are_unconstrained():
    table = sequence_table(SynthSpec(layout="grew", subjects=100))
    assert len(table) == 60 * 4 + 40 * 2 + 40
    assert table["azimuth"].between(0.0, 360.0).all() and np.ptp(table["azimuth"]) > 300.0
    assert table["azimuth"].round(3).nunique() == len(table)  # continuous, not a fixed set of views
    assert table["elevation"].between(0.0, 30.0).all() and np.ptp(table["elevation"]) > 20.0
    assert set(table["condition"]) == {"nm", "bg", "cl"}


def test_gait3d_labels_and_partition(tiny):
    store = tiny["gait3d"]
    index = store.index
    assert sorted(index["subject"].unique()) == [f"{s:04d}" for s in range(1, 9)]
    assert index["type"].str.fullmatch(r"camid\d+_videoid\d+").all()
    assert index["view"].str.fullmatch(r"seq\d+").all()
    assert index.groupby("subject").size().between(2, 6).all()

    partition = json.loads((store.root / PARTITION_FILE).read_text())
    assert partition == store.meta["partition"] and store.meta["partition_file"] == PARTITION_FILE
    assert set(partition) == {"TRAIN_SET", "TEST_SET", "PROBE_SET"}
    train, test = partition["TRAIN_SET"], partition["TEST_SET"]
    assert sorted(train + test) == sorted(index["subject"].unique()) and not set(train) & set(test)
    assert len(test) == 2  # a quarter of 8
    keys = set(index["subject"] + "-" + index["type"] + "-" + index["view"])
    probes = partition["PROBE_SET"]
    assert all(p in keys for p in probes)
    assert sorted(p.split("-")[0] for p in probes) == sorted(test)  # exactly one probe per test subject
    for p in probes:
        assert re.fullmatch(r"\d{4}-camid\d+_videoid\d+-seq\d+", p)


def test_gait3d_viewpoints_lengths_and_occlusion():
    table = sequence_table(SynthSpec(layout="gait3d"))
    assert table["length"].min() >= 8 and table["length"].max() <= 40 and np.ptp(table["length"]) >= 25
    assert np.ptp(table["azimuth"]) > 300.0 and table["elevation"].between(10.0, 50.0).all()
    assert np.ptp(table["elevation"]) > 20.0
    occluded = table["occlusion"].dropna()
    assert 0.1 < len(occluded) / len(table) < 0.3
    assert {o.kind for o in occluded} == {"lower", "box"} and all(isinstance(o, Occlusion) for o in occluded)
    # every type has a fixed camera height: its sequences' elevations stay within the +-5 jitter
    cams = table.assign(cam=table["type"].str.extract(r"camid(\d+)")[0]).groupby("cam")["elevation"]
    assert (cams.max() - cams.min()).max() <= 10.0
    split = json.loads(json.dumps(plan_dataset(SynthSpec(layout="gait3d", subjects=80)).partition))
    assert (len(split["TRAIN_SET"]), len(split["TEST_SET"]), len(split["PROBE_SET"])) == (60, 20, 20)


def test_gait3d_occluded_sequences_are_rendered_occluded(tiny):
    from gaitbench.data.walker import render_sequence

    store, spec = tiny["gait3d"], TINY["gait3d"]
    table = sequence_table(spec)
    rows = np.flatnonzero(table["occlusion"].notna())
    assert len(rows) >= 1
    for i in rows:
        r = table.iloc[i]
        plain = render_sequence(r.walker, r.condition, r.azimuth, seed=spec.seed, sequence=r.sequence,
                                frames=r.length, frame_step=spec.frame_step, elevation_deg=r.elevation)
        assert not np.array_equal(store.frames(i), plain)


def test_gait3d_at_128x88(tmp_path):
    spec = SynthSpec(layout="gait3d", subjects=3, frames=4, seed=1, height=128)
    store = generate(spec, tmp_path / "g128", workers=1, progress=False)
    assert (store.index["height"] == 128).all() and (store.index["width"] == 88).all()
    assert store.frames(0).shape[1:] == (128, 88) and store.meta["generator"]["height"] == 128
    small = sequence_table(SynthSpec(layout="gait3d", subjects=3, frames=4, seed=1))
    pd.testing.assert_frame_equal(sequence_table(spec), small)  # the same walks, only sharper


# ---------------------------------------------------------------------------------------------
# pkl-tree export
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["casiab", "grew", "gait3d"])
def test_pkl_tree_export_round_trip(tmp_path, tiny, name):
    """Exported 64x64 frames load in gaitbench (and OpenGait) as exactly the stored 64x44 after the
    load-time side cut; the side files travel along."""
    store = tiny[name]
    out = export_pkl_tree(store, tmp_path / "tree")
    tree = open_store(out)
    assert isinstance(tree, PklTreeStore) and len(tree) == len(store)
    position = labels(store)
    for i, row in tree.index.iterrows():
        raw = tree.frames(i)
        assert raw.shape[1:] == (64, 64) and not raw[..., :10].any() and not raw[..., -10:].any()
        np.testing.assert_array_equal(cut_sides(raw), store.frames(position[(row.subject, row.type, row.view)]))
    first = store.index.iloc[0]
    path = out / first.subject / first.type / first.view / f"{first.view}.pkl"
    with open(path, "rb") as f:
        arr = pickle.load(f)  # safe: a file this test just wrote; OpenGait loads it this way
    assert arr.dtype == np.uint8 and arr.shape == (first.length, 64, 64)
    for side in ("partition.json", "probe_truth.csv"):
        assert (out / side).is_file() == (store.root / side).is_file()
    source = json.loads((out / "gaitbench-source.json").read_text())
    assert source["exported_from"]["generator"] == store.meta["generator"]


def test_pkl_tree_export_at_128_and_unpadded(tmp_path):
    store = generate(SynthSpec(layout="gait3d", subjects=2, frames=3, seed=4, height=128), tmp_path / "s",
                     workers=1, progress=False)
    tree = open_store(export_pkl_tree(store, tmp_path / "tree"))
    position = labels(store)
    for key, i in labels(tree).items():
        raw = tree.frames(i)
        assert raw.shape[1:] == (128, 128)
        np.testing.assert_array_equal(cut_sides(raw), store.frames(position[key]))
    plain = open_store(export_pkl_tree(store, tmp_path / "plain", square=False))
    assert plain.frames(0).shape[1:] == (128, 88)


def test_square_pad():
    x = np.full((2, 64, 44), 7, np.uint8)
    assert square_pad(x).shape == (2, 64, 64) and (cut_sides(square_pad(x)) == x).all()
    assert square_pad(np.zeros((1, 128, 88), np.uint8)).shape == (1, 128, 128)
    odd = np.zeros((1, 64, 50), np.uint8)
    assert square_pad(odd) is odd


def test_pkl_tree_export_refuses_a_used_folder(tmp_path, tiny):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(DataError, match="not an empty folder"):
        export_pkl_tree(tiny["casiab"], tmp_path / "used")
    (tmp_path / "empty").mkdir()
    export_pkl_tree(tiny["casiab"], tmp_path / "empty")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
