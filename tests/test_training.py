"""The training engine: losses, optimizer and schedule steps, precision, checkpoints and exact
resume after a real signal, refused checkpoints, guards, and 2-process DDP equivalence."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gaitbench
from gaitbench.errors import GaitbenchError
from gaitbench.plugins import build_plugin_manager, get_plugins
from gaitbench.run import RunSettings, execute
from gaitbench.training.losses import part_cross_entropy
from gaitbench.training.recipe import resolve_recipe
from gaitbench.training.trainer import (Trainer, TrainingDiverged, build_optimizer, build_scheduler, check_resumable,
                                        resolve_precision)

from .conftest import run_cli

TINY = ["--set", "sampler.P=4", "--set", "sampler.K=4", "--set", "sampler.frames=6", "--set", "train.log_every=1"]


# -- losses --------------------------------------------------------------------------------------
@pytest.mark.parametrize("smoothing,scale", [(0.0, 1.0), (0.1, 16.0)])
def test_part_cross_entropy_matches_loop(smoothing, scale):
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 7, 3), torch.tensor([0, 3, 6, 3, 1])
    loss, logs = part_cross_entropy(logits, labels, scale=scale, label_smoothing=smoothing)
    total = 0.0
    for i in range(5):
        for p in range(3):
            logp = torch.log_softmax(logits[i, :, p].double() * scale, 0)
            target = torch.full((7,), smoothing / 7, dtype=torch.double)
            target[labels[i]] += 1 - smoothing
            total += float(-(target * logp).sum())
    assert abs(float(loss) - total / 15) < 1e-5
    acc = float((logits.argmax(1) == labels[:, None]).float().mean())
    assert float(logs["accuracy"]) == pytest.approx(acc)


# -- optimizer and schedule of every recipe -----------------------------------------------------
def recipes():
    out = []
    for name, method in get_plugins().methods().items():
        for recipe in method.recipe_names():
            out.append((name, recipe))
    return out


@pytest.mark.parametrize("method,recipe_name", recipes())
def test_recipe_optimizer_and_schedule_steps(method, recipe_name):
    recipe = resolve_recipe(get_plugins().method(method), recipe_name)
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe)
    o = recipe.optimizer
    group = opt.param_groups[0]
    assert type(opt).__name__.lower() == {"adam": "adam", "sgd": "sgd"}[o.name]
    assert group["weight_decay"] == o.weight_decay and group["initial_lr"] == o.lr
    if o.name == "sgd":
        assert group["momentum"] == o.momentum
    # The published schedule, written out: the lr of update t+1 is lr * gamma^(milestones <= t).
    sched_ = recipe.schedule
    checks = sorted({0, 1} | {m + d for m in sched_.milestones for d in (-1, 0, 1)})
    for target in checks:  # lr used by update number target+1, after `target` completed updates
        sched.step_update(num_updates=target)
        expected = o.lr * sched_.gamma ** sum(m <= target for m in sched_.milestones)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12), target


def test_warmup_schedule():
    recipe = resolve_recipe(get_plugins().method("gaitset"), "quick",
                            ["schedule.warmup=4", "schedule.warmup_lr=0.0", "optimizer.lr=0.4"])
    opt = build_optimizer(torch.nn.Linear(2, 2), recipe)
    sched = build_scheduler(opt, recipe)
    lrs = []
    for i in range(6):
        sched.step_update(num_updates=i)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])


def test_precision_rules():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("none", torch.device("cuda")) == "fp32"
    with pytest.raises(GaitbenchError, match="fp16 needs CUDA"):
        resolve_precision("fp16", torch.device("cpu"))


# -- in-process runs -----------------------------------------------------------------------------
def settings(small_synth, out, **kw):
    store, partition = small_synth
    overrides = kw.pop("overrides", [])
    return RunSettings(method=kw.pop("method", "gaitset"), protocol="casiab", data_root=str(store.root),
                       partition=str(partition), recipe="quick", progress=False, out=str(out),
                       overrides=["sampler.P=4", "sampler.K=4", "sampler.frames=6", "train.log_every=1", *overrides],
                       **kw)


def test_bf16_on_cpu_is_recorded(small_synth, tmp_path):
    r = execute(settings(small_synth, tmp_path / "r", iterations=2, overrides=["train.amp=bf16"]), echo=lambda s: None)
    assert r.precision == "bf16" and np.isfinite(r.training["final"]["loss"])
    r = execute(settings(small_synth, tmp_path / "r2", iterations=1), echo=lambda s: None)
    assert r.precision == "fp32" and r.world_size == 1 and r.global_batch == 16


class Bad(torch.nn.Module):
    """Embeddings become NaN from the third forward pass on (or are constant: a collapse)."""

    def __init__(self, mode="nan"):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4, 1))
        self.calls, self.mode = 0, mode

    def forward(self, sils, lengths=None):
        self.calls += 1
        x = sils.mean((1, 2, 3))[:, None, None] * self.w  # [n, 4, 1]
        if self.mode == "collapse":
            x = x * 0.0 + self.w * 0.0
        elif self.mode == "nan" and self.training and self.calls >= 3:
            x = x * float("nan")
        return {"embeddings": x}


def bad_plugin(mode):
    class P:
        @gaitbench.hookimpl
        def register_methods(self, register):
            register(gaitbench.Method(name="bad", description="-", paper="-", build_model=lambda: Bad(mode),
                                      variants={"quick": {}}, default_variant="quick",
                                      recipes=Path(gaitbench.__file__).parents[1] / "plugins" / "gaitbench_gaitset" / "recipes"))
    return build_plugin_manager(extra=[("bad", P())], distributions={"gaitbench"})


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(small_synth, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged) as err:
        execute(settings(small_synth, out, method="bad", iterations=10, overrides=["train.checkpoint_every=1"]),
                plugins=bad_plugin("nan"), echo=lambda s: None)
    message = str(err.value)
    assert "iteration 3" in message and "iter-0000002.pt" in message and "(kept)" in message
    assert (out / "checkpoints" / "iter-0000002.pt").is_file()
    assert not (out / "checkpoints" / "final.pt").exists()


def test_collapsing_embeddings_warn(small_synth, tmp_path):
    said = []
    execute(settings(small_synth, tmp_path / "c", method="bad", iterations=4), plugins=bad_plugin("collapse"),
            echo=said.append)
    assert any("embeddings are collapsing" in s for s in said)


def test_checkpoints_rotate_and_refuse_to_overwrite(small_synth, tmp_path):
    out = tmp_path / "rot"
    execute(settings(small_synth, out, iterations=7, overrides=["train.checkpoint_every=2", "train.keep_checkpoints=2"]),
            echo=lambda s: None)
    names = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    assert names == ["final.pt", "iter-0000004.pt", "iter-0000006.pt"]
    payload = torch.load(out / "checkpoints" / "iter-0000006.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "iteration", "recipe", "method", "variant",
                "data_fingerprint", "gaitbench_version"):
        assert key in payload, key
    with pytest.raises(GaitbenchError, match="already holds a (finished )?run.*--resume"):
        execute(settings(small_synth, out, iterations=7), echo=lambda s: None)


def test_mismatched_checkpoints_are_refused(small_synth, tmp_path):
    out = tmp_path / "mm"
    execute(settings(small_synth, out, iterations=2), echo=lambda s: None)
    payload = torch.load(out / "checkpoints" / "final.pt", weights_only=True)
    recipe = resolve_recipe(get_plugins().method("gaitset"), "quick",
                            ["sampler.P=4", "sampler.K=4", "sampler.frames=6", "train.log_every=1"])
    check_resumable(payload, method="gaitset", variant="quick", fingerprint=payload["data_fingerprint"], recipe=recipe,
                    source="x")
    with pytest.raises(GaitbenchError, match=r"method 'gaitset' \(this run: 'gaitpart'\)"):
        check_resumable(payload, method="gaitpart", variant="quick", fingerprint=payload["data_fingerprint"],
                        recipe=recipe, source="x")
    with pytest.raises(GaitbenchError, match=r"variant 'quick' \(this run: 'casiab'\)"):
        check_resumable(payload, method="gaitset", variant="casiab", fingerprint=payload["data_fingerprint"],
                        recipe=recipe, source="x")
    with pytest.raises(GaitbenchError, match="data fingerprint"):
        check_resumable(payload, method="gaitset", variant="quick", fingerprint="0" * 16, recipe=recipe, source="x")
    # the inference batch size is a speed knob, not part of what was trained: changing it resumes
    faster = resolve_recipe(get_plugins().method("gaitset"), "quick",
                            ["sampler.P=4", "sampler.K=4", "sampler.frames=6", "train.log_every=1",
                             "eval.max_frames_per_batch=512", "eval.max_sequences_per_batch=8"])
    check_resumable(payload, method="gaitset", variant="quick", fingerprint=payload["data_fingerprint"], recipe=faster,
                    source="x")
    with pytest.raises(GaitbenchError, match="recipe differs in optimizer.lr"):
        execute(settings(small_synth, out, iterations=3, resume=True, overrides=["optimizer.lr=0.5"]),
                echo=lambda s: None)
    # a state dict with missing and unexpected keys: both listed
    from gaitbench.training.checkpoint import load_state_strict

    state = dict(payload["model"])
    state["extra.weight"] = state.pop("Head.fc_bin")
    with pytest.raises(GaitbenchError, match=r"missing keys \['Head.fc_bin'\]; unexpected keys \['extra.weight'\]"):
        load_state_strict(gaitbench.create_model("gaitset", "quick"), state, "ckpt")


# -- resume after a real signal ------------------------------------------------------------------
def losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())]


def start_train(small_synth, out, iterations, *extra):
    store, partition = small_synth
    args = [sys.executable, "-m", "gaitbench", "train", "--method", "gaitset", "--protocol", "casiab",
            "--data-root", str(store.root), "--partition", str(partition), "--recipe", "quick", "--deterministic",
            "--iterations", str(iterations), "--out", str(out), "--quiet", *TINY, *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def uninterrupted(small_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    proc = start_train(small_synth, out, 24, "--set", "train.checkpoint_every=5")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return losses(out)


def logged_steps(out):
    log = out / "train_log.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_resume_after_sigkill_equals_uninterrupted(small_synth, tmp_path, uninterrupted):
    out = tmp_path / "killed"
    proc = start_train(small_synth, out, 24, "--set", "train.checkpoint_every=5")
    wait_for(lambda: logged_steps(out) >= 12, proc)
    proc.send_signal(signal.SIGKILL)  # no chance to save anything: the periodic checkpoints must do
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoints" / "final.pt").exists()
    resumed = run_cli("train", "--resume", str(out), "--quiet", process=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert losses(out) == uninterrupted  # exactly, step by step


def test_resume_after_sigterm_equals_uninterrupted(small_synth, tmp_path, uninterrupted):
    out = tmp_path / "termed"
    proc = start_train(small_synth, out, 24, "--set", "train.checkpoint_every=5")
    wait_for(lambda: logged_steps(out) >= 7, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM received: stopped after iteration" in err and "Traceback" not in err
    stopped = int(err.split("stopped after iteration ")[1].split(";")[0])
    assert (out / "checkpoints" / f"iter-{stopped:07d}.pt").is_file()  # nothing done is lost
    resumed = run_cli("train", "--resume", str(out), "--quiet", process=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(iteration {stopped})" in resumed.stdout
    assert losses(out) == uninterrupted


# -- two processes with gloo ---------------------------------------------------------------------
def test_two_process_gloo_matches_one_process(small_synth, tmp_path):
    store, partition = small_synth
    # SGD: its update is linear in the gradient, so equal gradients give equal weights to float
    # precision (Adam divides by the gradient's magnitude and amplifies rounding where it is ~0).
    common = ["run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root), "--partition",
              str(partition), "--recipe", "quick", "--iterations", "3", "--quiet", *TINY,
              "--set", "optimizer.name=sgd", "--set", "optimizer.lr=1.0"]
    one = run_cli(*common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = run_cli(*common, "--out", str(tmp_path / "two"), "--nproc-per-node", "2",
                  env={"OMP_NUM_THREADS": "1"}, process=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3]
    np.testing.assert_allclose([l for _, l in b], [l for _, l in a], rtol=1e-4, atol=1e-6)
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_batch"] == 16
    with np.load(tmp_path / "one" / "embeddings.npz") as x, np.load(tmp_path / "two" / "embeddings.npz") as y:
        assert (x["subjects"] == y["subjects"]).all() and (x["views"] == y["views"]).all()
        np.testing.assert_allclose(y["embeddings"], x["embeddings"], rtol=1e-4, atol=1e-5)


def test_method_param_groups_and_regularizer_are_used(small_synth, tmp_path):
    seen = {}

    def groups(model, recipe):
        seen["groups"] = True
        return [{"params": [model.w], "lr": 0.123}]

    def regularizer(trainer, outputs):
        seen.setdefault("steps", []).append(trainer.step + 1)
        return outputs["embeddings"].pow(2).mean() * 0 + 0.5

    class P:
        @gaitbench.hookimpl
        def register_methods(self, register):
            register(gaitbench.Method(name="reg", description="-", paper="-", build_model=lambda: Bad("ok"),
                                      variants={"quick": {}}, default_variant="quick", param_groups=groups,
                                      regularizer=regularizer,
                                      recipes=Path(gaitbench.__file__).parents[1] / "plugins" / "gaitbench_gaitset" / "recipes"))

    plugins = build_plugin_manager(extra=[("reg", P())], distributions={"gaitbench"})
    r = execute(settings(small_synth, tmp_path / "reg", method="reg", iterations=2), plugins=plugins,
                echo=lambda s: None)
    log = [json.loads(l) for l in (tmp_path / "reg" / "train_log.jsonl").read_text().splitlines()]
    assert seen == {"groups": True, "steps": [1, 2]}
    assert all(rec["regularizer"] == 0.5 and rec["loss"] == pytest.approx(rec["loss_triplet"] + 0.5) for rec in log)
    assert log[0]["lr"] == 0.123 and r.iterations == 2


def _fixed_trainer(overrides, method="gaitset", variant="quick"):
    import copy

    from gaitbench.bench import FixedBatch

    m = get_plugins().method(method)
    recipe = resolve_recipe(m, "quick", overrides)
    torch.manual_seed(0)
    model = m.create(variant)
    batch = FixedBatch(2, 3, 6, 64, 44, torch.Generator().manual_seed(1))
    return Trainer(copy.deepcopy(model), recipe, batch, method=m, progress=False)


def test_compiled_training_step_equals_eager():
    # Plain SGD: each update is lr x the gradient, so the two updates can be compared directly.
    # Compiled and eager kernels round differently in the last bits (which bits depends on the
    # CPU: AMD EPYC and Intel differ), and every step feeds those differences back through the
    # network, so element-wise tolerances on the weights fail for entries near zero while the steps
    # agree. The comparison that means something is per tensor and relative to how far the step
    # moved it: ||update_compiled - update_eager|| <= tol * ||update_eager||. A compiled step that
    # differs in what it computes (another loss, a missing term, a skipped update) is off by O(1).
    sgd = ["optimizer.name=sgd", "optimizer.momentum=0.0", "optimizer.lr=1.0"]
    eager, compiled = _fixed_trainer(sgd), _fixed_trainer(sgd + ["train.compile=aot_eager"])
    assert compiled.train_model is not compiled.model  # the bare module stays for checkpoints
    before = [p.detach().clone() for p in eager.model.parameters()]

    def relative_update_error():
        worst = (0.0, "")
        for (name, p), q, p0 in zip(eager.model.named_parameters(), compiled.model.parameters(), before):
            step = (p - p0).detach()
            if float(step.norm()) == 0.0:  # a parameter this loss does not reach (the unused head)
                assert torch.equal(q, p), name
                continue
            err = float((q - p).detach().norm() / step.norm())
            worst = max(worst, (err, name))
        return worst

    a, b = eager.train_step(), compiled.train_step()
    assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-6)
    err, name = relative_update_error()  # one step from the same weights: the gradients themselves
    assert err < 1e-4, name
    for _ in range(2):
        a, b = eager.train_step(), compiled.train_step()
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-5)
    moved = max(float((p.detach() - p0).abs().max()) for p, p0 in zip(eager.model.parameters(), before))
    assert moved > 1e-3  # the steps did move the weights
    err, name = relative_update_error()
    assert err < 1e-3, name


def test_misspelt_compile_backend_is_named_before_training():
    from gaitbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.compile: unknown torch.compile backend 'inducter'; did you mean "
                                          r"'inductor'\?"):
        _fixed_trainer(["train.compile=inducter"])


@pytest.mark.parametrize("method,conv,fmt", [("gaitset", torch.nn.Conv2d, torch.channels_last),
                                             ("gaitgl", torch.nn.Conv3d, torch.channels_last_3d)])
def test_channels_last_weights_train_like_the_default(method, conv, fmt):
    plain, cl = _fixed_trainer([], method), _fixed_trainer(["train.channels_last=true"], method)
    weights = [m.weight for m in cl.model.modules() if isinstance(m, conv)]
    assert weights and all(w.is_contiguous(memory_format=fmt) for w in weights)
    assert not all(m.weight.is_contiguous(memory_format=fmt) for m in plain.model.modules() if isinstance(m, conv))
    a, b = plain.train_step(), cl.train_step()
    assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-4, abs=1e-6)
