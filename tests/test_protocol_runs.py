"""Each protocol end to end on its synthetic layout: ``gaitbench run``, then ``embed`` + ``evaluate``
of the same checkpoint give the same numbers."""

from __future__ import annotations

import json

import pytest

from gaitbench.data.synthetic import SynthSpec, generate

from .conftest import run_cli

LAYOUT = {"oumvlp": "oumvlp", "grew": "grew", "gait3d": "gait3d", "casiab-crossview": "casiab"}
EXPECTED = {
    "oumvlp": {"rank1", "rank1_valid"},
    "grew": {"rank1", "rank5", "rank10", "rank20"},
    "gait3d": {"rank1", "rank5", "rank10", "mAP", "mINP"},
    "casiab-crossview": {f"{s}/{m}" for s in ("NM", "BG", "CL") for m in ("rank1", "mAP")},
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout, subjects in (("oumvlp", 8), ("grew", 20), ("gait3d", 24), ("casiab", 12)):
        generate(SynthSpec(layout=layout, subjects=subjects, frames=4, seed=2), root / layout, progress=False, workers=1)
        out[layout] = root / layout
    part = root / "casiab-partition.json"
    ids = [f"{i:03d}" for i in range(1, 13)]
    part.write_text(json.dumps({"TRAIN_SET": ids[:4], "TEST_SET": ids[9:]}))
    out["casiab-partition"] = part
    return out


@pytest.mark.parametrize("protocol", list(LAYOUT))
def test_protocol_runs_and_reevaluates_identically(layouts, tmp_path, protocol):
    data = layouts[LAYOUT[protocol]]
    extra = ["--partition", str(layouts["casiab-partition"])] if protocol == "casiab-crossview" else []
    recipe = ["--recipe", "quick"]  # the reduced network: these runs check the protocol, not the model
    run_dir = tmp_path / "run"
    proc = run_cli("run", "--method", "gaitset", "--protocol", protocol, "--data-root", str(data), *extra,
                   "--iterations", "1", "--quiet", *recipe, "--set", "sampler.P=4", "--set", "sampler.K=2",
                   "--set", "sampler.frames=4", "--set", "sampler.min_frames=1", "--out", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "SYNTHETIC" in proc.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert set(result["metrics"]) == EXPECTED[protocol]
    assert result["protocol"] == protocol and result["protocol_version"] == "1.0.0"
    assert all(0.0 <= v <= 100.0 for v in result["metrics"].values())
    emb = tmp_path / "emb.npz"
    proc = run_cli("embed", "--method", "gaitset", "--checkpoint", str(run_dir / "checkpoints" / "final.pt"),
                   "--protocol", protocol, "--data-root", str(data), *extra, "--out", str(emb), "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("evaluate", "--protocol", protocol, "--embeddings", str(emb), "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metrics"] == pytest.approx(result["metrics"], abs=1e-9)
    assert report["synthetic"] is True and {"load_s", "distance_s", "metrics_s"} <= set(report["timings"])


def test_grew_submission_from_a_run(layouts, tmp_path):
    data = layouts["grew"]
    run_dir = tmp_path / "run"
    proc = run_cli("run", "--method", "gaitset", "--protocol", "grew", "--data-root", str(data), "--iterations", "1",
                   "--recipe", "quick",
                   "--quiet", "--set", "sampler.P=4", "--set", "sampler.K=2", "--set", "sampler.frames=4",
                   "--set", "sampler.min_frames=1", "--out", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    sub = tmp_path / "sub.csv"
    proc = run_cli("evaluate", "--protocol", "grew", "--embeddings", str(run_dir / "embeddings.npz"),
                   "--submission", str(sub))
    assert proc.returncode == 0, proc.stderr
    lines = sub.read_text().splitlines()
    truth = dict(line.split(",") for line in (data / "probe_truth.csv").read_text().splitlines()[1:])
    assert lines[0].split(",")[:3] == ["videoId", "rank1", "rank2"] and len(lines) == 1 + len(truth)
    for line in lines[1:]:
        video, *ids = line.split(",")
        assert video in truth
        named = [i for i in ids if i]
        assert len(named) == len(set(named)) and all(len(i) == 5 for i in named)  # strings, zeros kept


def test_default_recipe_follows_the_protocol_then_the_dataset():
    from gaitbench.errors import GaitbenchError
    from gaitbench.plugins import get_plugins
    from gaitbench import get_protocol
    from gaitbench.steps import default_recipe

    gaitset, gaitpart = get_plugins().method("gaitset"), get_plugins().method("gaitpart")
    assert default_recipe(gaitset, get_protocol("casiab-crossview"), synthetic=False) == "casiab"
    assert default_recipe(gaitset, get_protocol("gait3d"), synthetic=False) == "gait3d"
    assert default_recipe(gaitset, get_protocol("gait3d"), synthetic=True) == "quick"
    assert default_recipe(gaitpart, get_protocol("gait3d"), synthetic=False) == "gait3d"
    # no recipe named after the protocol: the one that declares it (the HID reports' recipes)
    hid = get_protocol("hid")
    assert default_recipe(get_plugins().method("gaitgl"), hid, synthetic=False) == "hid2020"
    assert default_recipe(get_plugins().method("gaitmask"), hid, synthetic=False) == "hid2021"
    with pytest.raises(GaitbenchError, match="no recipe for protocol 'hid'.*--recipe"):
        default_recipe(gaitpart, hid, synthetic=False)
