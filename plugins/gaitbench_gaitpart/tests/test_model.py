"""Tests for the GaitPart model (gaitbench_gaitpart). The method contract (output shapes, packed
batches, gradients, determinism, a training step) is gaitbench.testing's."""

import pytest
import torch

from gaitbench.nn import FrameWise, init_parameters
from gaitbench.testing import parameter_count as n_params
from gaitbench.testing import random_silhouettes as sils
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)
from gaitbench.training.losses import triplet_loss
from gaitbench_gaitpart import METHOD, VARIANTS
from gaitbench_gaitpart.model import FocalConv2d, GaitPart, MicroMotionCapture


def make(variant="casiab", seed=0):
    torch.manual_seed(seed)
    return GaitPart(**VARIANTS[variant])


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(channels=(4, 8, 16), halving=(0, 1, 2), parts=4, input_pool=4)
    cfg.update(kw)
    return GaitPart(**cfg)


@pytest.mark.gaitbench_contract("gaitpart", variants=["quick", "casiab"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()


# --------------------------------------------------------------------------- structure


def test_param_counts():
    assert n_params(make("casiab")) == 1_204_000
    assert n_params(make("oumvlp")) == 4_841_248
    assert n_params(GaitPart()) == 1_204_000  # defaults == CASIA-B config


def test_variants_and_method():
    assert {"casiab", "oumvlp", "quick"} <= set(VARIANTS)
    assert METHOD.name == "gaitpart" and METHOD.default_variant == "casiab"
    assert {"casiab", "oumvlp", "quick"} <= set(METHOD.recipe_names())


def test_recipes_load():
    from gaitbench.training.recipe import load_recipe

    r = load_recipe(METHOD.recipe_path("casiab"))
    assert (r.optimizer.name, r.optimizer.lr, r.optimizer.weight_decay) == ("adam", 1e-4, 0.0)
    assert (r.sampler.P, r.sampler.K, r.sampler.frames, r.sampler.order, r.sampler.skip) == (8, 16, 30, "ordered", 10)
    assert (r.train.iterations, r.schedule.milestones, r.schedule.gamma) == (120000, [100000], 0.1)
    assert r.loss.triplet.margin == 0.2 and r.loss.cross_entropy.weight == 0
    r = load_recipe(METHOD.recipe_path("oumvlp"))
    assert (r.variant, r.sampler.P, r.sampler.K, r.train.iterations, r.schedule.milestones) == (
        "oumvlp", 32, 16, 250000, [150000])
    r = load_recipe(METHOD.recipe_path("quick"))
    assert r.variant == "quick" and r.sampler.order == "ordered"
    assert (r.train.checkpoint_every, r.train.keep_checkpoints) == (200, 2)


def _expected_keys(c, h, parts, backbone):
    keys = [(f"Backbone.forward_block.feature.{i}.conv.weight", s) for i, s in backbone]
    keys.append(("Head.fc_bin", (parts, c, c)))
    for name, k2 in (("conv1d3x1", 1), ("conv1d3x3", 3)):
        for p in range(parts):
            keys.append((f"TFA.pooling_func.{name}.{p}.0.conv.weight", (h, c, 3)))
            keys.append((f"TFA.pooling_func.{name}.{p}.2.conv.weight", (c, h, k2)))
    return keys


def test_state_dict_keys_casiab():
    sd = make("casiab").state_dict()
    backbone = [(0, (32, 1, 5, 5)), (2, (32, 32, 3, 3)), (5, (64, 32, 3, 3)), (7, (64, 64, 3, 3)),
                (10, (128, 64, 3, 3)), (12, (128, 128, 3, 3))]
    assert len(sd) == 71
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == _expected_keys(128, 32, 16, backbone)


def test_state_dict_keys_oumvlp():
    sd = make("oumvlp").state_dict()
    backbone = [(0, (32, 1, 5, 5)), (2, (32, 32, 3, 3)), (5, (64, 32, 3, 3)), (7, (64, 64, 3, 3)),
                (10, (128, 64, 3, 3)), (12, (128, 128, 3, 3)), (14, (256, 128, 3, 3)), (16, (256, 256, 3, 3))]
    assert len(sd) == 73
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == _expected_keys(256, 64, 16, backbone)


def test_module_layout():
    m = make("casiab")
    assert [n for n, _ in m.named_children()] == ["Backbone", "Head", "HPP", "TFA"]
    assert isinstance(m.Backbone, FrameWise)
    assert n_params(m.HPP) == 0
    feat = m.Backbone.forward_block.feature
    strips = [getattr(l, "halving", 0) for l in feat if hasattr(l, "conv")]
    assert strips == [0, 0, 2, 2, 3, 3]  # p = 1,1 | 4,4 | 8,8 (Table 1)
    assert [type(l).__name__ for l in feat].count("MaxPool2d") == 2
    # per-part MCM parameters are independent
    tfa = m.TFA.pooling_func
    assert tfa.conv1d3x1[0][0].conv.weight.data_ptr() != tfa.conv1d3x1[1][0].conv.weight.data_ptr()
    assert not torch.equal(tfa.conv1d3x1[0][0].conv.weight, tfa.conv1d3x1[1][0].conv.weight)
    om = make("oumvlp").Backbone.forward_block.feature
    assert [getattr(l, "halving", 0) for l in om if hasattr(l, "conv")] == [0, 0, 0, 0, 3, 3, 3, 3]


@pytest.mark.parametrize("variant,shape", [("casiab", (2, 128, 16)), ("oumvlp", (2, 256, 16)),
                                           ("quick", (2, 64, 8))])
def test_output_shapes(variant, shape):
    m = make(variant).eval()
    with torch.no_grad():
        out = m(sils(2, 5))
    assert set(out) == {"embeddings"}
    assert out["embeddings"].shape == shape


def test_intermediate_shapes():
    m = make("casiab")
    with torch.no_grad():
        f = m.Backbone(sils(2, 3).unsqueeze(1))
        assert f.shape == (2, 128, 3, 16, 11)
        assert m.HPP(f[:, :, 0]).shape == (2, 128, 16)


def test_opengait_checkpoint_imports_one_to_one(tmp_path):
    """A checkpoint laid out as the reference's (keys and shapes of the notes, DDP prefix) loads
    without any mapping, and the per-part MCM weights land in the grouped convolutions."""
    import gaitbench
    from gaitbench.checkpoint_import import import_opengait

    g = torch.Generator().manual_seed(3)
    backbone = [(0, (32, 1, 5, 5)), (2, (32, 32, 3, 3)), (5, (64, 32, 3, 3)), (7, (64, 64, 3, 3)),
                (10, (128, 64, 3, 3)), (12, (128, 128, 3, 3))]
    state = {f"module.{k}": torch.randn(*shape, generator=g) * 0.05
             for k, shape in _expected_keys(128, 32, 16, backbone)}
    src = tmp_path / "GaitPart-120000.pt"
    torch.save({"model": state, "iteration": 120000}, src)
    info = import_opengait(src, METHOD, "casiab", tmp_path / "imported.pt")
    assert info["keys"] == 71 and info["iteration"] == 120000
    m = gaitbench.load_model(tmp_path / "imported.pt")
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[f"module.{k}"]), k
    w1, w2 = m.TFA.pooling_func.grouped_weights()
    torch.testing.assert_close(w1[2 * 32 * 5 + 32:2 * 32 * 6], state["module.TFA.pooling_func.conv1d3x3.5.0.conv.weight"])
    torch.testing.assert_close(w2[2 * 128 * 7:2 * 128 * 7 + 128, :, 1],
                               state["module.TFA.pooling_func.conv1d3x1.7.2.conv.weight"][:, :, 0])


# --------------------------------------------------------------------------- focal conv


def test_focal_conv_matches_strip_loop():
    torch.manual_seed(0)
    fc = FocalConv2d(3, 5, 3, 1, 1, halving=2)
    x = torch.randn(2, 3, 16, 7)
    ref = torch.cat([fc.conv(strip) for strip in torch.split(x, 4, dim=2)], dim=2)
    torch.testing.assert_close(fc(x), ref)
    assert list(fc.state_dict()) == ["conv.weight"]
    plain = FocalConv2d(3, 5, 3, 1, 1, halving=0)
    torch.testing.assert_close(plain(x), plain.conv(x))


# --------------------------------------------------------------------------- MCM


def mcm_loop_reference(mcm, x):
    """The micro-motion capture modules written literally: a Python loop over parts, ``nn``
    modules of the per-part nets, torch's pooling layers and a max over frames.
    ``x`` [n, parts, C, s] (one unpadded batch) -> [n, C, parts]."""
    avg3, max3 = torch.nn.AvgPool1d(3, 1, 1), torch.nn.MaxPool1d(3, 1, 1)
    avg5, max5 = torch.nn.AvgPool1d(5, 1, 2), torch.nn.MaxPool1d(5, 1, 2)
    outs = []
    for p in range(mcm.parts):
        xp = x[:, p]  # [n, C, s]
        s3 = torch.sigmoid(mcm.conv1d3x1[p](xp))
        s5 = torch.sigmoid(mcm.conv1d3x3[p](xp))
        f3 = (avg3(xp) + max3(xp)) * s3
        f5 = (avg5(xp) + max5(xp)) * s5
        outs.append((f3 + f5).max(-1)[0])
    return torch.stack(outs, -1)


@pytest.mark.parametrize("s", [1, 2, 3, 7])
def test_grouped_mcm_matches_loop(s):
    torch.manual_seed(0)
    mcm = init_parameters(MicroMotionCapture(16, squeeze=4, parts=5))
    x = torch.randn(3, 5, 16, s)
    torch.testing.assert_close(mcm(x), mcm_loop_reference(mcm, x), atol=1e-5, rtol=1e-5)


def test_grouped_mcm_matches_loop_in_full_model():
    m = make("casiab").eval()
    x = sils(2, 6)
    with torch.no_grad():
        f = m.HPP(m.Backbone.forward_block(x.reshape(12, 1, 64, 44)))  # [12, C, P]
        f = f.reshape(2, 6, 128, 16).permute(0, 3, 2, 1)
        ref = m.Head(mcm_loop_reference(m.TFA.pooling_func, f))
        torch.testing.assert_close(m(x)["embeddings"], ref, atol=1e-5, rtol=1e-5)


def test_grouped_mcm_gradients_match_loop():
    torch.manual_seed(0)
    a = MicroMotionCapture(8, squeeze=4, parts=3)
    x = torch.randn(2, 3, 8, 5)
    a(x).pow(2).sum().backward()
    g_grouped = [p.grad.clone() for p in a.parameters()]
    a.zero_grad()
    mcm_loop_reference(a, x).pow(2).sum().backward()
    for g, p in zip(g_grouped, a.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- padding


def test_padded_mcm_matches_single():
    """Directly on the MCM: zero padding at the end of a shorter sequence behaves as the
    sequence's own padding (conv1d zeros, avg pool counted zeros, max pool -inf)."""
    torch.manual_seed(0)
    mcm = MicroMotionCapture(8, squeeze=2, parts=3)
    lengths = torch.tensor([1, 2, 4, 9])
    x = torch.randn(4, 3, 8, 9) - 3.0  # negative features: a 0 leaking into a max would show
    for i, L in enumerate(lengths):
        x[i, :, :, L:] = 0
    out = mcm(x, lengths)
    for i, L in enumerate(lengths):
        torch.testing.assert_close(out[i], mcm(x[i:i + 1, :, :, :L])[0], atol=1e-5, rtol=1e-5)


def test_bad_inputs():
    m = tiny().eval()
    with pytest.raises(ValueError):
        m(torch.rand(2, 3, 64, 44), torch.tensor([0, 3]))
    with pytest.raises(ValueError):
        m(torch.rand(2, 3, 64, 44), torch.tensor([4, 3]))
    with pytest.raises(ValueError):
        m(torch.rand(2, 3, 1, 2, 64, 44))


# --------------------------------------------------------------------------- training behaviour


def test_tiny_model_trains():
    m = tiny(seed=0).train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    # 4 "subjects", each a fixed random silhouette pattern plus noise per sequence
    protos = torch.rand(4, 1, 64, 44, generator=g)
    labels = torch.arange(4).repeat_interleave(4)

    def batch():
        noise = torch.rand(16, 6, 64, 44, generator=g)
        return (0.6 * protos[labels] + 0.4 * noise).clamp(0, 1)

    losses = []
    for _ in range(25):
        loss, _ = triplet_loss(m(batch())["embeddings"], labels, margin=0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


# --------------------------------------------------------------------------- golden values

# Computed once with this implementation (torch.manual_seed(0), variant casiab, fresh init; input
# sils(2, 5, seed=1) with sequence 1 cut to 3 frames in a padded batch). The initial embeddings are
# small (|e| ~ 1e-3), so the tolerance is relative: 1e-4. A change of any of these means the
# network computes something else: if intended, recompute and say why in the commit.
GOLDEN_INDEX = [(0, 0, 0), (0, 17, 3), (0, 127, 15), (1, 64, 8), (1, 5, 12)]
GOLDEN = [-0.000285398652, -0.0014154712, 0.0103595322, -0.000706107297, -0.000182630218]
GOLDEN_NORMS = [0.218774006, 0.194054246]  # per-sequence L2 norm of the [128, 16] embedding


def test_golden_embeddings():
    m = make("casiab", seed=0).eval()
    with torch.no_grad():
        e = m(sils(2, 5, seed=1), torch.tensor([5, 3]))["embeddings"]
    got = torch.tensor([float(e[i]) for i in GOLDEN_INDEX], dtype=torch.float64)
    torch.testing.assert_close(got, torch.tensor(GOLDEN, dtype=torch.float64), rtol=1e-4, atol=1e-8)
    norms = torch.tensor([float(e[0].norm()), float(e[1].norm())], dtype=torch.float64)
    torch.testing.assert_close(norms, torch.tensor(GOLDEN_NORMS, dtype=torch.float64), rtol=1e-4, atol=0.0)
