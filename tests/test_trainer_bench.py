"""Benchmark: the trainer's own cost per step (batch sampling from the packed store, upload,
loss, optimizer) with a model of negligible cost, beside a real GaitSet-quick step in the same run.

Figures, not assertions: run `pytest tests/test_trainer_bench.py --benchmark-enable` and read
the table (the target for the overhead is under 10 ms per step on 2 CPU cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gaitbench
from gaitbench.data.sampling import TripletSampler
from gaitbench.plugins import get_plugins
from gaitbench.training.recipe import resolve_recipe
from gaitbench.training.trainer import Trainer


class Tiny(torch.nn.Module):
    """Frames -> [n, 16, 4] with a few hundred flops: the step's cost is the trainer's."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Parameter(torch.randn(4, 11, 16) * 0.1)

    def forward(self, sils, lengths=None):
        x = sils[:, :, ::4, ::4].amax(1)  # [n, 16, 11]
        x = x.reshape(x.shape[0], 4, 4, 11).mean(2)  # [n, 4, 11]
        return {"embeddings": torch.einsum("npw,pwc->ncp", x, self.proj)}


def make_trainer(store, model):
    # the quick recipe's batch: 8 subjects x 8 sequences x 12 frames
    recipe = resolve_recipe(get_plugins().method("gaitset"), "quick")
    rows = np.arange(len(store))
    s = recipe.sampler
    sampler = TripletSampler(store, rows, s.P, s.K, s.frames, s.order, s.skip, seed=0)
    return Trainer(model, recipe, sampler, progress=False)


@pytest.mark.parametrize("model", ["tiny", "gaitset-quick"])
def test_bench_trainer_step(benchmark, small_synth, model):
    store, _ = small_synth
    net = Tiny() if model == "tiny" else gaitbench.create_model("gaitset", "quick")
    trainer = make_trainer(store, net)
    benchmark.extra_info["what"] = "trainer overhead" if model == "tiny" else "full step (reference)"
    benchmark.pedantic(trainer.train_step, rounds=30 if model == "tiny" else 8, warmup_rounds=3)
    assert trainer.step > 0
