"""Tests for the GaitMask model (plugins/gaitbench_gaitmask). The method contract (output shapes,
packed batches, gradients, determinism, a training step) is gaitbench.testing's."""

import pytest
import torch
import torch.nn.functional as F

import gaitbench
from gaitbench.plugins import get_plugins
from gaitbench.testing import moving_blobs
from gaitbench.testing import parameter_count as n_params
from gaitbench.testing import random_silhouettes as sils
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)
from gaitbench.training.losses import triplet_loss
from gaitbench.training.recipe import load_recipe
from gaitbench_gaitgl import VARIANTS as GL_VARIANTS
from gaitbench_gaitgl.model import GaitGL, GLConv
from gaitbench_gaitmask import METHOD, PIPELINES, VARIANTS
from gaitbench_gaitmask.model import GaitMask


def make(variant="hid2021", seed=0, **kw):
    torch.manual_seed(seed)
    return GaitMask(**{**VARIANTS[variant], **kw})


HID2021_KEYS = [
    ("conv3d.0.conv3d.weight", (32, 1, 3, 3, 3)),  # First Conv 1 -> 32
    ("LTA.0.conv3d.weight", (32, 32, 3, 1, 1)),  # LTA 32 -> 32, (3, 1, 1)
    ("GLConvA0.global_conv3d.conv3d.weight", (64, 32, 3, 3, 3)),  # GMCL-A1
    ("GLConvA0.local_conv3d.conv3d.weight", (64, 32, 3, 3, 3)),
    ("GLConvA1.0.global_conv3d.conv3d.weight", (128, 64, 3, 3, 3)),  # GMCL-A2
    ("GLConvA1.0.local_conv3d.conv3d.weight", (128, 64, 3, 3, 3)),
    ("GLConvA1.1.global_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),  # GMCL-A3
    ("GLConvA1.1.local_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),
    ("GLConvA1.2.global_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),  # GMCL-A4
    ("GLConvA1.2.local_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),
    ("GLConvB2.global_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),  # GMCL-B1
    ("GLConvB2.local_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),
    ("HPP.p", (1,)),
    ("Head0.fc_bin", (64, 128, 128)),
]


@pytest.mark.gaitbench_contract("gaitmask", variants=["quick"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()


def test_registration_and_variants():
    assert {"hid2021", "quick"} <= set(VARIANTS)
    assert "gaitmask" in gaitbench.list_methods()
    assert METHOD.class_count_arg is None  # no classifier
    m = gaitbench.create_model("gaitmask", variant="quick")
    assert isinstance(m, GaitMask) and isinstance(m, GaitGL)


def test_param_count_and_keys():
    m = make("hid2021")
    assert n_params(m) == 4_259_681
    assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == HID2021_KEYS
    # identical to GaitGL's HID 2020 network: weights move between the two one-to-one
    torch.manual_seed(0)
    gl = GaitGL(**GL_VARIANTS["hid2020"])
    assert [(k, v.shape) for k, v in gl.state_dict().items()] == [(k, v.shape) for k, v in m.state_dict().items()]
    m.load_state_dict(gl.state_dict())
    assert n_params(make("quick")) < 200_000


def test_table2_structure():
    m = make("hid2021")
    layers = [m.GLConvA0, *m.GLConvA1, m.GLConvB2]
    assert all(isinstance(x, GLConv) and x.local == "mask" and x.mask == "part_horizontal" for x in layers)
    assert [x.fm_sign for x in layers] == [False, False, False, False, True]  # GMCL-A1..A4, B1
    assert all(x.drop_ratio == 0.5 and x.mask_eval == "unmasked" and x.mask_restrict for x in layers)
    assert m.MaxPool0.kernel_size == (1, 2, 2) and m.MaxPool0.stride == (1, 2, 2)
    assert m.LTA[0].conv3d.stride == (3, 1, 1)
    assert not hasattr(m, "Bn") and not hasattr(m, "Head1")


@pytest.mark.parametrize("variant,shape", [("hid2021", (2, 128, 64)), ("quick", (2, 32, 16))])
def test_output_shapes(variant, shape):
    m = make(variant).eval()
    with torch.no_grad():
        out = m(sils(2, 5))
    assert set(out) == {"embeddings"} and out["embeddings"].shape == shape


def test_training_masks_are_random_and_eval_is_unmasked():
    m = make("quick")
    x = sils(2, 6)
    m.train()
    torch.manual_seed(1)
    a = m(x)["embeddings"]
    torch.manual_seed(2)
    b = m(x)["embeddings"]
    assert not torch.allclose(a, b)  # random masks in training
    m.eval()
    with torch.no_grad():
        e1, e2 = m(x)["embeddings"], m(x)["embeddings"]
    assert torch.equal(e1, e2)  # deterministic at test time
    # test time: the mask branch sees the unmasked map, i.e. act(local_conv(X))
    layer = m.GLConvA0
    z = torch.randn(2, 8, 3, 32, 22)
    with torch.no_grad():
        torch.testing.assert_close(layer.local_features(z), F.leaky_relu(layer.local_conv3d(z)))


def test_mask_branch_with_fixed_halves_is_a_two_part_split():
    torch.manual_seed(0)
    layer = make("quick").GLConvA0
    x = torch.randn(2, 8, 3, 32, 22)
    m = torch.zeros(2, 1, 1, 32, 22)
    m[..., :16, :] = 1.0
    torch.testing.assert_close(layer.local_masked(x, m), layer.local_parts(x, parts=2), atol=1e-6, rtol=1e-5)


def test_tiny_model_trains_with_triplet_only():
    torch.manual_seed(0)
    m = GaitMask(stem=(4,), stages=((8,), (8,), (8,)), bins=(8,), embed_dim=8, input_pool=2).train()
    x, labels = moving_blobs()  # three "subjects", each a distinct moving block plus noise
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = triplet_loss(m(x)["embeddings"], labels)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_golden_embeddings():
    m = make("quick", seed=0).eval()
    x = sils(2, 7, seed=5)
    with torch.no_grad():
        e = m(x, torch.tensor([7, 4]))["embeddings"]
    got = torch.stack([e[0, 0, 0], e[0, 5, 3], e[0, 31, 15], e[1, 0, 0], e[1, 17, 8], e[1, 31, 15],
                       e.abs().sum()])
    torch.testing.assert_close(got, torch.tensor(GOLDEN), atol=1e-6, rtol=1e-4)


# seven values: six entries and the sum of |embeddings|
GOLDEN = [0.009161285, -0.005510833, -0.002904108, 0.002723482, 0.0006237746, -0.00050859, 5.619192]


def test_recipes_and_pipeline():
    assert {"hid2021", "quick"} <= set(METHOD.recipe_names())
    r = load_recipe(METHOD.recipe_path("hid2021"))
    assert r.variant == "hid2021"
    assert (r.sampler.P, r.sampler.K, r.sampler.frames) == (12, 8, 64)
    assert r.optimizer.name == "adam" and r.optimizer.lr == 1e-4
    assert r.schedule.milestones == [10000] and r.schedule.gamma == 0.1 and r.train.iterations == 15000
    assert r.loss.cross_entropy.weight == 0.0  # separate triplet loss only
    q = load_recipe(METHOD.recipe_path("quick"))
    assert q.variant == "quick" and q.loss.cross_entropy.weight == 0.0
    assert q.train.checkpoint_every == 200 and q.train.keep_checkpoints == 2
    assert METHOD.pipelines == PIPELINES
    from gaitbench.evaluation.pipeline import load_pipeline, resolve_stages

    pipe = load_pipeline("hid2021", get_plugins().pipelines())  # found through the method's pipelines
    assert pipe.fuse == "concat" and pipe.stages == ["cluster-qe", "rerank"]
    stages = resolve_stages(pipe.stages, pipe.params, get_plugins().stages())  # every stage and parameter exists
    assert stages[1][1]["k1"] == 6 and stages[1][1]["squared"] is False  # OpenGait's HID re-ranking
    for item in pipe.inputs:  # the models it names exist
        name, variant = item.split(" [")
        assert variant.rstrip("]") in get_plugins().method(name).variants
