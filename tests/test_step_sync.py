"""A training step never waits on the device: nothing in forward + loss + backward + optimizer
step reads a tensor's value back to the host. Nor does a packed inference forward whose lengths
come from the host.

On CPU this is checked on PyTorch's ``meta`` device, where every data-dependent read (``.item()``,
``bool(t)``, boolean-mask indexing, ``nonzero``) raises, for every registered method and each of
its recipes. On CUDA (marked ``gpu``) the same step runs with ``torch.cuda.set_sync_debug_mode``
set to raise on any synchronising call.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from gaitbench.bench import FixedBatch
from gaitbench.data.sampling import TripletSampler
from gaitbench.plugins import build_plugin_manager
from gaitbench.training.recipe import resolve_recipe
from gaitbench.training.trainer import Trainer


def _method_recipes():
    methods = build_plugin_manager(distributions={"gaitbench"}).methods()
    return [(name, recipe) for name, method in methods.items() for recipe in method.recipe_names()]


METHOD_RECIPES = _method_recipes()


def _trainer(method_name: str, recipe_name: str, device: str) -> Trainer:
    from gaitbench.plugins import get_plugins

    method = get_plugins().method(method_name)
    recipe = resolve_recipe(method, recipe_name)
    # built on the meta device directly: the 100M-parameter networks never allocate their weights
    with torch.device(device) if device == "meta" else contextlib.nullcontext():
        model = method.create(recipe.variant or method.default_variant)
    model = model.to(device)
    height, width = getattr(model, "input_size", (64, 44))  # the TPAMI Gait3D network takes 128 x 88
    batch = FixedBatch(2, 3, 8, height, width, torch.Generator().manual_seed(0))
    return Trainer(model, recipe, batch, method=method, device=device, progress=False)


def test_every_method_has_recipes_to_check():
    assert {m for m, _ in METHOD_RECIPES} >= {"gaitset", "gaitpart", "gaitgl", "gaitmask"}


@pytest.mark.parametrize("method,recipe", METHOD_RECIPES, ids=[f"{m}-{r}" for m, r in METHOD_RECIPES])
def test_training_step_reads_nothing_back_from_the_device(method, recipe):
    trainer = _trainer(method, recipe, "meta")
    for _ in range(2):  # the second step has optimizer state (momentum, Adam moments)
        logs = trainer.train_step(check_now=False)
    assert trainer.step == 2
    assert {"loss", "loss_triplet", "loss_num", "mean_dist"} <= set(logs)
    assert all(v.device.type == "meta" for v in logs.values())


def test_sampler_hands_out_the_gathered_order_of_labels(small_synth):
    store, _ = small_synth
    rows = np.flatnonzero(store.index["subject"].isin(["001", "002", "003", "004"]).to_numpy())
    shards = [TripletSampler(store, rows, P=3, K=2, frames=4, seed=5).next_batch(rank, 2) for rank in (0, 1)]
    gathered = np.concatenate([s.labels for s in shards])
    assert np.array_equal(shards[0].global_labels, gathered)
    assert np.array_equal(shards[1].global_labels, gathered)
    alone = TripletSampler(store, rows, P=3, K=2, frames=4, seed=5).next_batch()
    assert np.array_equal(alone.global_labels, alone.labels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method,recipe", METHOD_RECIPES, ids=[f"{m}-{r}" for m, r in METHOD_RECIPES])
def test_training_step_does_not_synchronise_cuda(method, recipe):
    trainer = _trainer(method, recipe, "cuda")
    trainer.train_step(check_now=False)  # first step: cuDNN autotuning, optimizer state creation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_step(check_now=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.parametrize("method", sorted({m for m, _ in METHOD_RECIPES}))
def test_packed_inference_reads_nothing_back_from_the_device(method):
    """A packed batch with host lengths: which frames are real, whether every sequence is full
    length and how short ones repeat are decided on the host, so the forward runs on ``meta``."""
    from gaitbench.plugins import get_plugins

    m = get_plugins().method(method)
    model = m.create(m.default_variant).to("meta").eval()
    x = torch.empty(4, 9, 64, 44, device="meta")
    with torch.no_grad():
        for lengths in (torch.tensor([9, 2, 5, 1]), np.array([9, 9, 9, 9]), [4, 4, 4, 4]):
            out = model(x, lengths=lengths)
            assert out["embeddings"].shape[0] == 4 and out["embeddings"].device.type == "meta"


def test_packing_gathers_and_scatters_the_real_frames():
    from gaitbench.nn import packing

    x = torch.arange(3 * 4, dtype=torch.float32).reshape(12, 1)
    pk = packing(torch.tensor([4, 1, 3]), 3, 4, "cpu")
    assert not pk.full and pk.host.tolist() == [4, 1, 3] and pk.lengths.tolist() == [4, 1, 3]
    frames = pk.gather(x)
    assert frames[:, 0].tolist() == [0, 1, 2, 3, 4, 8, 9, 10]
    back = pk.scatter(frames)[:, 0].tolist()
    assert back == [0, 1, 2, 3, 4, 0, 0, 0, 8, 9, 10, 0]
    full = packing(np.array([4, 4, 4]), 3, 4, "cpu")
    assert full.full and full.gather(x) is x and full.lengths is None
    assert packing(None, 3, 4, "cpu").full
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, s_max\]"):
        packing([0, 2, 3], 3, 4, "cpu")
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, s_max\]"):
        packing([5, 2, 3], 3, 4, "cpu")
    with pytest.raises(ValueError, match=r"one entry per sequence \(3\), got 2"):
        packing([2, 3], 3, 4, "cpu")
