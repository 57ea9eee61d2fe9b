"""Seeded fuzzing of the two readers of strangers' files: the packed store's index.csv and the
array unpickler. Every mutated file either loads exactly what it describes, or is refused with a
gaitbench error; no other exception, no frame outside frames.npy, no memory the file did not hold."""

from __future__ import annotations

import pickle
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from gaitbench.data.safe_pickle import loads_array_pickle
from gaitbench.data.store import PackedStore, PackedWriter
from gaitbench.errors import GaitbenchError

CASES = 300

# ----------------------------------------------------------------------------- packed index

CELLS = ["-1", "0", "-20", "10.7", "nan", "NaN", "abc", "", "1e3", "+3", " 4", "4 ", "99999999999999999999",
         "0x10", "3.0", "\u0663", "inf", "1", "2", "7", "12", "13", "16", "8", "6", '"5"', "5,5", "-0"]


@pytest.fixture(scope="module")
def tiny_packed(tmp_path_factory):
    """Six sequences of 2-5 frames of 8 x 6, every frame distinct."""
    root = tmp_path_factory.mktemp("fuzz") / "packed"
    index = pd.DataFrame({"subject": ["001", "001", "002", "002", "003", "003"], "type": ["nm-01", "nm-02"] * 3,
                          "view": ["000", "090"] * 3, "length": [2, 3, 4, 5, 2, 3]})
    writer = PackedWriter(root, index, (8, 6), {"dataset": "fuzz", "synthetic": True, "fingerprint": "f" * 16})
    frames = writer.open_frames()
    frames[:] = np.arange(frames.size, dtype=np.uint64).reshape(frames.shape) % 251
    frames.flush()
    del frames
    writer.finish()
    return root


def _mutate_index(text: str, rng: np.random.Generator) -> bytes:
    lines = text.splitlines()
    kind = rng.integers(6)
    if kind <= 2:  # one to three cells replaced
        for _ in range(kind + 1):
            row = int(rng.integers(1, len(lines)))
            cells = lines[row].split(",")
            cells[int(rng.integers(len(cells)))] = CELLS[int(rng.integers(len(CELLS)))]
            lines[row] = ",".join(cells)
        return ("\n".join(lines) + "\n").encode()
    raw = bytearray(text.encode())
    if kind == 3:  # a byte flipped
        raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
    elif kind == 4:  # cut short
        raw = raw[: int(rng.integers(len(raw)))]
    else:  # a line dropped or doubled
        row = int(rng.integers(len(lines)))
        lines = lines[:row] + ([lines[row]] * 2 if rng.integers(2) else []) + lines[row + 1:]
        raw = bytearray(("\n".join(lines) + "\n").encode())
    return bytes(raw)


def _expected_rows(root, frames_shape):
    """What each row of the (mutated) index describes, read as plain text by pandas and judged
    by the format's rules (independently of the store): (offset, length) or None when invalid."""
    table = pd.read_csv(root / "index.csv", dtype=str, keep_default_na=False)
    total, height, width = frames_shape
    integer = re.compile(r"\s*[+-]?[0-9]{1,18}\s*")
    out = []
    for _, row in table.iterrows():
        cells = {c: str(row[c]) for c in ("offset", "length", "height", "width")}
        if not all(integer.fullmatch(v) for v in cells.values()) or any(
                not str(row[c]).strip() for c in ("subject", "type", "view")):
            out.append(None)
            continue
        o, n, h, w = (int(cells[c]) for c in ("offset", "length", "height", "width"))
        out.append((o, n) if o >= 0 and n >= 1 and o + n <= total and (h, w) == (height, width) else None)
    return out


def test_fuzzed_packed_indexes_load_exactly_or_are_refused(tiny_packed, tmp_path):
    rng = np.random.default_rng(20261206)
    original = (tiny_packed / "index.csv").read_text()
    frames = np.load(tiny_packed / "frames.npy")
    outcomes = {"refused": 0, "rows served": 0, "rows refused": 0}
    for case in range(CASES):
        root = tmp_path / f"c{case}"
        root.mkdir()
        shutil.copy(tiny_packed / "meta.json", root / "meta.json")
        (root / "frames.npy").symlink_to(tiny_packed / "frames.npy")
        (root / "index.csv").write_bytes(_mutate_index(original, rng))
        try:
            store = PackedStore(root)
        except GaitbenchError:
            outcomes["refused"] += 1
            continue
        expected = _expected_rows(root, frames.shape)
        assert len(expected) == len(store), case
        for i, want in enumerate(expected):
            if want is None:
                assert i in store.malformed, (case, i)
                with pytest.raises(GaitbenchError):
                    store.frames(i)
                outcomes["rows refused"] += 1
                continue
            assert i not in store.malformed, (case, i, store.malformed.get(i))
            o, n = want
            got = store.frames(i)
            np.testing.assert_array_equal(got, frames[o:o + n])
            np.testing.assert_array_equal(store.clip(i, np.arange(n)), frames[o:o + n])
            outcomes["rows served"] += 1
    # the mutations reach every outcome: whole files refused, rows refused, rows served
    assert min(outcomes.values()) > 20, outcomes


# ----------------------------------------------------------------------------- pickles


def _mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    raw = bytearray(data)
    kind = rng.integers(5)
    at = int(rng.integers(len(raw)))
    if kind == 0:
        raw[at] = int(rng.integers(256))
    elif kind == 1:
        raw = raw[:at]
    elif kind == 2:
        raw.insert(at, int(rng.integers(256)))
    elif kind == 3:
        del raw[at]
    else:  # a run of bytes set to 0xff: large lengths and counts
        raw[at:at + 4] = b"\xff" * len(raw[at:at + 4])
    return bytes(raw)


def test_fuzzed_array_pickles_load_what_they_hold_or_are_refused():
    rng = np.random.default_rng(20261207)
    base = (np.arange(3 * 8 * 6, dtype=np.uint8).reshape(3, 8, 6) * 7) % 251
    sources = [(pickle.dumps(arr, protocol=p), arr, p) for p in (2, 4, 5)
               for arr in (base, np.asfortranarray(base), base.astype(np.float32))]
    outcomes = {"refused": 0, "exact": 0, "other": 0}
    for case in range(CASES):
        data, arr, protocol = sources[case % len(sources)]
        mutated = _mutate_bytes(data, rng)
        try:
            got = loads_array_pickle(mutated, f"case{case}.pkl")
        except GaitbenchError:
            outcomes["refused"] += 1
            continue
        assert isinstance(got, np.ndarray) and not got.dtype.hasobject, case
        assert got.nbytes <= len(mutated), case  # never more than the file holds
        if protocol >= 3:  # raw bytes are stored as they are: the array's memory comes from the file
            assert got.tobytes(order="A") in mutated, case
        if got.shape == arr.shape and got.dtype == arr.dtype and np.array_equal(got, arr):
            outcomes["exact"] += 1
        else:
            outcomes["other"] += 1  # a mutation inside the data or the header that still describes an array
    assert min(outcomes.values()) > 0, outcomes
