"""OpenGait checkpoint import: strict mapping, clear errors, and equivalence with an independent
forward pass written from the reference's state-dict layout."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

import gaitbench
from gaitbench.checkpoint_import import import_opengait, infer_class_count
from gaitbench.errors import DataError, GaitbenchError
from gaitbench.plugins import build_plugin_manager, get_plugins

from .conftest import CreatesFile, run_cli

# GaitSet's reference state-dict layout (OpenGait opengait/modeling/models/gaitset.py at commit 0efafd4,
# configs/gaitset/gaitset.yaml), CASIA-B shapes.
GAITSET_KEYS = {
    "set_block1.forward_block.0.conv.weight": (32, 1, 5, 5),
    "set_block1.forward_block.2.conv.weight": (32, 32, 3, 3),
    "set_block2.forward_block.0.conv.weight": (64, 32, 3, 3),
    "set_block2.forward_block.2.conv.weight": (64, 64, 3, 3),
    "set_block3.forward_block.0.conv.weight": (128, 64, 3, 3),
    "set_block3.forward_block.2.conv.weight": (128, 128, 3, 3),
    "gl_block2.0.conv.weight": (64, 32, 3, 3),
    "gl_block2.2.conv.weight": (64, 64, 3, 3),
    "gl_block3.0.conv.weight": (128, 64, 3, 3),
    "gl_block3.2.conv.weight": (128, 128, 3, 3),
    "Head.fc_bin": (62, 128, 256),
}


def reference_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*shape, generator=g) * 0.05 for k, shape in GAITSET_KEYS.items()}


def independent_gaitset(w, sils):
    """GaitSet from the reference's description, written as plain functions over the weights:
    per-frame CNN, max over frames, the global pipeline, HPP (mean + max) and per-part FCs."""
    lrelu = lambda x: F.leaky_relu(x, 0.01)  # noqa: E731

    def block(x, a, b, pad_a, pool):
        x = lrelu(F.conv2d(x, w[a], padding=pad_a))
        x = lrelu(F.conv2d(x, w[b], padding=1))
        return F.max_pool2d(x, 2) if pool else x

    embeddings = []
    for seq in sils:  # one sequence at a time
        frames = seq.unsqueeze(1)  # [s, 1, h, w]
        f1 = block(frames, "set_block1.forward_block.0.conv.weight", "set_block1.forward_block.2.conv.weight", 2, True)
        gl = block(f1.max(0, keepdim=True).values, "gl_block2.0.conv.weight", "gl_block2.2.conv.weight", 1, True)
        f2 = block(f1, "set_block2.forward_block.0.conv.weight", "set_block2.forward_block.2.conv.weight", 1, True)
        gl = block(gl + f2.max(0, keepdim=True).values, "gl_block3.0.conv.weight", "gl_block3.2.conv.weight", 1, False)
        f3 = block(f2, "set_block3.forward_block.0.conv.weight", "set_block3.forward_block.2.conv.weight", 1, False)
        outs = f3.max(0, keepdim=True).values
        gl = gl + outs
        parts = []
        for feat in (outs, gl):
            for bins in (16, 8, 4, 2, 1):
                strips = feat.view(1, feat.shape[1], bins, -1)
                parts.append(strips.mean(-1) + strips.max(-1).values)
        feature = torch.cat(parts, -1)[0]  # [c, 62]
        embeddings.append(torch.stack([feature[:, p] @ w["Head.fc_bin"][p] for p in range(62)], -1))
    return torch.stack(embeddings)


def test_import_equals_an_independent_forward(tmp_path):
    state = reference_state()
    ckpt = tmp_path / "opengait.pt"
    torch.save({"model": state, "optimizer": {}, "scheduler": {}, "iteration": 40000}, ckpt)
    out = tmp_path / "gb.pt"
    info = import_opengait(ckpt, get_plugins().method("gaitset"), "casiab", out)
    assert info["keys"] == 11 and info["iteration"] == 40000
    model = gaitbench.load_model(out)
    sils = (torch.rand(2, 9, 64, 44, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    with torch.no_grad():
        ours = model(sils)["embeddings"]
        theirs = independent_gaitset(state, sils)
    assert ours.shape == theirs.shape == (2, 256, 62)
    assert (ours - theirs).abs().max() < 1e-5


def test_ddp_prefixes_are_accepted(tmp_path):
    """DistributedDataParallel saves every key as ``module.<name>``: each weight still lands in the
    parameter it names."""
    state = reference_state()
    ckpt = tmp_path / "ddp.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, ckpt)
    info = import_opengait(ckpt, get_plugins().method("gaitset"), "casiab", tmp_path / "gb.pt")
    assert info["keys"] == len(GAITSET_KEYS)
    imported = gaitbench.load_model(tmp_path / "gb.pt").state_dict()
    assert set(imported) == set(state)
    for key, value in state.items():
        assert torch.equal(imported[key], value), key


def test_mismatches_are_listed(tmp_path):
    state = reference_state()
    state["extra.weight"] = torch.zeros(1)
    del state["gl_block2.0.conv.weight"]
    state["Head.fc_bin"] = torch.zeros(62, 128, 128)
    ckpt = tmp_path / "bad.pt"
    torch.save({"model": state}, ckpt)
    with pytest.raises(GaitbenchError) as err:
        import_opengait(ckpt, get_plugins().method("gaitset"), "casiab", tmp_path / "gb.pt")
    msg = str(err.value)
    assert "missing (1): gl_block2.0.conv.weight" in msg and "unexpected (1): extra.weight" in msg
    assert "Head.fc_bin: checkpoint (62, 128, 128) vs model (62, 128, 256)" in msg
    assert not (tmp_path / "gb.pt").exists()
    proc = run_cli("import-checkpoint", "--from", "opengait", str(ckpt), "--method", "gaitset", "--out",
                   str(tmp_path / "gb.pt"))
    assert proc.returncode != 0 and "missing (1)" in proc.stderr and "Traceback" not in proc.stderr


def test_untrusted_checkpoints_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": CreatesFile(marker)}, evil)
    with pytest.raises(DataError, match="not loadable as a weights-only checkpoint"):
        import_opengait(evil, get_plugins().method("gaitset"), "casiab", tmp_path / "gb.pt")
    assert not marker.exists()
    notes = tmp_path / "notes.pt"
    torch.save({"something": 1}, notes)
    with pytest.raises(DataError, match="expected an OpenGait checkpoint"):
        import_opengait(notes, get_plugins().method("gaitset"), "casiab", tmp_path / "gb.pt")


def test_class_count_is_inferred_from_the_checkpoint(tmp_path):
    class Head(torch.nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.body = torch.nn.Linear(4, 8)
            self.Head1 = torch.nn.Parameter(torch.zeros(3, 8, num_classes))

    class P:
        @gaitbench.hookimpl
        def register_methods(self, register):
            register(gaitbench.Method(name="clf", description="-", paper="-", build_model=lambda num_classes=10: Head(num_classes),
                                      variants={"v": {}}, default_variant="v", recipes=tmp_path,
                                      class_count_arg="num_classes"))

    method = build_plugin_manager(extra=[("clf", P())], entry_points=False).method("clf")
    state = Head(74).state_dict()
    assert infer_class_count(method, "v", state) == 74
    ckpt = tmp_path / "clf.pt"
    torch.save({"model": state}, ckpt)
    info = import_opengait(ckpt, method, "v", tmp_path / "out.pt")
    assert info["model_kwargs"] == {"num_classes": 74}


def test_run_evaluates_an_imported_checkpoint(small_synth, tmp_path):
    import json

    import numpy as np

    store, partition = small_synth
    torch.manual_seed(3)
    source = gaitbench.create_model("gaitset", "quick")
    ckpt = tmp_path / "opengait-quick.pt"
    torch.save({"model": source.state_dict(), "iteration": 7}, ckpt)
    imported = tmp_path / "gb.pt"
    import_opengait(ckpt, get_plugins().method("gaitset"), "quick", imported)
    out = tmp_path / "run"
    proc = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root), "--partition",
                   str(partition), "--recipe", "quick", "--checkpoint", str(imported), "--iterations", "0",
                   "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["training"]["initial_checkpoint"] == str(imported) and result["iterations"] == 0
    with np.load(out / "embeddings.npz") as z:
        first = z["embeddings"][0]
        subject, type_, view = str(z["subjects"][0]), str(z["types"][0]), str(z["views"][0])
    row = store.index[(store.index["subject"] == subject) & (store.index["type"] == type_)
                      & (store.index["view"] == view)].index[0]
    sils = torch.from_numpy(store.frames(row)[None].astype("float32") / 255.0)
    with torch.no_grad():
        expected = source.eval()(sils)["embeddings"][0].numpy()
    assert np.abs(first - expected).max() < 1e-4  # the run used exactly the imported weights
    wrong = run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root),
                    "--partition", str(partition), "--checkpoint", str(imported), "--iterations", "0",
                    "--out", str(tmp_path / "run2"))
    assert wrong.returncode != 0 and "holds gaitset [quick]" in wrong.stderr
