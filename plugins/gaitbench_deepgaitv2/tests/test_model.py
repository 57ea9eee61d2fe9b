"""Tests for the DeepGaitV2 model (gaitbench_deepgaitv2). The method contract (output shapes,
packed batches, gradients, determinism, a training step) is gaitbench.testing's; equality with
OpenGait's own forward, for the P3D, 2-D and 3-D blocks, is tests/test_import_resnets.py."""

import pytest
import torch

from gaitbench.testing import parameter_count as n_params
from gaitbench.testing import random_silhouettes as sils
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)
from gaitbench_deepgaitv2 import METHOD, VARIANTS
from gaitbench_deepgaitv2.model import DeepGaitV2


def make(variant="casiab", seed=0, **kw):
    torch.manual_seed(seed)
    return DeepGaitV2(**{**VARIANTS[variant], **kw})


@pytest.mark.gaitbench_contract("deepgaitv2", variants=["quick"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()


# the other block types at the quick size: the temporal convolutions of 3-D blocks and the
# frame-wise 2-D stages must ignore padding too
@pytest.mark.gaitbench_contract("deepgaitv2", variants=["quick"], model_kwargs={"mode": "3d"},
                                only=["outputs", "padding", "full_lengths", "gradients"])
def test_contract_3d_blocks(gaitbench_contract):
    gaitbench_contract.check()


@pytest.mark.gaitbench_contract("deepgaitv2", variants=["quick"], model_kwargs={"mode": "2d"},
                                only=["outputs", "padding", "full_lengths", "gradients"])
def test_contract_2d_blocks(gaitbench_contract):
    gaitbench_contract.check()


# --------------------------------------------------------------------------- structure

# OpenGait's DeepGaitV2 built from each config's model_cfg (configs/deepgaitv2/DeepGaitV2_*.yaml at
# commit 0efafd4; all P3D), and with Backbone.mode changed to 2d / 3d
OPENGAIT_PARAMS = {
    ("casiab", "p3d"): 8_339_392, ("oumvlp", "p3d"): 29_142_976, ("grew", "p3d"): 95_124_160,
    ("gait3d", "p3d"): 25_492_160, ("casiab", "2d"): 7_305_408, ("casiab", "3d"): 16_595_136,
    ("grew", "3d"): 111_487_680,
}


@pytest.mark.parametrize("variant, mode", sorted(OPENGAIT_PARAMS))
def test_param_counts_equal_opengaits(variant, mode):
    with torch.device("meta"):
        assert n_params(DeepGaitV2(**{**VARIANTS[variant], "mode": mode})) == OPENGAIT_PARAMS[(variant, mode)]


def test_state_dict_keys_are_opengaits():
    shapes = {k: tuple(v.shape) for k, v in make("casiab").state_dict().items()}
    assert len(shapes) == 97
    assert shapes["layer0.forward_block.0.weight"] == (64, 1, 3, 3)
    assert shapes["layer1.forward_block.0.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.conv1.forward_block.0.weight"] == (128, 64, 3, 3)
    assert shapes["layer2.0.shortcut3d.weight"] == (128, 128, 3, 1, 1)
    assert shapes["layer2.0.downsample.0.weight"] == (128, 64, 1, 1, 1)
    assert shapes["FCs.fc_bin"] == (16, 512, 256) and shapes["BNNecks.fc_bin"] == (16, 256, 74)
    shapes3d = {k: tuple(v.shape) for k, v in make("casiab", mode="3d").state_dict().items()}
    assert shapes3d["layer3.0.conv1.weight"] == (256, 128, 3, 3, 3)
    shapes2d = {k: tuple(v.shape) for k, v in make("casiab", mode="2d").state_dict().items()}
    assert shapes2d["layer4.forward_block.0.downsample.0.weight"] == (512, 256, 1, 1)


def test_outputs_and_the_use_emb2_option():
    m = make("quick", num_classes=5).eval()
    x = sils(2, 6)
    with torch.no_grad():
        out = m(x)
    assert out["embeddings"].shape == (2, 32, 8) and out["logits"].shape == (2, 5, 8)
    # use_emb2: evaluation embeds with the BNNeck output (unit-norm parts), training keeps the FCs output
    m2 = make("quick", num_classes=5, use_emb2=True).eval()
    with torch.no_grad():
        e2 = m2(x)["embeddings"]
        torch.testing.assert_close(e2.norm(dim=1), torch.ones(2, 8))
        torch.testing.assert_close(m2.train()(x)["embeddings"].shape, out["embeddings"].shape)
    assert not torch.allclose(m2.train()(x)["embeddings"].norm(dim=1), torch.ones(2, 8))


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        DeepGaitV2(mode="4d")
    with pytest.raises(ValueError, match="4 entries each"):
        DeepGaitV2(layers=(1, 1, 1))


def test_variants_and_recipes():
    from gaitbench.training.recipe import load_recipe

    assert set(VARIANTS) == {"casiab", "oumvlp", "grew", "gait3d", "quick"}
    assert METHOD.name == "deepgaitv2" and METHOD.default_variant == "casiab"
    assert VARIANTS["gait3d"]["layers"] == VARIANTS["grew"]["layers"] == (1, 4, 4, 1)
    for name, (P, K, milestones, iterations) in {
            "casiab": (8, 16, [20000, 40000, 50000], 60000), "oumvlp": (32, 8, [60000, 80000, 100000], 120000),
            "grew": (32, 4, [80000, 120000, 150000], 180000), "gait3d": (32, 4, [20000, 40000, 50000], 60000)}.items():
        r = load_recipe(METHOD.recipe_path(name))
        assert r.variant == name
        assert (r.sampler.P, r.sampler.K, r.sampler.frames, r.sampler.order, r.sampler.skip) == (P, K, 30, "ordered", 4)
        assert (r.schedule.milestones, r.train.iterations) == (milestones, iterations)
        assert (r.optimizer.name, r.optimizer.lr, r.optimizer.momentum) == ("sgd", 0.1, 0.9)
        assert (r.loss.cross_entropy.scale, r.loss.cross_entropy.label_smoothing) == (16, 0.1)
        assert r.augment.transforms == ["perspective", "flip", "rotate"]


# --------------------------------------------------------------------------- golden values

# Computed once with this implementation (torch.manual_seed(0), variant casiab, fresh init, eval;
# input sils(2, 5, seed=1) with sequence 1 cut to 3 frames in a padded batch). A change of any of
# these means the network computes something else: if intended, recompute and say why in the commit.
GOLDEN_INDEX = [(0, 0, 0), (0, 17, 3), (0, 255, 15), (1, 64, 8), (1, 5, 12)]
GOLDEN = [0.0205076747, -0.00725637982, 0.0141395144, 0.0016537006, 0.0074420413]
GOLDEN_NORMS = [0.876496732, 0.814092517]  # per-sequence L2 norm of the [256, 16] embedding


def test_golden_embeddings():
    m = make("casiab", seed=0).eval()
    with torch.no_grad():
        e = m(sils(2, 5, seed=1), torch.tensor([5, 3]))["embeddings"]
    got = torch.tensor([float(e[i]) for i in GOLDEN_INDEX], dtype=torch.float64)
    torch.testing.assert_close(got, torch.tensor(GOLDEN, dtype=torch.float64), rtol=1e-4, atol=1e-7)
    norms = torch.tensor([float(e[0].norm()), float(e[1].norm())], dtype=torch.float64)
    torch.testing.assert_close(norms, torch.tensor(GOLDEN_NORMS, dtype=torch.float64), rtol=1e-4, atol=0.0)
