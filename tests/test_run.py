"""`gaitbench run` end to end, the run record contract, and `embed` + `evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitbench.run import RunSettings, execute

from .conftest import run_cli


@pytest.fixture(scope="module")
def cli_run(small_synth, tmp_path_factory):
    store, partition = small_synth
    out = tmp_path_factory.mktemp("cli-run")
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root),
                   "--partition", str(partition), "--recipe", "quick", "--iterations", "4",
                   "--set", "sampler.P=4", "--set", "sampler.K=4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc, out


def test_run_prints_the_protocol_table(cli_run):
    proc, _ = cli_run
    lines = proc.stdout.splitlines()
    header = next(l for l in lines if l.startswith("| probe"))
    assert header.split("|")[2].strip() == "000" and "180" in header and "mean" in header
    for cond in ("NM", "BG", "CL"):
        assert any(l.startswith(f"| {cond}") for l in lines)
    assert "SYNTHETIC DATA" in proc.stdout and "REDUCED for CPU" in proc.stdout
    assert "training" in proc.stderr  # the progress bar


def test_result_json_contract(cli_run):
    _, out = cli_run
    r = json.loads((out / "result.json").read_text())
    for key in ("method", "protocol", "protocol_version", "dataset", "config", "seed", "metrics", "tables",
                "timings", "versions", "stages"):
        assert key in r, key
    assert r["method"] == "gaitset" and r["variant"] == "quick" and r["protocol"] == "casiab"
    assert r["dataset"]["synthetic"] is True and len(r["dataset"]["fingerprint"]) == 16
    assert r["dataset"]["generator"]["name"] == "gaitbench-walker"
    assert r["config"]["sampler"]["P"] == 4 and r["config"]["name"] == "quick"  # the resolved recipe
    assert r["stages"] == [] and r["iterations"] == 4
    assert set(r["metrics"]) == {"NM/rank1", "BG/rank1", "CL/rank1"}
    nm = r["tables"]["NM"]
    assert len(nm["matrix"]) == 11 and all(len(row) == 11 for row in nm["matrix"])
    # the headline number is the mean over probe views of the mean over the other 10 gallery views
    m = np.array(nm["matrix"], dtype=float)
    rows = (m.sum(1) - np.diag(m)) / 10
    assert abs(rows.mean() - r["metrics"]["NM/rank1"]) < 0.01
    assert {"train_s", "embed_s", "evaluate_s", "total_s"} <= set(r["timings"])
    assert r["versions"]["plugin"]["name"] == "gaitset"
    assert (out / "train_log.jsonl").read_text().count("\n") >= 2
    assert (out / "checkpoints" / "final.pt").is_file()


def test_embed_then_evaluate_gives_the_same_numbers(cli_run, small_synth, tmp_path):
    _, out = cli_run
    store, partition = small_synth
    emb = tmp_path / "emb.npz"
    proc = run_cli("embed", "--method", "gaitset", "--checkpoint", str(out / "checkpoints" / "final.pt"),
                   "--protocol", "casiab", "--data-root", str(store.root), "--partition", str(partition),
                   "--out", str(emb), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC" in proc.stdout
    with np.load(emb) as z:
        assert str(z["synthetic"]) == "True"
        assert z["embeddings"].shape == (6 * 110, 128, 30)
        assert set(z["types"]) == {"nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02",
                                   "cl-01", "cl-02"}
    report = tmp_path / "report.json"
    proc = run_cli("evaluate", "--protocol", "casiab", "--embeddings", str(emb), "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    ran = json.loads((out / "result.json").read_text())["metrics"]
    assert "SYNTHETIC DATA" in proc.stdout
    evaluated = json.loads(report.read_text())
    assert evaluated["metrics"] == ran and evaluated["synthetic"] is True


def test_load_model_round_trip(cli_run):
    import torch

    import gaitbench

    _, out = cli_run
    model = gaitbench.load_model(out / "checkpoints" / "final.pt")
    assert not model.training
    fresh = gaitbench.create_model("gaitset", "quick")
    x = torch.rand(2, 5, 64, 44)
    assert fresh(x)["embeddings"].shape == model(x)["embeddings"].shape == (2, 128, 30)


def test_checkpoint_that_is_not_one(tmp_path):
    import gaitbench
    from gaitbench.errors import DataError

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="x.pt: not loadable as a weights-only gaitbench checkpoint"):
        gaitbench.load_model(bad)


@pytest.mark.slow
def test_training_beats_initial_weights_by_20_points(tmp_path_factory):
    """On synthetic CASIA-B, the trained GaitSet beats the same network at its initial weights
    (same seed, zero iterations) by at least 20 points of NM rank-1."""
    import json as _json

    from gaitbench.data.synthetic import SynthSpec, generate

    root = tmp_path_factory.mktemp("learn")
    store = generate(SynthSpec(subjects=20, frames=10, seed=1), root / "data", progress=False)
    ids = [f"{i:03d}" for i in range(1, 21)]
    partition = root / "p.json"
    partition.write_text(_json.dumps({"TRAIN_SET": ids[:12], "TEST_SET": ids[12:]}))
    common = dict(method="gaitset", protocol="casiab", data_root=str(store.root), partition=str(partition),
                  recipe="quick", progress=False, seed=0)
    initial = execute(RunSettings(**common, iterations=0, out=str(root / "r0")), echo=lambda s: None)
    trained = execute(RunSettings(**common, iterations=60, out=str(root / "r1"),
                                  overrides=["schedule.milestones=[45]"]), echo=lambda s: None)
    before, after = initial.metrics["NM/rank1"], trained.metrics["NM/rank1"]
    print(f"NM rank-1: initial weights {before:.2f}, trained {after:.2f}")
    assert after - before >= 20, (before, after)
