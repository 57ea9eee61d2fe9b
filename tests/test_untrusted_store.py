"""Untrusted datasets: a packed store's index is checked row by row when the store opens, a
malformed row is never served, `data check` reports it and a run leaves it out before training
(or stops with --strict); mixed frame sizes and a missing meta.json are named."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from gaitbench.data.store import PackedStore, open_store
from gaitbench.errors import DataError

from .test_untrusted_cli import run_cli


def packed_copy(store, dest):
    """A copy of packed ``store`` whose index can be edited (frames.npy is shared, read-only)."""
    dest.mkdir()
    for name in ("meta.json", "index.csv"):
        shutil.copy(store.root / name, dest / name)
    (dest / "frames.npy").symlink_to(store.root / "frames.npy")
    return dest


def edit_index(root, edits):
    """Set cells of index.csv: ``{(row, column): text}`` (rows count from 0, after the header)."""
    lines = (root / "index.csv").read_text().splitlines()
    header = lines[0].split(",")
    for (row, col), text in edits.items():
        cells = lines[row + 1].split(",")
        cells[header.index(col)] = text
        lines[row + 1] = ",".join(cells)
    (root / "index.csv").write_text("\n".join(lines) + "\n")


FAULTS = [  # (column, planted text, what the message says)
    ("offset", "-20", "offset -20 is negative"),
    ("length", "-3", "length -3, expected at least 1 frame"),
    ("length", "0", "length 0, expected at least 1 frame"),
    ("offset", "10.7", "offset is '10.7', expected an integer"),
    ("length", "nan", "length is 'nan', expected an integer"),
    ("offset", "abc", "offset is 'abc', expected an integer"),
    ("offset", "", "offset is '', expected an integer"),
    ("length", "100000", "lie beyond the"),
    ("height", "32", "frame size 32x44 differs from frames.npy's 64x44"),
    ("subject", "", "subject is empty"),
]


@pytest.mark.parametrize("column,text,expected", FAULTS, ids=[f"{c}={t or 'empty'}" for c, t, _ in FAULTS])
def test_a_malformed_index_row_is_named_and_never_served(small_synth, tmp_path, column, text, expected):
    store, _ = small_synth
    last = len(store) - 1  # the last row: a negative offset there used to read another sequence's frames
    root = packed_copy(store, tmp_path / "s")
    edit_index(root, {(last, column): text})
    opened = open_store(root)
    assert list(opened.malformed) == [last]
    assert opened.malformed[last].startswith(f"index.csv line {last + 2} (row {last}): ")
    assert expected in opened.malformed[last]
    with pytest.raises(DataError, match="is not served") as err:
        opened.frames(last)
    assert expected in str(err.value)
    with pytest.raises(DataError, match="is not served"):
        opened.clip(last, np.array([0]))
    with pytest.raises(DataError, match="is not served"):
        opened.clip(last, slice(0, 1))
    for i in (0, last - 1):  # every other row is served as it was
        np.testing.assert_array_equal(opened.frames(i), store.frames(i))


def test_data_check_reports_malformed_rows_and_exits_nonzero(small_synth, tmp_path):
    store, partition = small_synth
    root = packed_copy(store, tmp_path / "s")
    last = len(store) - 1
    edit_index(root, {(last, "offset"): "-20", (3, "length"): "0"})
    proc = run_cli("data", "check", str(root), "--protocol", "casiab", "--partition", str(partition))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 sequences are unreadable, empty or malformed" in proc.stdout
    assert f"line {last + 2} (row {last}): offset -20 is negative" in proc.stdout
    assert "line 5 (row 3): length 0, expected at least 1 frame" in proc.stdout
    assert "OK: the protocol" not in proc.stdout


def _run_args(store, partition, out):
    return ["run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store), "--partition",
            str(partition), "--recipe", "quick", "--iterations", "2", "--quiet", "--set", "sampler.P=2",
            "--set", "sampler.K=2", "--set", "sampler.frames=3", "--set", "sampler.min_frames=1", "--out", str(out)]


def test_run_leaves_malformed_rows_out_before_training_and_strict_stops(small_synth, tmp_path):
    store, partition = small_synth
    root = packed_copy(store, tmp_path / "s")
    subjects = store.index["subject"].to_numpy()
    train_row = int(np.flatnonzero(subjects == "001")[0])
    test_rows = np.flatnonzero(subjects == "012")
    edit_index(root, {(train_row, "length"): "0", (int(test_rows[-1]), "offset"): "-20",
                      (int(test_rows[0]), "length"): "-5"})
    strict = run_cli(*_run_args(root, partition, tmp_path / "strict"), "--strict")
    assert strict.returncode != 0 and "Traceback" not in strict.stderr
    assert "3 malformed sequences" in strict.stderr and "is negative" not in strict.stdout
    assert not (tmp_path / "strict" / "checkpoints").exists()  # stopped before training

    proc = run_cli(*_run_args(root, partition, tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "WARNING: 3 malformed sequences" in proc.stdout and "left out of training and evaluation" in proc.stdout
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["iterations"] == 2
    # left out before training, not met (and skipped) while training or embedding
    assert "could not be read" not in proc.stdout and "left out of training:" not in proc.stdout
    assert result["data_problems"]["test_unreadable"] == 0
    assert result["data_problems"]["training"]["short_left_out"] == 0
    embedded = np.load(tmp_path / "run" / "embeddings.npz")
    assert len(embedded["subjects"]) == len(test_rows) * 6 - 2  # subjects 007-012, two rows left out


def test_data_check_reports_mixed_frame_sizes_with_the_sizes(tmp_path):
    rng = np.random.default_rng(0)
    for subject in ("001", "002"):
        for view in ("000", "018"):
            d = tmp_path / "tree" / subject / "nm-01" / view
            d.mkdir(parents=True)
            frames = (rng.random((6, 64, 64)) > 0.5).astype(np.uint8) * 255
            (d / f"{view}.pkl").write_bytes(pickle.dumps(frames))
    odd = tmp_path / "tree" / "002" / "nm-01" / "018" / "018.pkl"
    odd.write_bytes(pickle.dumps(np.full((6, 32, 200), 255, np.uint8)))
    part = tmp_path / "partition.json"
    part.write_text(json.dumps({"TRAIN_SET": ["001"], "TEST_SET": ["002"]}))
    proc = run_cli("data", "check", str(tmp_path / "tree"), "--protocol", "casiab", "--partition", str(part))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "frame sizes differ: 64x64 (3 sequences); 32x200 (1 sequences, e.g. 002/nm-01/018" in proc.stdout


def test_a_missing_meta_json_is_named(small_synth, tmp_path):
    store, _ = small_synth
    root = packed_copy(store, tmp_path / "s")
    (root / "meta.json").unlink()
    proc = run_cli("data", "check", str(root), "--protocol", "casiab")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "meta.json is missing" in proc.stderr and "no sequences found" not in proc.stderr
    assert isinstance(open_store(store.root), PackedStore)
