"""The restricted unpickler: numpy.ndarray is never called by a pickle (no uninitialised memory),
no array is allocated beyond the file's own size (measured), and `data check` refuses both."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gaitbench.data.safe_pickle import load_array_pickle, loads_array_pickle
from gaitbench.errors import DataError

from .test_untrusted_cli import run_cli

FOUR_GB = 2**32


class CallsNdarray:
    """A pickle that calls ``numpy.ndarray(shape, 'u1')`` itself: uninitialised memory of any size."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return (np.ndarray, (self.shape, "u1"))


class ClaimsSize:
    """numpy's own spelling (``_reconstruct`` + state), with a shape the data does not have."""

    def __init__(self, shape, data=b"abc"):
        self.shape, self.data = shape, data

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (0,), b"b"), (1, self.shape, np.dtype("u1"), False, self.data))


class ClaimsBuffer:
    """Protocol 5's spelling (``_frombuffer``), with a shape larger than its buffer."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        from numpy._core.numeric import _frombuffer

        return (_frombuffer, (bytearray(b"abc"), np.dtype("u1"), self.shape, "C"))


class NeverBuilt:
    """``_reconstruct`` without the state that gives the array its data."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (3, 64, 44), b"b"))


CRAFTED = {
    "ndarray-called": lambda: pickle.dumps(CallsNdarray((FOUR_GB,)), protocol=2),
    "state-claims-4GB": lambda: pickle.dumps(ClaimsSize((FOUR_GB,)), protocol=4),
    "buffer-claims-4GB": lambda: pickle.dumps(ClaimsBuffer((FOUR_GB,)), protocol=5),
    # a counted bytearray of 4 GB with 3 bytes behind it: Python's own unpickler allocates the 4 GB
    "bytearray-claims-4GB": lambda: b"\x80\x05\x96" + FOUR_GB.to_bytes(8, "little") + b"abc.",
    # a memo index of 2**29: Python's unpickler grows its memo table to 4 GB of pointers
    "memo-index-4GB": lambda: b"\x80\x04N" + b"r" + (2**29).to_bytes(4, "little") + b".",
}


def test_a_90_byte_pickle_claiming_4_GB_is_refused_within_a_small_peak(tmp_path):
    """Measured in a fresh interpreter: the peak of traced allocations (numpy reports its data
    buffers to tracemalloc) and the growth of the resident set while each file is refused."""
    files = {}
    for name, make in CRAFTED.items():
        files[name] = tmp_path / f"{name}.pkl"
        files[name].write_bytes(make())
    assert len(files["ndarray-called"].read_bytes()) <= 90
    script = textwrap.dedent(f"""
        import json, resource, sys, tracemalloc
        from gaitbench.data.safe_pickle import load_array_pickle
        from gaitbench.errors import DataError
        found = {{}}
        for name, path in {json.dumps({k: str(v) for k, v in files.items()})}.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            tracemalloc.start()
            try:
                load_array_pickle(path)
                outcome = "loaded"
            except DataError as exc:
                outcome = str(exc)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            found[name] = {{"outcome": outcome, "peak_bytes": peak, "rss_growth_kb": grown}}
        print(json.dumps(found))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    for name, got in found.items():
        assert got["outcome"] != "loaded", name
        assert str(files[name]) in got["outcome"], got
        assert got["peak_bytes"] < 100 * 2**20, (name, got)  # well under 100 MB (in practice a few kB)
        assert got["rss_growth_kb"] < 100 * 1024, (name, got)
    assert "numpy.ndarray" in found["ndarray-called"]["outcome"] or "ndarray" in found["ndarray-called"]["outcome"]
    assert "claims 4,294,967,296 bytes" in found["state-claims-4GB"]["outcome"]
    assert "claims 4,294,967,296 bytes" in found["buffer-claims-4GB"]["outcome"]
    assert "expected 4294967296 bytes in a bytearray8" in found["bytearray-claims-4GB"]["outcome"]
    assert "memo index 536870912 after 2 opcodes" in found["memo-index-4GB"]["outcome"]


@pytest.mark.parametrize("payload", [CallsNdarray((3, 64, 44)), NeverBuilt()], ids=["ndarray-called", "never-built"])
def test_uninitialised_memory_is_never_accepted(tmp_path, payload):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError, match="x.pkl"):
        load_array_pickle(path)


@pytest.mark.parametrize("shape,data,expected", [
    ((3, 2), b"abc", "needs 6 bytes but its data has 3"),
    ((-1,), b"abc", "expected a tuple of non-negative integers"),
    ((3,), "abc", "expected the order flag and the raw bytes"),
])
def test_array_state_is_checked_before_numpy_sees_it(shape, data, expected):
    with pytest.raises(DataError, match=expected):
        loads_array_pickle(pickle.dumps(ClaimsSize(shape, data), protocol=4), "f.pkl")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_layout_numpy_writes_loads_exactly(protocol):
    base = np.arange(4 * 6 * 5, dtype=np.uint8).reshape(4, 6, 5)
    for arr in (base, np.asfortranarray(base), base.transpose(2, 0, 1), base[:, ::2], base[:0],
                base.astype(np.float32)):
        got = loads_array_pickle(pickle.dumps(arr, protocol=protocol), "f.pkl")
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)


def test_data_check_refuses_a_pickle_that_calls_ndarray(tmp_path):
    rng = np.random.default_rng(0)
    for subject in ("001", "002"):
        d = tmp_path / "tree" / subject / "nm-01" / "000"
        d.mkdir(parents=True)
        (d / "000.pkl").write_bytes(pickle.dumps((rng.random((6, 64, 64)) > 0.5).astype(np.uint8) * 255))
    planted = tmp_path / "tree" / "002" / "nm-01" / "000" / "000.pkl"
    planted.write_bytes(pickle.dumps(CallsNdarray((6, 64, 64)), protocol=2))
    part = tmp_path / "partition.json"
    part.write_text(json.dumps({"TRAIN_SET": ["001"], "TEST_SET": ["002"]}))
    proc = run_cli("data", "check", tmp_path / "tree", "--protocol", "casiab", "--partition", part)
    assert proc.returncode == 1
    assert "002/nm-01/000" in proc.stdout and "numpy.ndarray" in proc.stdout and "nothing from it was run" in proc.stdout
