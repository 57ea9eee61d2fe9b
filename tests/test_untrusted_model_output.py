"""A plugin model that breaks the output contract is stopped at its first forward, in one line
naming the method, its plugin and what was expected; never a traceback from deep in the trainer."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import gaitbench
from gaitbench.cli import cli

from .conftest import use_plugins


class _Broken(nn.Module):
    """Returns what ``shape`` says instead of ``{"embeddings": [N, C, P]}``."""

    def __init__(self, shape: str = "tensor"):
        super().__init__()
        self.shape = shape
        self.fc = nn.Linear(1, 8)

    def forward(self, sils, lengths=None):
        n = sils.shape[0]
        x = self.fc(sils.mean(dim=(1, 2, 3))[:, None])  # [N, 8], depends on the input and the weights
        if self.shape == "tensor":
            return x[:, :, None]
        if self.shape == "no-embeddings":
            return {"features": x[:, :, None]}
        if self.shape == "flat":
            return {"embeddings": x}
        if self.shape == "batch":
            return {"embeddings": x[: n - 1, :, None]}
        if self.shape == "logits":
            return {"embeddings": x[:, :, None], "logits": x}
        return {"embeddings": x[:, :, None]}


class _Plugin:
    def __init__(self, recipes):
        self.recipes = recipes

    @gaitbench.hookimpl
    def register_methods(self, register):
        for shape in ("tensor", "no-embeddings", "flat", "batch", "logits"):
            register(gaitbench.Method(
                name=f"broken-{shape}", description="a model that breaks the output contract", paper="none",
                build_model=lambda shape=shape, **kw: _Broken(shape), variants={"default": {}},
                default_variant="default", recipes=self.recipes))


@pytest.fixture
def broken_plugins(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "quick.toml").write_text('name = "quick"\n[sampler]\nP = 2\nK = 2\nframes = 3\nmin_frames = 1\n'
                                        '[train]\niterations = 1\n')
    return use_plugins(("broken", _Plugin(recipes)))


CASES = [
    ("tensor", "returned a torch.float32 tensor of shape [4, 8, 1]"),
    ("no-embeddings", "returned a dict with keys ['features']"),
    ("flat", "returned 'embeddings' as a torch.float32 tensor of shape [4, 8]"),
    ("batch", "returned 'embeddings' as a torch.float32 tensor of shape [3, 8, 1]"),
    ("logits", "returned 'logits' as a torch.float32 tensor of shape [4, 8]"),
]


@pytest.mark.parametrize("shape,problem", CASES, ids=[c[0] for c in CASES])
def test_a_broken_model_output_is_named_at_the_first_training_forward(broken_plugins, small_synth, tmp_path,
                                                                        shape, problem):
    store, partition = small_synth
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--method", f"broken-{shape}", "--protocol", "casiab", "--data-root",
                                      str(store.root), "--partition", str(partition), "--recipe", "quick", "--quiet", "--out",
                                      str(out)])
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, (IndexError, TypeError, KeyError)) and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: method broken-{shape} [default] (plugin broken): the model's forward {problem} "
                           "for a batch of 4 sequences; expected a dict with 'embeddings' [N, C, P]"), line
    assert "optionally, 'logits' [N, classes, P]" in line
    assert not (out / "checkpoints").exists()  # stopped before the first step completed


def test_a_broken_model_output_is_named_when_embedding_without_training(broken_plugins, small_synth, tmp_path):
    store, partition = small_synth
    result = CliRunner().invoke(cli, ["run", "--method", "broken-tensor", "--protocol", "casiab", "--data-root",
                                      str(store.root), "--partition", str(partition), "--recipe", "quick", "--quiet",
                                      "--iterations", "0",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert "test_untrusted_model_output._Broken: the model's forward returned a torch.float32 tensor" in line, line
    assert "expected a dict with 'embeddings' [N, C, P]" in line
    assert "WARNING: 0 training iterations and no initial weights" in result.stdout


def test_a_model_that_keeps_the_contract_passes_the_check():
    from gaitbench.training.trainer import check_model_output

    check_model_output({"embeddings": torch.zeros(4, 8, 2), "logits": torch.zeros(4, 5, 2)}, 4, "m")
    check_model_output({"embeddings": torch.zeros(4, 8, 2, dtype=torch.bfloat16)}, 4, "m")
