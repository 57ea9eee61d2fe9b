"""``gaitbench evaluate`` with post-processing stages, fusion and pipelines, on the synthetic Gait3D
layout, and ``gaitbench stages``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitbench.data.synthetic import SynthSpec, generate

from .conftest import run_cli


@pytest.fixture(scope="module")
def gait3d_embeddings(tmp_path_factory):
    """Gait energy images of the synthetic Gait3D test set as [N, 44, 64] embeddings (64 row parts):
    a real, training-free feature, so rankings are neither perfect nor random."""
    root = tmp_path_factory.mktemp("g3")
    store = generate(SynthSpec(layout="gait3d", subjects=40, frames=8, seed=4), root / "gait3d", progress=False,
                     workers=1)
    part = json.loads((root / "gait3d" / "partition.json").read_text())
    rows = np.flatnonzero(store.index["subject"].isin(part["TEST_SET"]).to_numpy())
    gei = np.stack([store.frames(int(r)).mean(0) / 255.0 for r in rows]).astype(np.float32)  # [N, 64, 44]
    labels = {k: store.index[c].to_numpy()[rows].astype(str) for k, c in
              (("subjects", "subject"), ("types", "type"), ("views", "view"))}
    files = {}
    for name, emb in (("a", gei.transpose(0, 2, 1)), ("b", np.sqrt(gei).transpose(0, 2, 1))):
        files[name] = root / f"{name}.npz"
        np.savez(files[name], embeddings=np.ascontiguousarray(emb), **labels, synthetic=np.asarray("True"),
                 probe_set=np.asarray(part["PROBE_SET"]))
    shuffled = root / "b-shuffled.npz"
    order = np.random.default_rng(0).permutation(len(rows))
    np.savez(shuffled, embeddings=np.sqrt(gei).transpose(0, 2, 1)[order].copy(),
             **{k: v[order] for k, v in labels.items()})
    files["b-shuffled"] = shuffled
    mismatched = root / "mismatched.npz"
    np.savez(mismatched, embeddings=gei.transpose(0, 2, 1)[1:].copy(), **{k: v[1:] for k, v in labels.items()})
    files["mismatched"] = mismatched
    return files


def _evaluate(tmp_path, *args):
    out = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
    proc = run_cli("evaluate", "--protocol", "gait3d", *args, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_rerank_changes_the_numbers_and_is_recorded(gait3d_embeddings, tmp_path):
    plain, _ = _evaluate(tmp_path, "--embeddings", str(gait3d_embeddings["a"]))
    assert plain["stages"] == [] and set(plain["metrics"]) == {"rank1", "rank5", "rank10", "mAP", "mINP"}
    rr, out = _evaluate(tmp_path, "--embeddings", str(gait3d_embeddings["a"]), "--stage", "rerank",
                        "--set", "stages.rerank.k1=6")
    assert rr["metrics"] != plain["metrics"]
    (stage,) = rr["stages"]
    assert stage["name"] == "rerank" and stage["transductive"] is True
    assert stage["params"]["k1"] == 6 and stage["params"]["preset"] == "zhong2017" and stage["params"]["k2"] == 6
    assert "stages: rerank" in out and "stages_s" in rr["timings"]
    hid, _ = _evaluate(tmp_path, "--embeddings", str(gait3d_embeddings["a"]), "--stage", "aqe", "--stage", "rerank",
                       "--set", "stages.rerank.preset=opengait-hid")
    assert [s["name"] for s in hid["stages"]] == ["aqe", "rerank"]
    assert hid["stages"][1]["params"]["squared"] is False


def test_fusion_aligns_by_labels(gait3d_embeddings, tmp_path):
    a, b, shuffled = (str(gait3d_embeddings[k]) for k in ("a", "b", "b-shuffled"))
    for mode in ("concat", "mean-distance"):
        ordered, _ = _evaluate(tmp_path, "--embeddings", a, "--embeddings", b, "--fuse", mode)
        reordered, _ = _evaluate(tmp_path, "--embeddings", a, "--embeddings", shuffled, "--fuse", mode)
        assert ordered["metrics"] == pytest.approx(reordered["metrics"], abs=1e-9)
        assert ordered["fusion"]["mode"] == mode
    proc = run_cli("evaluate", "--protocol", "gait3d", "--embeddings", a, "--embeddings",
                   str(gait3d_embeddings["mismatched"]), "--fuse", "concat")
    assert proc.returncode != 0 and "only in" in proc.stderr
    proc = run_cli("evaluate", "--protocol", "gait3d", "--embeddings", a, "--embeddings", b)
    assert proc.returncode != 0 and "--fuse concat or --fuse mean-distance" in proc.stderr


def test_pipeline_runs_fusion_and_stages(gait3d_embeddings, tmp_path):
    a, b = str(gait3d_embeddings["a"]), str(gait3d_embeddings["b"])
    report, _ = _evaluate(tmp_path, "--pipeline", "hid2021", "--embeddings", a, "--embeddings", b)
    assert [s["name"] for s in report["stages"]] == ["cluster-qe", "rerank"]
    assert report["fusion"]["mode"] == "concat" and report["pipeline"]["name"] == "hid2021"
    proc = run_cli("evaluate", "--protocol", "gait3d", "--pipeline", "hid2021", "--embeddings", a)
    assert proc.returncode != 0 and "takes 2 embeddings files" in proc.stderr and "gaitmask [hid2021]" in proc.stderr
    proc = run_cli("evaluate", "--protocol", "gait3d", "--pipeline", "hid2012", "--embeddings", a)
    assert proc.returncode != 0 and "did you mean 'hid2021'" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--stage", "rerankk"], "did you mean 'rerank'"),
    (["--set", "stages.rerank.k1=20"], "add --stage rerank"),
    (["--stage", "rerank", "--set", "stages.rerank.lamda=0.5"], "did you mean 'lambda'"),
    (["--stage", "rerank", "--set", "stages.rerank.preset=zhong"], "preset"),
    (["--set", "metrc=cos"], "did you mean 'metric'"),
    (["--set", "metric=manhattan"], "metric"),
])
def test_evaluate_option_errors(gait3d_embeddings, args, message):
    proc = run_cli("evaluate", "--protocol", "gait3d", "--embeddings", str(gait3d_embeddings["a"]), *args)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_evaluation_options_change_the_report(gait3d_embeddings, tmp_path):
    cos, _ = _evaluate(tmp_path, "--embeddings", str(gait3d_embeddings["a"]), "--set", "metric=cos")
    euc, _ = _evaluate(tmp_path, "--embeddings", str(gait3d_embeddings["a"]))
    assert cos["metric"] == "cos" and cos["tables"]["settings"]["metric"] == "cos" and cos["metrics"] != euc["metrics"]
    miss, _ = _evaluate(tmp_path, "--embeddings", str(gait3d_embeddings["a"]), "--set", "missing_gallery=miss",
                        "--max-memory", "1MB")
    assert miss["metrics"]["rank1"] <= euc["metrics"]["rank1"]


def test_stages_command_lists_the_builtins():
    proc = run_cli("stages", "--json")
    assert proc.returncode == 0, proc.stderr
    stages = {s["name"]: s for s in json.loads(proc.stdout)}
    assert {"rerank", "aqe", "alpha-qe", "dba", "cluster-qe"} <= set(stages)
    assert stages["rerank"]["transductive"] and not stages["aqe"]["transductive"]
    assert stages["rerank"]["defaults"]["k1"] == 20 and stages["dba"]["sides"] == "gallery"
