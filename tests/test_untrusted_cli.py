"""Bad input through the real command line ends in one clear line and a non-zero exit, never a
traceback: values checked where they enter, and as the last line any unexpected exception named
with its command and input (--debug or GAITBENCH_DEBUG=1 for the traceback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gaitbench
from gaitbench.cli import cli
from gaitbench.errors import DataError

from .conftest import CreatesFile, run_cli
from .test_import import reference_state


def one_error_line(proc) -> str:
    """The last line of stderr, after checking that the command failed without a traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ")
    return line


# ----------------------------------------------------------------------------- the last line


def _explode(*args, **kwargs):
    raise ZeroDivisionError("planted\nacross lines")


def test_an_unexpected_exception_is_one_line_naming_command_input_and_exception(small_synth, monkeypatch):
    store, _ = small_synth
    monkeypatch.setattr("gaitbench.data.check.check_dataset", _explode)
    result = CliRunner().invoke(cli, ["data", "check", str(store.root), "--protocol", "casiab"])
    assert result.exit_code == 1 and not isinstance(result.exception, ZeroDivisionError)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (f"Error: `gaitbench data check {store.root} --protocol casiab` failed: ZeroDivisionError: "
                         "planted across lines (an unexpected error: please report it with the traceback, shown "
                         "with --debug or GAITBENCH_DEBUG=1)")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("how", ["--debug after the command", "--debug before it", "GAITBENCH_DEBUG=1"])
def test_debug_shows_the_traceback(small_synth, monkeypatch, how):
    store, _ = small_synth
    monkeypatch.setattr("gaitbench.data.check.check_dataset", _explode)
    args, env = ["data", "check", str(store.root), "--protocol", "casiab"], {}
    if how == "--debug after the command":
        args.append("--debug")
    elif how == "--debug before it":
        args.insert(0, "--debug")
    else:
        env["GAITBENCH_DEBUG"] = "1"
    result = CliRunner().invoke(cli, args, env=env)
    assert isinstance(result.exception, ZeroDivisionError)  # raised as it is: click's runner holds the traceback


# ----------------------------------------------------------------------------- embeddings files


def test_embeddings_with_a_0d_label_array_are_refused_in_one_line(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, embeddings=np.zeros((3, 4, 2), np.float32), subjects=np.array("001"),
             types=np.array(["nm-01"] * 3), views=np.array(["000"] * 3))
    line = one_error_line(run_cli("evaluate", "--protocol", "casiab", "--embeddings", str(path)))
    assert line == f"Error: {path}: subjects must be a 1-d array of 3 labels (strings), found <U3 with shape ()"


def test_a_text_file_named_npz_is_not_called_pickled(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("subject,type,view\n001,nm-01,000\n")
    line = one_error_line(run_cli("evaluate", "--protocol", "casiab", "--embeddings", str(path)))
    assert "not an .npz embeddings file" in line and "neither a zip archive nor a numpy file" in line
    assert "pickle" not in line


# ----------------------------------------------------------------------------- recipe values


def _run(store, partition, out, *sets, iterations="1"):
    args = ["run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root), "--partition",
            str(partition), "--recipe", "quick", "--iterations", iterations, "--quiet", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return run_cli(*args)


@pytest.mark.parametrize("setting,expected", [
    ("optimizer.lr=-1", "optimizer.lr: expected a number >= 0.0, got -1.0"),
    ("optimizer.momentum=1.5", "optimizer.momentum: expected a number in [0, 1), got 1.5"),
    ("schedule.gamma=0", "schedule.gamma: expected a positive number, got 0.0"),
    ("loss.cross_entropy.label_smoothing=2", "label_smoothing must lie in [0, 1]"),
])
def test_bad_recipe_values_are_refused_before_anything_runs(small_synth, tmp_path, setting, expected):
    store, partition = small_synth
    line = one_error_line(_run(store, partition, tmp_path / "r", setting))
    assert expected in line
    assert not (tmp_path / "r").exists()


def test_unknown_optimizer_and_too_many_subjects_per_batch_are_refused_before_training(small_synth, tmp_path):
    store, partition = small_synth
    line = one_error_line(_run(store, partition, tmp_path / "a", "optimizer.name=adamx", "sampler.P=4"))
    assert "optimizer.name: unknown optimizer 'adamx'; did you mean" in line and "adamw" in line
    line = one_error_line(_run(store, partition, tmp_path / "b", "sampler.P=7", "sampler.K=2"))
    assert "sampler.P = 7 subjects per batch, but the training split has 6 subjects" in line
    assert "--set sampler.P=6" in line
    assert not (tmp_path / "b" / "checkpoints").exists()


# ----------------------------------------------------------------------------- checkpoints


def test_a_checkpoint_whose_iteration_is_not_a_number_is_refused(tmp_path):
    ckpt = tmp_path / "opengait.pt"
    torch.save({"model": reference_state(), "iteration": "abc"}, ckpt)
    line = one_error_line(run_cli("import-checkpoint", "--from", "opengait", str(ckpt), "--method", "gaitset",
                                  "--variant", "casiab", "--out", str(tmp_path / "gb.pt")))
    assert line == (f"Error: {ckpt}: its 'iteration' is 'abc', expected a non-negative integer (a damaged or "
                    "foreign checkpoint)")
    assert not (tmp_path / "gb.pt").exists()


def test_a_checkpoint_of_another_method_says_which(tmp_path):
    from gaitbench.training.checkpoint import save_checkpoint

    model = gaitbench.create_model("gaitgl")
    ckpt = save_checkpoint(tmp_path / "gaitgl.pt", model, method="gaitgl", variant="quick", iteration=3, recipe={},
                           data_fingerprint="x")
    line = one_error_line(run_cli("import-checkpoint", "--from", "opengait", str(ckpt), "--method", "gaitset",
                                  "--out", str(tmp_path / "gb.pt")))
    assert "is a gaitgl checkpoint (gaitgl [quick]), but --method asks for gaitset: pass --method gaitgl" in line
    assert "missing" not in line


def test_load_model_lists_shape_mismatches_instead_of_torchs_error(tmp_path):
    state = gaitbench.create_model("gaitset").state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(1, *state[key].shape[1:])
    torch.save({"model": state, "method": "gaitset", "variant": "quick", "iteration": 0}, tmp_path / "m.pt")
    with pytest.raises(DataError) as err:
        gaitbench.load_model(tmp_path / "m.pt")
    assert f"shape mismatch ['{key}: checkpoint (1," in str(err.value)
    assert "missing keys" not in str(err.value)


def test_a_refused_checkpoint_points_to_import_checkpoint_not_to_weights_only_false(small_synth, tmp_path):
    store, partition = small_synth
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": CreatesFile(marker), "method": "gaitset", "variant": "quick", "iteration": 0}, evil)
    for proc in (run_cli("run", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(store.root),
                         "--partition", str(partition), "--recipe", "quick", "--iterations", "0", "--quiet",
                         "--checkpoint", str(evil), "--out", str(tmp_path / "r")),
                 run_cli("import-checkpoint", "--from", "opengait", str(evil), "--method", "gaitset", "--out",
                         str(tmp_path / "gb.pt"))):
        line = one_error_line(proc)
        assert str(evil) in line and "refused for safety" in line and "gaitbench import-checkpoint" in line
        assert "weights_only" not in line and "likely succeed" not in line
    assert not marker.exists()
