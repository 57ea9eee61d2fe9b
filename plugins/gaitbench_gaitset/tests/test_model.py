"""Tests for the GaitSet model and the shared building blocks in gaitbench.nn. The method contract
(output shapes, packed batches, gradients, determinism, a training step) is gaitbench.testing's."""

import pytest
import torch
from torch import nn

from gaitbench.nn import (
    BasicConv2d,
    FrameWise,
    SeparateFCs,
    horizontal_pyramid_pool,
    init_parameters,
    temporal_max,
)
from gaitbench.testing import parameter_count as n_params
from gaitbench.testing import random_silhouettes as sils
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)
from gaitbench_gaitset import VARIANTS
from gaitbench_gaitset.model import GaitSet


def make(variant="casiab", seed=0):
    torch.manual_seed(seed)
    return GaitSet(**VARIANTS[variant])


# --------------------------------------------------------------------------- GaitSet


@pytest.mark.gaitbench_contract("gaitset", variants=["quick", "casiab"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()


def test_param_counts():
    assert n_params(make("casiab")) == 2_594_592
    assert n_params(make("oumvlp")) == 6_313_536
    assert n_params(GaitSet()) == 2_594_592  # defaults == CASIA-B config


def test_variants_present():
    assert {"casiab", "oumvlp", "quick"} <= set(VARIANTS)


def test_state_dict_keys_order_shapes():
    sd = make("casiab").state_dict()
    expected = [
        ("set_block1.forward_block.0.conv.weight", (32, 1, 5, 5)),
        ("set_block1.forward_block.2.conv.weight", (32, 32, 3, 3)),
        ("set_block2.forward_block.0.conv.weight", (64, 32, 3, 3)),
        ("set_block2.forward_block.2.conv.weight", (64, 64, 3, 3)),
        ("set_block3.forward_block.0.conv.weight", (128, 64, 3, 3)),
        ("set_block3.forward_block.2.conv.weight", (128, 128, 3, 3)),
        ("gl_block2.0.conv.weight", (64, 32, 3, 3)),
        ("gl_block2.2.conv.weight", (64, 64, 3, 3)),
        ("gl_block3.0.conv.weight", (128, 64, 3, 3)),
        ("gl_block3.2.conv.weight", (128, 128, 3, 3)),
        ("Head.fc_bin", (62, 128, 256)),
    ]
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == expected


def test_module_order_and_set_pooling_parameter_free():
    m = make("casiab")
    names = [n for n, _ in m.named_children()]
    assert names == ["set_block1", "set_block2", "set_block3", "gl_block2", "gl_block3", "set_pooling", "Head"]
    assert isinstance(m.set_block1, FrameWise)
    assert n_params(m.set_pooling) == 0
    # gl blocks are independent copies, not shared with the set blocks
    assert m.gl_block2[0].conv.weight.data_ptr() != m.set_block2.forward_block[0].conv.weight.data_ptr()


def test_intermediate_shapes():
    m = make("casiab")
    x = sils(2, 3).unsqueeze(1)
    o1 = m.set_block1(x)
    o2 = m.set_block2(o1)
    o3 = m.set_block3(o2)
    assert o1.shape == (2, 32, 3, 32, 22)
    assert o2.shape == (2, 64, 3, 16, 11)
    assert o3.shape == (2, 128, 3, 16, 11)


def reference_forward(m, x):
    """The GaitSet forward written literally with the FrameWise modules."""
    x = x.unsqueeze(1)
    outs = m.set_block1(x)
    gl = m.gl_block2(m.set_pooling(outs))
    outs = m.set_block2(outs)
    gl = m.gl_block3(gl + m.set_pooling(outs))
    outs = m.set_pooling(m.set_block3(outs))
    gl = gl + outs
    feature = torch.cat([horizontal_pyramid_pool(outs, m.bins), horizontal_pyramid_pool(gl, m.bins)], -1)
    return m.Head(feature)


def test_forward_matches_literal_reference():
    m = make("casiab").eval()
    x = sils(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(m(x)["embeddings"], reference_forward(m, x), atol=1e-5, rtol=1e-5)


def test_input_pool():
    torch.manual_seed(0)
    m = GaitSet(channels=(4, 8, 16), bins=(4, 2, 1), embed_dim=8, input_pool=2).eval()
    x = sils(2, 3)
    with torch.no_grad():
        pooled = torch.nn.functional.avg_pool2d(x, 2)  # [2, 3, 32, 22]
        torch.testing.assert_close(m(x)["embeddings"], reference_forward(m, pooled), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant,shape", [("casiab", (256, 62)), ("quick", (128, 30))])
def test_embedding_shape(variant, shape):
    # 62 parts: 2 branches x (16 + 8 + 4 + 2 + 1) bins; quick: 2 x (8 + 4 + 2 + 1)
    with torch.no_grad():
        out = make(variant).eval()(sils(3, 5))
    assert set(out) == {"embeddings"} and out["embeddings"].shape == (3, *shape)
    assert n_params(make("quick")) < n_params(make("casiab"))


# --------------------------------------------------------------------------- gaitbench.nn


def test_separate_fcs_matches_loop():
    torch.manual_seed(0)
    fc = SeparateFCs(5, 7, 3)
    x = torch.randn(4, 7, 5)
    ref = torch.stack([x[:, :, p] @ fc.fc_bin[p] for p in range(5)], -1)
    torch.testing.assert_close(fc(x), ref)
    assert fc(x).shape == (4, 3, 5)

    fcn = SeparateFCs(5, 7, 3, norm=True)
    w = fcn.fc_bin / fcn.fc_bin.norm(dim=1, keepdim=True)
    ref = torch.stack([x[:, :, p] @ w[p] for p in range(5)], -1)
    torch.testing.assert_close(fcn(x), ref)


def test_horizontal_pyramid_pool_matches_loop():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 5)
    bins = (4, 2, 1)
    out = horizontal_pyramid_pool(x, bins)
    assert out.shape == (2, 3, 7)
    ref = []
    for b in bins:
        step = 8 // b
        for k in range(b):
            strip = x[:, :, k * step:(k + 1) * step, :].reshape(2, 3, -1)
            ref.append(strip.mean(-1) + strip.max(-1).values)
    torch.testing.assert_close(out, torch.stack(ref, -1))


def test_temporal_max_masks_padding():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 5, 6)
    lengths = torch.tensor([4, 1, 2])
    xp = x.clone()
    for i, L in enumerate(lengths):
        xp[i, :, L:] = 1e6  # padding larger than any valid value
    out = temporal_max(xp, lengths)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 2, 5, 6)
    for i, L in enumerate(lengths):
        torch.testing.assert_close(out[i], x[i, :, :L].max(1).values)
    torch.testing.assert_close(temporal_max(x), x.max(2).values)
    torch.testing.assert_close(temporal_max(x.transpose(1, 2), lengths, dim=1), temporal_max(x, lengths))


def test_framewise_and_basicconv():
    torch.manual_seed(0)
    block = FrameWise(nn.Sequential(BasicConv2d(2, 4, 3, 1, 1), nn.MaxPool2d(2)))
    assert list(block.state_dict()) == ["forward_block.0.conv.weight"]
    assert block.forward_block[0].conv.bias is None
    x = torch.randn(2, 2, 3, 8, 6)
    y = block(x)
    assert y.shape == (2, 4, 3, 4, 3)
    torch.testing.assert_close(y[1, :, 2], block.forward_block(x[1:2, :, 2])[0])


def test_init_parameters():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2), SeparateFCs(2, 3, 4))
    for p in m.parameters():
        nn.init.constant_(p, 5.0)
    init_parameters(m)
    assert (m[0].bias == 0).all() and (m[2].bias == 0).all()
    assert m[0].weight.abs().max() < 5 and m[2].weight.abs().max() < 5
    assert (m[1].bias == 0).all() and (m[1].weight - 1).abs().max() < 0.2
    assert (m[3].fc_bin == 5).all()  # own init kept


def test_multichannel_input_and_bad_lengths():
    torch.manual_seed(0)
    m = GaitSet(channels=(4, 8, 16), bins=(4, 2, 1), embed_dim=8, input_pool=4, in_channels=2).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 2, 64, 44))["embeddings"].shape == (2, 8, 14)
    with pytest.raises(ValueError):
        m(torch.rand(2, 3, 64, 44))  # channel dim missing
    with pytest.raises(ValueError):
        make("quick")(torch.rand(2, 3, 64, 44), torch.tensor([0, 3]))
