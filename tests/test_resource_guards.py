"""Resource claims refused before allocation with the figure named, and a damaged synthetic
cache detected and regenerated (issue 23, items 7 and 8)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from gaitbench.data import synthetic
from gaitbench.data.synthetic import verify_frames

from .fault_tools import cli, one_clear_line
from .test_faults_disk import _run_args, data  # noqa: F401  (fixture)


def test_a_batch_that_cannot_fit_is_refused_before_anything_is_written(data, tmp_path):  # noqa: F811
    store, partition = data
    out = tmp_path / "run"
    args = _run_args(store, partition, out)
    args[args.index("sampler.K=2")] = "sampler.K=1000"
    line = one_clear_line(cli(*args), "sampler P x K = 2 x 1000", "GiB", "available", "sampler.K")
    assert "triplet loss" in line
    assert not out.exists()


def test_the_default_batch_passes_the_guard(data):  # noqa: F811
    from gaitbench.data.sampling import check_batch_memory

    need = check_batch_memory(8, 16, 30, (64, 44), activation_bytes_per_frame=3e6, parts=62,
                              available=16 << 30, device="cpu")
    assert sum(need.values()) < 16 << 30
    with pytest.raises(Exception, match="sampler P x K = 8 x 1000"):
        check_batch_memory(8, 1000, 30, (64, 44), activation_bytes_per_frame=0, parts=1, available=16 << 30,
                           device="cpu")


def _embeddings_file(path, **extra):
    n = 6
    np.savez(path, embeddings=np.random.default_rng(0).random((n, 8, 2), dtype=np.float32),
             subjects=np.array(["1", "1", "1", "2", "2", "2"]), types=np.array(["nm-01", "nm-05", "bg-01"] * 2),
             views=np.array(["000"] * n), method=np.asarray("gaitset"), **extra)
    return path


def test_an_unused_npz_key_is_never_decompressed(tmp_path):
    """``gaitbench evaluate`` on an embeddings file carrying 64 MiB of zeros under a key the contract
    does not have: evaluated, and the entry never inflated."""
    path = tmp_path / "e.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros(64 << 20, np.uint8))  # 64 MiB of zeros, a few KiB compressed
    views = [f"{18 * i:03d}" for i in range(11)]  # a CASIA-B test set: 2 subjects, every view
    rows = [(s, t, v) for s in ("075", "076") for t in ("nm-01", "nm-05", "bg-01", "cl-01") for v in views]
    subjects, types, vws = (np.array(c) for c in zip(*rows))
    np.savez(path, embeddings=np.random.default_rng(0).random((len(rows), 8, 2), dtype=np.float32),
             subjects=subjects, types=types, views=vws, method=np.asarray("gaitset"))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("junk.npy", buf.getvalue())
    import tracemalloc

    tracemalloc.start()
    result = cli("evaluate", "--protocol", "casiab", "--embeddings", str(path), "--json", str(tmp_path / "r.json"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert peak < 8 << 20, peak  # the 64 MiB entry was not inflated


def test_an_npz_array_claiming_more_than_it_holds_is_refused_before_allocation(tmp_path):
    path = _embeddings_file(tmp_path / "e.npz")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1 << 28, 256, 16)})
    forged = header.getvalue() + b"\0" * 64  # the header (with its magic) claims 4 TiB
    rebuilt = tmp_path / "forged.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, forged if item == "embeddings.npy" else src.read(item))
    line = one_clear_line(cli("evaluate", "--protocol", "casiab", "--embeddings", str(rebuilt)),
                          "forged.npz", "'embeddings' claims", "GiB")
    assert "damaged or forged" in line


def test_a_damaged_synthetic_cache_is_detected_and_regenerated(tmp_path):
    """Through the CLI: a run on a cached synthetic set whose frames were damaged under an unchanged
    fingerprint says so, renders the set again and gives the undamaged run's numbers."""
    env = {"GAITBENCH_CACHE": str(tmp_path / "cache"), "GAITBENCH_SYNTH_WORKERS": "1"}
    args = ("run", "--smoke", "--quiet", "--method", "gaitset", "--protocol", "casiab")
    first = cli(*args, "--out", str(tmp_path / "r1"), env=env)
    assert first.exit_code == 0, first.output
    (frames,) = (tmp_path / "cache").rglob("frames.npy")
    good = hashlib.sha256(frames.read_bytes()).hexdigest()
    assert verify_frames(frames.parent) is None
    arr = np.load(frames, mmap_mode="r+")
    arr[: len(arr) // 2] = 0  # half of the frames zeroed, the fingerprint unchanged
    arr.flush()
    del arr
    assert "does not match its checksum" in verify_frames(frames.parent)
    second = cli(*args, "--out", str(tmp_path / "r2"), env=env)
    assert second.exit_code == 0, second.output
    assert any("damaged" in line and "generating it again" in line for line in second.output.splitlines()), \
        second.output
    assert hashlib.sha256(frames.read_bytes()).hexdigest() == good
    metrics = [json.loads((tmp_path / r / "result.json").read_text())["metrics"] for r in ("r1", "r2")]
    assert metrics[0] == metrics[1]
    assert [p.name for p in (tmp_path / "cache").rglob("frames.npy")] == ["frames.npy"]  # no copy left over


def test_a_sampled_check_finds_damage_to_part_of_a_large_array(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHECKSUM_BLOCK", 1024)
    monkeypatch.setattr(synthetic, "VERIFY_ALL_BELOW", 0)  # sample even a small array
    (tmp_path / "frames.npy").write_bytes(np.random.default_rng(0).integers(0, 255, 200 * 1024, np.uint8).tobytes())
    synthetic.write_checksums(tmp_path)
    assert json.loads((tmp_path / "checksums.json").read_text())["block_bytes"] == 1024
    assert verify_frames(tmp_path) is None
    with open(tmp_path / "frames.npy", "r+b") as fh:  # a quarter of the blocks zeroed
        fh.seek(100 * 1024)
        fh.write(b"\0" * 50 * 1024)
    found = [verify_frames(tmp_path, sample=16, seed=s) is not None for s in range(20)]
    assert all(found)
