"""A full disk, a quota, a read-only folder: each writer ends in one line naming the file and the
free space, keeps everything already written, and leaves no temporary (issue 19, item 1; issue
23, item 4). A real tmpfs where the tests may mount one, else the disk's error raised at the
write; root ignores file modes, so EACCES is injected."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from gaitbench.training.checkpoint import read_checkpoint

from .fault_tools import cli, inject, one_clear_line, small_tmpfs, temporaries, tree_hashes


@pytest.fixture(scope="module")
def data(small_synth, tmp_path_factory):
    """The small synthetic set with a partition of 2 training and 2 test subjects (fast runs)."""
    store, _ = small_synth
    partition = tmp_path_factory.mktemp("partition") / "partition.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001", "002"], "TEST_SET": ["011", "012"]}))
    return store, partition


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A finished 2-iteration run with a checkpoint at each iteration."""
    store, partition = data
    out = tmp_path_factory.mktemp("finished") / "run"
    result = cli(*_run_args(store, partition, out))
    assert result.exit_code == 0, result.output
    return out


def _run_args(store, partition, out, iterations=2):
    return ["run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root), "--partition",
            str(partition), "--recipe", "quick", "--iterations", str(iterations), "--set", "sampler.P=2",
            "--set", "sampler.K=2", "--set", "train.checkpoint_every=1", "--quiet", "--out", str(out)]


def test_full_disk_while_a_checkpoint_is_written(data, tmp_path, monkeypatch):
    store, partition = data
    out = tmp_path / "run"
    inject(monkeypatch, ".iter-0000002.pt", after=1000)  # the second checkpoint: torch's writer fails
    result = cli(*_run_args(store, partition, out, iterations=3))
    line = one_clear_line(result, "cannot write", "iter-0000002.pt", "no space left", "free",
                          "last good checkpoint", "iter-0000001.pt", "--resume")
    assert "enforce fail" not in line and "RuntimeError" not in line
    assert not temporaries(out)
    assert read_checkpoint(out / "checkpoints" / "iter-0000001.pt")["iteration"] == 1  # intact
    monkeypatch.undo()
    before = (out / "checkpoints" / "iter-0000001.pt").read_bytes()
    resumed = cli(*_run_args(store, partition, out, iterations=3)[:-2], "--out", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert (out / "result.json").is_file() and not temporaries(out)
    assert before  # the checkpoint it resumed from was whole


@pytest.mark.parametrize("name", ["embeddings.npz", "result.json"])
def test_full_disk_while_the_run_record_is_written(data, tmp_path, monkeypatch, name):
    store, partition = data
    out = tmp_path / "run"
    inject(monkeypatch, f".{name}", after=100)
    result = cli(*_run_args(store, partition, out))
    one_clear_line(result, f"cannot write {out / name}", "no space left", "needed")
    assert not (out / name).exists()  # never half a file under its real name
    assert not temporaries(out)
    assert read_checkpoint(out / "checkpoints" / "final.pt")["iteration"] == 2  # training is kept


@pytest.mark.parametrize("code, words", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only"),
                                         (errno.EDQUOT, "quota")])
def test_report_on_a_refusing_disk(finished_run, tmp_path, monkeypatch, code, words):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = tree_hashes(run)
    inject(monkeypatch, "report.html", code=code)
    one_clear_line(cli("report", str(run)), "report.html", words)
    assert tree_hashes(run) == before and not temporaries(run)


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_leaderboard_plot_on_a_full_disk(finished_run, tmp_path, monkeypatch, suffix):
    plot = tmp_path / f"cost.{suffix}"
    inject(monkeypatch, plot.name, after=100)
    one_clear_line(cli("leaderboard", str(finished_run / "result.json"), "--plot", str(plot)),
                   f"cannot write {plot}", "no space left")
    assert list(tmp_path.iterdir()) == []  # neither half a figure under its name nor a temporary
    monkeypatch.undo()
    result = cli("leaderboard", str(finished_run / "result.json"), "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:4] == (b"\x89PNG" if suffix == "png" else b"<?xm")


def test_synth_into_a_full_tmpfs_is_refused_with_the_size_needed(tmp_path):
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        (disk / "mine.txt").write_text("keep")
        result = cli("data", "synth", "--subjects", "2", "--frames", "4", "--workers", "1", "--out", str(disk / "s"))
        one_clear_line(result, "cannot write", "frames.npy", "no space left", "free", "needed")
        assert tree_hashes(disk) == {"mine.txt": tree_hashes(disk)["mine.txt"]}  # nothing else left
        assert (disk / "mine.txt").read_text() == "keep"


def test_synth_full_disk_injected(tmp_path, monkeypatch):
    import gaitbench.io as gio

    def full(fh, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gio, "reserve", full)
    result = cli("data", "synth", "--subjects", "2", "--frames", "4", "--workers", "1", "--out", str(tmp_path / "s"))
    one_clear_line(result, "frames.npy", "no space left", "needed")
    assert list(tmp_path.iterdir()) == []


def test_synth_into_a_read_only_folder(tmp_path):
    with small_tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        one_clear_line(cli("data", "synth", "--subjects", "2", "--frames", "4", "--workers", "1", "--out",
                           str(ro / "s")), "read-only")
        assert list(ro.iterdir()) == []


def test_pack_into_a_full_tmpfs(small_synth, tmp_path):
    store, _ = small_synth
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        one_clear_line(cli("data", "pack", str(store.root), str(disk / "packed")), "cannot write", "no space left")
        assert list(disk.iterdir()) == []


def test_pretreat_full_disk_keeps_finished_sequences(tmp_path, monkeypatch):
    from .test_pretreat import write_raw_casiab

    src = tmp_path / "raw"
    write_raw_casiab(src)
    dest = tmp_path / "pkl"
    inject(monkeypatch, "090.pkl")
    result = cli("data", "pretreat", str(src), str(dest), "--dataset", "casiab", "--workers", "1")
    one_clear_line(result, "090.pkl", "no space left")
    assert not temporaries(dest)
    written = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.pkl"))
    logged = [json.loads(l) for l in (dest / "pretreat_log.jsonl").read_text().splitlines()]
    assert written and {f"{r['subject']}/{r['type']}/{r['view']}/{r['view']}.pkl" for r in logged
                        if r["status"] == "written"} == set(written)
