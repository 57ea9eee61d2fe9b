"""Pretreatment of raw PNG silhouettes, the raw-tree readers and the PNG-tree store, on hand-made
frames small enough to keep every test fast."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import cv2  # noqa: E402  (a dependency of gaitbench)

from gaitbench.data import pretreat as pt  # noqa: E402
from gaitbench.data.layouts import list_casiab, list_gait3d, list_grew, list_oumvlp, list_sequences  # noqa: E402
from gaitbench.data.pretreat import pretreat_frame, pretreat_sequence, pretreat_tree  # noqa: E402
from gaitbench.data.store import PngTreeStore  # noqa: E402
from gaitbench.data.safe_pickle import load_array_pickle  # noqa: E402
from gaitbench.data.store import PklTreeStore, open_store  # noqa: E402
from gaitbench.errors import DataError  # noqa: E402


def blob_frame(h=64, w=100, rows=(0, 64), cols=(40, 46), value=255):
    img = np.zeros((h, w), np.uint8)
    img[rows[0]:rows[1], cols[0]:cols[1]] = value
    return img


def median_column(frame):
    """The first column whose running mass passes half the total (the centring rule)."""
    c = frame.sum(axis=0, dtype=np.int64).cumsum()
    return int(np.argmax(2 * c > c[-1]))


# --- one frame -----------------------------------------------------------------------------------


def test_blob_at_a_known_column_ends_centred():
    # 160 silhouette rows in a 200x300 frame: rows cropped to 160, resized to 64 x 120.
    out = pretreat_frame(blob_frame(200, 300, rows=(20, 180), cols=(100, 140)))
    assert out.shape == (64, 64) and out.dtype == np.uint8
    assert median_column(out) == 32
    cols = np.flatnonzero(out.any(axis=0))
    # 40 px wide at scale 0.4 is 16 px: about 24..40, cubic ringing may add a column each side
    assert 22 <= cols[0] <= 25 and 39 <= cols[-1] <= 41


def test_rows_are_cropped_to_the_silhouette_and_resized_to_height_64():
    high = pretreat_frame(blob_frame(240, 320, rows=(10, 110), cols=(150, 170)))
    low = pretreat_frame(blob_frame(240, 320, rows=(130, 230), cols=(150, 170)))
    np.testing.assert_array_equal(high, low)  # where the person stands vertically does not matter
    rows = np.flatnonzero(high.any(axis=1))
    assert rows[0] == 0 and rows[-1] == 63  # the silhouette fills the height
    assert high.shape == (64, 64)


def test_size_128_variant():
    out = pretreat_frame(blob_frame(240, 320, rows=(20, 220), cols=(60, 90)), img_size=128)
    assert out.shape == (128, 128) and out.dtype == np.uint8
    assert median_column(out) == 64
    assert out[0].any() and out[-1].any()


def test_near_empty_frames_are_dropped_at_the_reference_threshold():
    img = np.zeros((120, 160), np.uint8)
    img[10:50, 80] = 250  # sum exactly 10000: dropped
    assert pretreat_frame(img) is None
    img[10:50, 80] = 251  # 10040: kept
    assert pretreat_frame(img) is not None
    assert pretreat_frame(np.zeros((120, 160), np.uint8)) is None


def test_subject_at_the_right_border_is_padded_with_zeros():
    # 64 rows tall, so the resize is the identity and the expected frame can be written by hand:
    # columns 94..99 of 100, centre 97 -> output column k shows input column k + 65.
    out = pretreat_frame(blob_frame(cols=(94, 100)))
    expected = np.zeros((64, 64), np.uint8)
    expected[:, 29:35] = 255
    np.testing.assert_array_equal(out, expected)


def test_subject_at_the_left_border_is_padded_with_zeros():
    out = pretreat_frame(blob_frame(cols=(0, 6)))  # centre 3 -> output column k shows k - 29
    expected = np.zeros((64, 64), np.uint8)
    expected[:, 29:35] = 255
    np.testing.assert_array_equal(out, expected)


def test_frame_centred_at_column_zero_is_kept():
    # The reference drops this frame (it tests `not x_center`); gaitbench keeps it.
    img = blob_frame(cols=(0, 1))
    assert img.sum() > pt.MIN_FOREGROUND and median_column(img) == 0
    out = pretreat_frame(img)
    expected = np.zeros((64, 64), np.uint8)
    expected[:, 32] = 255
    np.testing.assert_array_equal(out, expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="grayscale uint8"):
        pretreat_frame(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="even"):
        pretreat_frame(blob_frame(), img_size=63)
    with pytest.raises(DataError, match="did you mean 'casiab'"):
        pretreat_sequence([], 64, "casia-b")


# --- readers -------------------------------------------------------------------------------------


def touch(root, *rels):
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def labels(seqs):
    return [(s.subject, s.type, s.view, [p.name for p in s.frames]) for s in seqs]


def test_casiab_reader(tmp_path):
    touch(tmp_path, "001/nm-01/090/b.png", "001/nm-01/090/a.png", "001/nm-01/090/notes.txt",
          "001/nm-01/090/gei.png", "002/cl-02/018/x.png", "002/cl-02/036/readme.md")
    assert labels(list_casiab(tmp_path)) == [("001", "nm-01", "090", ["a.png", "b.png"]),
                                             ("002", "cl-02", "018", ["x.png"])]


def test_oumvlp_reader_maps_folders_to_subject_sequence_and_view(tmp_path):
    touch(tmp_path, "Silhouette_090-01/00002/0002.png", "Silhouette_090-01/00002/0001.png",
          "Silhouette_000-00/00001/0001.png", "Silhouette_000-00/00002/0001.png", "other/00001/0001.png")
    expected = [("00001", "00", "000", ["0001.png"]), ("00002", "00", "000", ["0001.png"]),
                ("00002", "01", "090", ["0001.png", "0002.png"])]
    assert labels(list_oumvlp(tmp_path)) == expected
    seqs, layout = list_sequences(tmp_path, "oumvlp")
    assert layout == "oumvlp-raw" and labels(seqs) == expected


def test_oumvlp_rearranged_tree_is_read_as_id_type_view(tmp_path):
    touch(tmp_path, "00001/00/000/0001.png")
    seqs, layout = list_sequences(tmp_path, "oumvlp")
    assert layout == "id/type/view" and labels(seqs) == [("00001", "00", "000", ["0001.png"])]


def test_gait3d_reader(tmp_path):
    touch(tmp_path, "0002/camid33_videoid2/seq0/human_crop_f11.png", "0002/camid33_videoid2/seq1/f.png")
    assert labels(list_gait3d(tmp_path)) == [("0002", "camid33_videoid2", "seq0", ["human_crop_f11.png"]),
                                             ("0002", "camid33_videoid2", "seq1", ["f.png"])]


def test_grew_reader_mirrors_opengait_rearranged_labels(tmp_path):
    touch(tmp_path, "train/00001/4XPn5Z28/001.png", "train/00001/5TXe8svE/001.png",
          "test/gallery/00001/t16VLaQf/001.png", "test/gallery/00001/79XJefi8/001.png",
          "test/probe/etaGVnWf/001.png", "distractor/x/001.png")
    expected = [("00001", "01", "79XJefi8", ["001.png"]), ("00001", "02", "t16VLaQf", ["001.png"]),
                ("00001train", "00", "4XPn5Z28", ["001.png"]), ("00001train", "00", "5TXe8svE", ["001.png"]),
                ("probe", "03", "etaGVnWf", ["001.png"])]
    assert labels(list_grew(tmp_path)) == expected
    seqs, layout = list_sequences(tmp_path, "grew")
    assert layout == "grew-raw" and labels(seqs) == expected


def test_missing_source_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_casiab(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no PNG sequences found .*<id>/<type>/<view>/\*\.png"):
        pretreat_tree(tmp_path / "empty", tmp_path / "out", "casiab", progress=False)


# --- whole trees ---------------------------------------------------------------------------------


def raw_frame(rng, h=48, w=40):
    """A small raw frame: a soft-edged blob of random size and position (never near-empty)."""
    img = np.zeros((h, w), np.uint8)
    bh, bw = int(rng.integers(20, h)), int(rng.integers(6, 14))
    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    img[y:y + bh, x:x + bw] = 255
    img[y:y + bh, x] = 128
    return img


def write_raw_casiab(root, frames=6):
    """2 subjects x 2 views; 002/nm-01/090 has two near-empty frames, 002/nm-01/000 only empty
    frames (so it is not written)."""
    rng = np.random.default_rng(7)
    for subject in ("001", "002"):
        for view in ("000", "090"):
            d = root / subject / "nm-01" / view
            d.mkdir(parents=True)
            for i in range(frames):
                img = raw_frame(rng)
                if subject == "002" and (view == "000" or i < 2):
                    img[:] = 0
                cv2.imwrite(str(d / f"{i:04d}.png"), img)


@pytest.fixture
def raw(tmp_path):
    write_raw_casiab(tmp_path / "raw")
    return tmp_path / "raw"


def read_log(dest):
    return [json.loads(line) for line in (dest / pt.LOG_NAME).read_text().splitlines()]


def tree_bytes(dest):
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*.pkl"))}


def test_pretreat_tree_end_to_end_and_every_reader_gives_the_same_frames(raw, tmp_path):
    dest = tmp_path / "pkl"
    summary = pretreat_tree(raw, dest, "casiab", workers=1, progress=False)
    assert (summary.sequences, summary.written, summary.empty, summary.errors) == (4, 3, 1, 0)
    assert summary.frames_in == 24 and summary.frames_kept == 16 and summary.frames_dropped == 8
    assert json.loads((dest / pt.SUMMARY_NAME).read_text()) == summary.to_dict()
    assert not (dest / "002" / "nm-01" / "000").exists()

    pkl_store = open_store(dest)
    assert isinstance(pkl_store, PklTreeStore) and len(pkl_store) == 3
    # write the pretreated frames as a PNG tree and read them back through PngTreeStore
    png_root = tmp_path / "png"
    for i, row in pkl_store.index.iterrows():
        d = png_root / row["subject"] / row["type"] / row["view"]
        d.mkdir(parents=True)
        for t, frame in enumerate(pkl_store.frames(i)):
            cv2.imwrite(str(d / f"{t:04d}.png"), frame)
    png_store = PngTreeStore(png_root)
    assert png_store.index[["subject", "type", "view"]].equals(pkl_store.index[["subject", "type", "view"]])
    for i, row in pkl_store.index.iterrows():
        src_frames = sorted((raw / row["subject"] / row["type"] / row["view"]).glob("*.png"))
        direct, _ = pretreat_sequence(src_frames, 64, "casiab")
        via_pkl = load_array_pickle(dest / row["subject"] / row["type"] / row["view"] / f"{row['view']}.pkl")
        assert direct.shape[1:] == (64, 64) and direct.dtype == np.uint8
        for frames in (via_pkl, pkl_store.frames(i), png_store.frames(i)):
            np.testing.assert_array_equal(frames, direct)
        assert png_store.index.loc[i, "length"] == len(direct)


def test_log_records_drops_short_and_empty_sequences(raw, tmp_path):
    dest = tmp_path / "pkl"
    pretreat_tree(raw, dest, "casiab", workers=1, progress=False)
    log = {(r["subject"], r["view"]): r for r in read_log(dest)}
    assert [r["status"] for r in log.values()] == ["written", "written", "empty", "written"]
    partial = log[("002", "090")]
    assert partial["source"] == "002/nm-01/090" and partial["frames_in"] == 6 and partial["frames_kept"] == 4
    assert [d["frame"] for d in partial["dropped"]] == ["0000.png", "0001.png"]
    assert "almost no foreground" in partial["dropped"][0]["reason"]
    assert "fewer than 5" in partial["warning"]
    assert "warning" not in log[("001", "000")]
    assert log[("002", "000")]["frames_kept"] == 0


def test_rerun_skips_finished_sequences_and_ignores_leftover_temp_files(raw, tmp_path):
    dest = tmp_path / "pkl"
    pretreat_tree(raw, dest, "casiab", workers=1, progress=False)
    first = tree_bytes(dest)
    # an interrupted run: one output missing, its half-written temporary file left behind
    done = dest / "001" / "nm-01" / "090" / "090.pkl"
    done.unlink()
    leftover = done.with_name(".090.pkl.tmp-12345")
    leftover.write_bytes(b"half a pickle")
    assert len(PklTreeStore(dest)) == 2  # the temp file is not mistaken for a sequence
    summary = pretreat_tree(raw, dest, "casiab", workers=1, progress=False)
    assert (summary.written, summary.skipped_existing, summary.empty) == (1, 2, 1)
    assert not leftover.exists()
    assert tree_bytes(dest) == first
    statuses = {(r["subject"], r["view"]): r["status"] for r in read_log(dest)}
    assert statuses[("001", "090")] == "written" and statuses[("001", "000")] == "skipped-existing"
    # a skipped sequence keeps the details logged when it was written
    carried = next(r for r in read_log(dest) if (r["subject"], r["view"]) == ("002", "090"))
    assert carried["frames_kept"] == 4 and len(carried["dropped"]) == 2


def test_interrupted_write_leaves_no_partial_output(raw, tmp_path, monkeypatch):
    def dump_then_die(obj, f, protocol=None):
        f.write(pickle.dumps(obj, protocol=protocol)[:50])
        raise KeyboardInterrupt

    monkeypatch.setattr(pt.pickle, "dump", dump_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretreat_tree(raw, tmp_path / "pkl", "casiab", workers=1, progress=False)
    assert list((tmp_path / "pkl").rglob("*.pkl")) == [] and list((tmp_path / "pkl").rglob("*.tmp")) == []


def test_corrupt_png_is_reported_and_skipped_or_raises_when_strict(raw, tmp_path):
    bad = raw / "001" / "nm-01" / "000" / "0003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    summary = pretreat_tree(raw, tmp_path / "pkl", "casiab", workers=1, progress=False)
    assert summary.unreadable == [str(bad)] and summary.written == 3
    rec = next(r for r in read_log(tmp_path / "pkl") if (r["subject"], r["view"]) == ("001", "000"))
    assert rec["status"] == "written" and rec["frames_kept"] == 5
    assert rec["unreadable"][0]["path"] == str(bad)
    with pytest.raises(DataError, match=str(bad)):
        pretreat_tree(raw, tmp_path / "strict", "casiab", workers=1, progress=False, strict=True)


def test_two_runs_give_the_same_bytes(raw, tmp_path):
    pretreat_tree(raw, tmp_path / "a", "casiab", workers=1, progress=False)
    pretreat_tree(raw, tmp_path / "b", "casiab", workers=1, progress=False)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    assert (tmp_path / "a" / pt.LOG_NAME).read_bytes() == (tmp_path / "b" / pt.LOG_NAME).read_bytes()


def test_two_workers_equal_one(raw, tmp_path):
    one = pretreat_tree(raw, tmp_path / "one", "casiab", workers=1, progress=False)
    two = pretreat_tree(raw, tmp_path / "two", "casiab", workers=2, progress=False)
    assert tree_bytes(tmp_path / "one") == tree_bytes(tmp_path / "two") and len(tree_bytes(tmp_path / "one")) == 3
    assert (tmp_path / "one" / pt.LOG_NAME).read_bytes() == (tmp_path / "two" / pt.LOG_NAME).read_bytes()
    assert {k: v for k, v in one.to_dict().items() if k not in ("dest", "log")} == \
        {k: v for k, v in two.to_dict().items() if k not in ("dest", "log")}


def test_size_128_tree(raw, tmp_path):
    pretreat_tree(raw, tmp_path / "hi", "gait3d", img_size=128, workers=1, progress=False)
    frames = PklTreeStore(tmp_path / "hi").frames(0)
    assert frames.shape[1:] == (128, 128) and frames.dtype == np.uint8


def test_grew_frames_are_used_as_distributed(tmp_path):
    rng = np.random.default_rng(3)
    gallery = tmp_path / "raw" / "test" / "gallery" / "00001" / "seqA"
    gallery.mkdir(parents=True)
    frames = rng.integers(0, 256, size=(3, 64, 64), dtype=np.uint8)
    frames[1] = 0  # kept: GREW frames are not dropped, cropped or resized
    for i, f in enumerate(frames):
        cv2.imwrite(str(gallery / f"{i:03d}.png"), f)
    probe = tmp_path / "raw" / "test" / "probe" / "vid1"
    probe.mkdir(parents=True)
    cv2.imwrite(str(probe / "000.png"), np.zeros((64, 44), np.uint8))  # wrong size
    summary = pretreat_tree(tmp_path / "raw", tmp_path / "pkl", "grew", workers=1, progress=False)
    assert (summary.written, summary.errors) == (1, 1) and "64x64" in summary.failed[0]
    written = load_array_pickle(tmp_path / "pkl" / "00001" / "01" / "seqA" / "seqA.pkl")
    np.testing.assert_array_equal(written, frames)
    with pytest.raises(DataError, match="000.png"):
        pretreat_tree(tmp_path / "raw", tmp_path / "strict", "grew", workers=1, progress=False, strict=True)


def test_unknown_dataset_and_format(raw, tmp_path):
    with pytest.raises(DataError, match="did you mean 'oumvlp'"):
        pretreat_tree(raw, tmp_path / "x", "ou-mvlp", progress=False)
    with pytest.raises(DataError, match="output format"):
        pretreat_tree(raw, tmp_path / "x", "casiab", out_format="hdf5", progress=False)


# --- PNG-tree store ------------------------------------------------------------------------------


def test_png_tree_store_names_the_bad_file(tmp_path):
    d = tmp_path / "001" / "nm-01" / "000"
    d.mkdir(parents=True)
    cv2.imwrite(str(d / "0000.png"), np.zeros((64, 64), np.uint8))
    cv2.imwrite(str(d / "0001.png"), np.zeros((64, 44), np.uint8))
    store = PngTreeStore(tmp_path)
    assert len(store) == 1 and store.index.loc[0, "length"] == 2 and len(store.fingerprint) == 16
    with pytest.raises(DataError, match=r"0001\.png: frame is 64x44 but 0000\.png is 64x64"):
        store.frames(0)
    cv2.imwrite(str(d / "0001.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"0001\.png: expected a single-channel 8-bit frame"):
        store.frames(0)
    (d / "0001.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"0001\.png: not a readable PNG"):
        store.frames(0)
