"""Tests for the GaitBase model (gaitbench_gaitbase) and the shared BNNeck head. The method
contract (output shapes, packed batches, gradients, determinism, a training step) is
gaitbench.testing's; equality with OpenGait's own forward is tests/test_import_resnets.py."""

import pytest
import torch
import torch.nn.functional as F

from gaitbench.nn import SeparateBNNecks
from gaitbench.testing import parameter_count as n_params
from gaitbench.testing import random_silhouettes as sils
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)
from gaitbench_gaitbase import METHOD, VARIANTS
from gaitbench_gaitbase.model import GaitBase


def make(variant="casiab", seed=0, **kw):
    torch.manual_seed(seed)
    return GaitBase(**{**VARIANTS[variant], **kw})


@pytest.mark.gaitbench_contract("gaitbase", variants=["quick"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()


# The full network: its forward clauses (a backward costs much more and runs the same code as quick's).
@pytest.mark.gaitbench_contract("gaitbase", variants=["casiab"], only=["outputs", "padding"])
def test_contract_casiab_forward(gaitbench_contract):
    gaitbench_contract.check()


# --------------------------------------------------------------------------- structure

# OpenGait's Baseline built from each config's model_cfg (configs/gaitbase/*.yaml at commit 0efafd4)
OPENGAIT_PARAMS = {"casiab": 7_305_408, "oumvlp": 28_108_992, "grew": 88_922_304, "gait3d": 19_290_304}


@pytest.mark.parametrize("variant", sorted(OPENGAIT_PARAMS))
def test_param_counts_equal_opengaits(variant):
    with torch.device("meta"):
        assert n_params(GaitBase(**VARIANTS[variant])) == OPENGAIT_PARAMS[variant]


def test_state_dict_keys_are_opengaits():
    sd = make("casiab").state_dict()
    assert len(sd) == 79
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["Backbone.forward_block.conv1.conv.weight"] == (64, 1, 3, 3)
    assert shapes["Backbone.forward_block.layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert "Backbone.forward_block.layer1.0.downsample.0.weight" not in shapes  # stride 1, same width
    assert shapes["Backbone.forward_block.layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["Backbone.forward_block.layer4.0.downsample.0.weight"] == (512, 256, 1, 1)  # width only
    assert shapes["FCs.fc_bin"] == (16, 512, 256)
    assert shapes["BNNecks.fc_bin"] == (16, 256, 74)
    assert shapes["BNNecks.bn1d.running_var"] == (4096,)


def test_outputs_and_feature_map():
    m = make("casiab").eval()
    with torch.no_grad():
        out = m(sils(2, 5))
    assert out["embeddings"].shape == (2, 256, 16) and out["logits"].shape == (2, 74, 16)
    # the logits are cosines of the L2-normalised BN feature and class vectors
    assert out["logits"].abs().max() <= 1 + 1e-5
    # 64 x 44 -> strides 1, 2, 2, 1 -> a 16 x 11 map, one row per strip
    with torch.no_grad():
        fmap = m.Backbone.forward_block(torch.zeros(1, 1, 64, 44))
    assert fmap.shape == (1, 512, 16, 11)


def test_maxpool_and_empty_stages_follow_the_reference():
    m = GaitBase(channels=(8, 8, 16, 16), layers=(1, 0, 1, 1), strides=(1, 2, 2, 1), maxpool=True, bins=(8,),
                 embed_dim=8, num_classes=3)
    assert isinstance(m.Backbone.forward_block.layer2, torch.nn.Identity)
    with torch.no_grad():
        fmap = m.eval().Backbone.forward_block(torch.zeros(1, 1, 64, 44))
    assert fmap.shape == (1, 16, 16, 11)  # max pool /2, layer3 /2
    with pytest.raises(ValueError, match="4 entries each"):
        GaitBase(channels=(8, 8, 16))


def test_bnneck_is_opengaits_cosine_head():
    torch.manual_seed(0)
    head = SeparateBNNecks(4, 8, 5).eval()
    with torch.no_grad():
        head.bn1d.running_mean.uniform_(-1, 1)
        head.bn1d.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 8, 4)
    feat, logits = head(x)
    bn = head.bn1d
    y = ((x.reshape(3, 32) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    y = F.normalize(y.reshape(3, 8, 4), dim=1)
    torch.testing.assert_close(feat, y)
    w = F.normalize(head.fc_bin, dim=1)  # [p, c, classes]
    torch.testing.assert_close(logits, torch.einsum("ncp,pck->nkp", y, w))


def test_variants_and_recipes():
    from gaitbench.training.recipe import load_recipe

    assert set(VARIANTS) == {"casiab", "oumvlp", "grew", "gait3d", "quick"}
    assert METHOD.name == "gaitbase" and METHOD.default_variant == "casiab"
    assert set(METHOD.recipe_names()) == {"casiab", "oumvlp", "grew", "gait3d", "quick"}
    r = load_recipe(METHOD.recipe_path("casiab"))
    assert (r.sampler.P, r.sampler.K, r.sampler.frames, r.sampler.order) == (8, 16, 30, "unordered")
    assert (r.optimizer.name, r.optimizer.lr, r.optimizer.momentum, r.optimizer.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    assert (r.schedule.milestones, r.train.iterations) == ([20000, 40000, 50000], 60000)
    assert (r.loss.cross_entropy.weight, r.loss.cross_entropy.scale, r.loss.cross_entropy.label_smoothing) == (1, 16, 0.1)
    assert r.augment.transforms == ["rotate", "erasing"] and r.augment.rotate.prob == r.augment.erasing.prob == 0.3
    r = load_recipe(METHOD.recipe_path("oumvlp"))
    assert (r.sampler.P, r.sampler.K, r.schedule.milestones, r.train.iterations) == (32, 8, [60000, 80000, 100000], 120000)
    assert not r.augment.active  # gaitbase_oumvlp.yaml has no augmentation
    for name, milestones in (("grew", [80000, 120000, 150000]), ("gait3d", [20000, 40000, 50000])):
        r = load_recipe(METHOD.recipe_path(name))
        assert (r.sampler.P, r.sampler.K, r.schedule.milestones) == (32, 4, milestones)
        assert r.augment.transforms == ["perspective", "flip", "rotate"]
        assert r.augment.perspective.prob == r.augment.flip.prob == r.augment.rotate.prob == 0.2


# --------------------------------------------------------------------------- golden values

# Computed once with this implementation (torch.manual_seed(0), variant casiab, fresh init, eval;
# input sils(2, 5, seed=1) with sequence 1 cut to 3 frames in a padded batch). A change of any of
# these means the network computes something else: if intended, recompute and say why in the commit.
GOLDEN_INDEX = [(0, 0, 0), (0, 17, 3), (0, 255, 15), (1, 64, 8), (1, 5, 12)]
GOLDEN = [-0.00270457892, 0.00325275306, -0.00744349323, -0.0013751128, -0.000380881276]
GOLDEN_NORMS = [0.434657633, 0.405602902]  # per-sequence L2 norm of the [256, 16] embedding


def test_golden_embeddings():
    m = make("casiab", seed=0).eval()
    with torch.no_grad():
        e = m(sils(2, 5, seed=1), torch.tensor([5, 3]))["embeddings"]
    got = torch.tensor([float(e[i]) for i in GOLDEN_INDEX], dtype=torch.float64)
    torch.testing.assert_close(got, torch.tensor(GOLDEN, dtype=torch.float64), rtol=1e-4, atol=1e-7)
    norms = torch.tensor([float(e[0].norm()), float(e[1].norm())], dtype=torch.float64)
    torch.testing.assert_close(norms, torch.tensor(GOLDEN_NORMS, dtype=torch.float64), rtol=1e-4, atol=0.0)


# --------------------------------------------------------------------------- it learns


@pytest.mark.slow
def test_training_beats_initial_weights_by_20_points(tmp_path_factory):
    """On a small synthetic CASIA-B, GaitBase-quick trained with its recipe (SGD, triplet + BNNeck
    cross-entropy, rotation and erasing) beats the same network at its initial weights (same seed,
    zero iterations) by at least 20 points of NM rank-1."""
    import json

    from gaitbench.data.synthetic import SynthSpec, generate
    from gaitbench.run import RunSettings, execute

    root = tmp_path_factory.mktemp("learn-gaitbase")
    store = generate(SynthSpec(subjects=20, frames=8, seed=1), root / "data", progress=False)
    ids = [f"{i:03d}" for i in range(1, 21)]
    partition = root / "p.json"
    partition.write_text(json.dumps({"TRAIN_SET": ids[:12], "TEST_SET": ids[12:]}))
    common = dict(method="gaitbase", protocol="casiab", data_root=str(store.root), partition=str(partition),
                  recipe="quick", progress=False, seed=0)
    initial = execute(RunSettings(**common, iterations=0, out=str(root / "r0")), echo=lambda s: None)
    trained = execute(RunSettings(**common, iterations=60, out=str(root / "r1"),
                                  overrides=["schedule.milestones=[45]"]), echo=lambda s: None)
    before, after = initial.metrics["NM/rank1"], trained.metrics["NM/rank1"]
    print(f"NM rank-1: initial weights {before:.2f}, trained {after:.2f}")
    assert after - before >= 20, (before, after)
