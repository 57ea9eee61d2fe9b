"""Tests for the GaitGL model (plugins/gaitbench_gaitgl). The method contract (output shapes, packed
batches, gradients, determinism, a training step) is gaitbench.testing's: for the registered
variants through its pytest marker, for other layouts (the local-branch options, reduced TPAMI
networks) with its clause functions."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gaitbench
from gaitbench.testing import (check_eval_determinism, check_full_lengths, check_gradients, check_outputs,
                               check_padding, moving_blobs)
from gaitbench.testing import parameter_count as n_params
from gaitbench.testing import random_silhouettes as sils
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)
from gaitbench.training.losses import part_cross_entropy, triplet_loss
from gaitbench.training.recipe import load_recipe
from gaitbench_gaitgl import METHOD, VARIANTS
from gaitbench_gaitgl.model import MASK_TYPES, BasicConv3d, GaitGL, GeMHPP, GLConv, complementary_masks


def make(variant="casiab", seed=0, **kw):
    torch.manual_seed(seed)
    return GaitGL(**{**VARIANTS[variant], **kw})


@pytest.mark.gaitbench_contract("gaitgl", variants=["quick"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()


# The CASIA-B network at full size, its forward clauses: a backward runs the quick network's code at
# more than ten times the cost.
@pytest.mark.gaitbench_contract("gaitgl", variants=["casiab"], only=["outputs", "padding", "full_lengths",
                                                                   "eval_determinism"])
def test_contract_casiab_forward(gaitbench_contract):
    gaitbench_contract.check()


@pytest.mark.gaitbench_contract("gaitgl", variants=["quick"], model_kwargs={"local": "mask"})
def test_contract_mask_based_local_branch(gaitbench_contract):
    gaitbench_contract.check()


# the HID 2020 layout (no BatchNorm head, no classifier, triplet only) at the quick variant's size
@pytest.mark.gaitbench_contract("gaitgl", variants=["quick"], model_kwargs={"bn_head": False}, recipe="hid2020")
def test_contract_triplet_only_head(gaitbench_contract):
    gaitbench_contract.check()


@pytest.mark.parametrize("kw", [{"local": "mask", "mask": "pixel"}, {"local": "mask", "mask_restrict": False}])
def test_contract_clauses_of_other_local_branches(kw):
    m = make("quick", num_classes=4, **kw)
    check_gradients(m, where=f"GaitGL quick {kw}")
    check_eval_determinism(m, where=f"GaitGL quick {kw}")


# --------------------------------------------------------------------------- structure


def test_variants_and_registration():
    assert {"casiab", "oumvlp", "hid2020", "quick"} <= set(VARIANTS)
    assert METHOD.default_variant == "casiab" and METHOD.class_count_arg == "num_classes"
    assert "gaitgl" in gaitbench.list_methods()
    m = gaitbench.create_model("gaitgl", variant="quick", num_classes=5)
    assert m.Head1.fc_bin.shape == (16, 32, 5)


def test_param_counts():
    assert n_params(make("casiab")) == 3_096_673
    assert n_params(GaitGL()) == 3_096_673  # defaults == the CASIA-B configuration
    assert n_params(make("casiab", num_classes=10)) == 3_096_673 - 64 * 128 * (74 - 10)
    assert n_params(make("hid2020")) == 4_259_681
    assert n_params(make("quick")) < 200_000
    # the 95M OU-MVLP model is counted on the meta device: shapes only, no memory
    with torch.device("meta"):
        big = GaitGL(**VARIANTS["oumvlp"])
    assert n_params(big) == 95_620_449
    assert big.Head1.fc_bin.shape == (64, 256, 5153)
    assert sum(b.numel() for b in make("casiab").buffers()) == 257  # BN running stats + counter


CASIAB_KEYS = [
    ("conv3d.0.conv3d.weight", (32, 1, 3, 3, 3)),
    ("LTA.0.conv3d.weight", (32, 32, 3, 1, 1)),
    ("GLConvA0.global_conv3d.conv3d.weight", (64, 32, 3, 3, 3)),
    ("GLConvA0.local_conv3d.conv3d.weight", (64, 32, 3, 3, 3)),
    ("GLConvA1.global_conv3d.conv3d.weight", (128, 64, 3, 3, 3)),
    ("GLConvA1.local_conv3d.conv3d.weight", (128, 64, 3, 3, 3)),
    ("GLConvB2.global_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),
    ("GLConvB2.local_conv3d.conv3d.weight", (128, 128, 3, 3, 3)),
    ("HPP.p", (1,)),
    ("Head0.fc_bin", (64, 128, 128)),
    ("Bn.weight", (128,)),
    ("Bn.bias", (128,)),
    ("Bn.running_mean", (128,)),
    ("Bn.running_var", (128,)),
    ("Bn.num_batches_tracked", ()),
    ("Head1.fc_bin", (64, 128, 74)),
]


def test_state_dict_keys_casiab():
    sd = make("casiab").state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == CASIAB_KEYS
    # the mask-based local extractor has exactly the same parameters and keys
    assert list(make("casiab", local="mask").state_dict()) == [k for k, _ in CASIAB_KEYS]


def test_state_dict_keys_oumvlp_and_hid2020():
    with torch.device("meta"):
        sd = GaitGL(**VARIANTS["oumvlp"]).state_dict()
    assert len(sd) == 23
    expected = ["conv3d.0.conv3d.weight", "conv3d.2.conv3d.weight", "LTA.0.conv3d.weight"]
    for stage in ("GLConvA0", "GLConvA1", "GLConvB2"):
        for i in (0, 1):
            expected += [f"{stage}.{i}.global_conv3d.conv3d.weight", f"{stage}.{i}.local_conv3d.conv3d.weight"]
    expected += ["HPP.p", "Head0.fc_bin", "Bn.weight", "Bn.bias", "Bn.running_mean", "Bn.running_var",
                 "Bn.num_batches_tracked", "Head1.fc_bin"]
    assert list(sd) == expected
    assert tuple(sd["GLConvB2.1.local_conv3d.conv3d.weight"].shape) == (256, 256, 3, 3, 3)
    assert tuple(sd["Head0.fc_bin"].shape) == (64, 256, 256)

    hid = make("hid2020").state_dict()
    assert "Bn.weight" not in hid and "Head1.fc_bin" not in hid
    assert [k for k in hid if k.endswith("global_conv3d.conv3d.weight")] == [
        "GLConvA0.global_conv3d.conv3d.weight", "GLConvA1.0.global_conv3d.conv3d.weight",
        "GLConvA1.1.global_conv3d.conv3d.weight", "GLConvA1.2.global_conv3d.conv3d.weight",
        "GLConvB2.global_conv3d.conv3d.weight"]


def test_intermediate_shapes_casiab():
    m = make("casiab").eval()
    x = sils(1, 6).unsqueeze(1)
    with torch.no_grad():
        a = m.conv3d(x)
        b = m.LTA(a)
        c = m.GLConvA0(b)
        d = m.MaxPool0(c)
        e = m.GLConvA1(d)
        f = m.GLConvB2(e)
    assert a.shape == (1, 32, 6, 64, 44)
    assert b.shape == (1, 32, 2, 64, 44)  # LTA: temporal stride 3
    assert c.shape == (1, 64, 2, 64, 44)
    assert d.shape == (1, 64, 2, 32, 22)
    assert e.shape == (1, 128, 2, 32, 22)
    assert f.shape == (1, 128, 2, 64, 22)  # GLConv-B doubles the height


@pytest.mark.parametrize("variant,emb,logits", [
    ("casiab", (2, 128, 64), (2, 74, 64)),
    ("hid2020", (2, 128, 64), None),
    ("quick", (2, 32, 16), (2, 74, 16)),
])
def test_output_shapes(variant, emb, logits):
    m = make(variant).train()
    out = m(sils(2, 7))
    assert out["embeddings"].shape == emb
    if logits is None:
        assert set(out) == {"embeddings"}
    else:
        assert out["logits"].shape == logits
    m.eval()
    with torch.no_grad():
        assert m(sils(2, 7))["embeddings"].shape == emb


def test_output_shape_oumvlp_structure():
    # the OU-MVLP network with a small classifier (its 84M-parameter Head1 only changes the class count)
    m = make("oumvlp", num_classes=6).eval()
    with torch.no_grad():
        out = m(sils(1, 3))
    assert out["embeddings"].shape == (1, 256, 64) and out["logits"].shape == (1, 6, 64)


@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_short_sequences_repeated(s):
    m = make("quick").eval()
    x = sils(2, s)
    with torch.no_grad():
        out = m(x)["embeddings"]
        assert out.shape == (2, 32, 16) and torch.isfinite(out).all()
        if s < 3:
            rep = x.repeat(1, 3 if s == 1 else 2, 1, 1)  # the reference: x3 for 1 frame, x2 for 2
            torch.testing.assert_close(out, m(rep)["embeddings"])


# --------------------------------------------------------------------------- blocks


def test_local_parts_fold_matches_loop_over_strips():
    torch.manual_seed(0)
    layer = GLConv(3, 5, parts=4)
    x = torch.randn(2, 3, 4, 8, 6)
    conv = layer.local_conv3d
    ref = F.leaky_relu(torch.cat([conv(z) for z in x.split(2, 3)], 3))
    torch.testing.assert_close(layer.local_parts(x), ref, atol=1e-6, rtol=1e-5)
    g = F.leaky_relu(layer.global_conv3d(x))
    torch.testing.assert_close(layer(x), g + ref, atol=1e-6, rtol=1e-5)
    fm = GLConv(3, 5, parts=4, fm_sign=True)
    fm.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fm(x), torch.cat([g, ref], 3), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        GLConv(3, 5, parts=3).local_parts(x)  # 8 rows do not split into 3 parts


def half_masks(n, h, w):
    m = torch.zeros(n, 1, 1, h, w)
    m[..., : h // 2, :] = 1.0
    return m


def test_mask_with_fixed_halves_equals_two_part_split():
    torch.manual_seed(0)
    layer = GLConv(3, 5, parts=2, local="mask", mask="part_horizontal")
    x = torch.randn(2, 3, 4, 8, 6)
    masked = layer.local_masked(x, half_masks(2, 8, 6))
    torch.testing.assert_close(masked, layer.local_parts(x, parts=2), atol=1e-6, rtol=1e-5)
    # the literal, unrestricted sum leaks across the cut: rows next to it differ, the rest agree
    layer.mask_restrict = False
    literal = layer.local_masked(x, half_masks(2, 8, 6))
    diff = (literal - masked).abs().amax((0, 1, 2, 4))
    assert diff[[3, 4]].min() > 1e-3 and diff[[0, 1, 2, 5, 6, 7]].max() < 1e-6


def test_mask_model_with_fixed_halves_equals_two_part_model(monkeypatch):
    import gaitbench_gaitgl.model as mod

    parts = make("quick", parts=2, seed=3).train()
    masked = make("quick", parts=2, seed=3, local="mask", mask="part_horizontal").train()
    assert all(torch.equal(a, b) for a, b in zip(parts.state_dict().values(), masked.state_dict().values()))
    monkeypatch.setattr(mod, "complementary_masks",
                        lambda kind, n, h, w, d, device=None, generator=None: half_masks(n, h, w))
    x = sils(4, 9)
    torch.testing.assert_close(masked(x)["embeddings"], parts(x)["embeddings"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_complementary_masks(kind):
    g = torch.Generator().manual_seed(0)
    n, h, w, d = 64, 16, 11, 0.3
    m = complementary_masks(kind, n, h, w, d, generator=g)
    assert m.shape == (n, 1, 1, h, w)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    m = m[:, 0, 0]
    if kind.endswith("horizontal"):
        assert (m == m[:, :, :1]).all()  # whole rows
        rows = m[:, :, 0]
        k = int(d * h) if kind.startswith("part") else round(d * h)
        assert (rows.sum(1) == k).all()
        if kind.startswith("part"):  # one contiguous band
            assert ((rows[:, 1:] - rows[:, :-1]).abs().sum(1) <= 2).all()
    elif kind.endswith("vertical"):
        assert (m == m[:, :1, :]).all()  # whole columns
        cols = m[:, 0, :]
        k = int(d * w) if kind.startswith("part") else round(d * w)
        assert (cols.sum(1) == k).all()
        if kind.startswith("part"):
            assert ((cols[:, 1:] - cols[:, :-1]).abs().sum(1) <= 2).all()
    else:
        assert (m.sum((1, 2)) == round(d * h * w)).all()
    assert len({tuple(r.flatten().tolist()) for r in m}) > 1  # drawn per sample


def test_mask_eval_modes():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 8, 6)
    layer = GLConv(3, 5, parts=2, local="mask").eval()
    unmasked = layer.local_features(x)
    torch.testing.assert_close(unmasked, F.leaky_relu(layer.local_conv3d(x)))
    torch.testing.assert_close(layer.local_features(x), unmasked)  # deterministic
    layer.mask_eval = "parts"
    torch.testing.assert_close(layer.local_features(x), layer.local_parts(x, parts=2))
    layer.train()
    a, b = layer.local_features(x), layer.local_features(x)
    assert not torch.allclose(a, b)  # random masks in training
    with pytest.raises(ValueError):
        GLConv(3, 5, local="mask", mask="diagonal")
    with pytest.raises(ValueError):
        GLConv(3, 5, local="mask", drop_ratio=1.0)


def test_gem_hpp():
    gem = GeMHPP(bins=(4, 2))
    x = torch.rand(2, 3, 8, 5) + 0.1
    out = gem(x)
    assert out.shape == (2, 3, 6)
    p = 6.5
    ref0 = x.reshape(2, 3, 4, -1).pow(p).mean(-1).pow(1 / p)
    torch.testing.assert_close(out[..., :4], ref0)
    with torch.no_grad():
        gem.p.fill_(1.0)
    torch.testing.assert_close(gem(x)[..., 4:], x.reshape(2, 3, 2, -1).mean(-1))


# --------------------------------------------------------------------------- packed batches


def packed(lengths, h=64, w=44, s_max=None):
    seqs = [sils(1, int(L), h, w, seed=10 + i)[0] for i, L in enumerate(lengths)]
    s_max = s_max or max(lengths)
    batch = torch.full((len(seqs), s_max, h, w), 1.0)  # adversarial padding: must not leak
    for i, q in enumerate(seqs):
        batch[i, : q.shape[0]] = q
    return seqs, batch, torch.tensor(lengths)


def test_full_and_equal_lengths():
    m = make("quick").eval()
    x = sils(3, 8)
    with torch.no_grad():
        # equal lengths shorter than the padding: the padding is cut off
        torch.testing.assert_close(m(x, torch.tensor([5, 5, 5]))["embeddings"], m(x[:, :5])["embeddings"])
    with pytest.raises(ValueError):
        m(x, torch.tensor([0, 3, 8]))
    with pytest.raises(ValueError):
        m(x, torch.tensor([9, 3, 8]))


# --------------------------------------------------------------------------- training behaviour


@pytest.mark.parametrize("kw", [{}, {"local": "mask", "mask": "strip_vertical"}])
def test_tiny_model_trains(kw):
    torch.manual_seed(0)
    m = GaitGL(stem=(4,), stages=((8,), (8,), (8,)), parts=2, bins=(8,), input_pool=2, num_classes=3, **kw)
    x, labels = moving_blobs()  # three "subjects", each a distinct moving block plus noise
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    m.train()
    for _ in range(15):
        out = m(x)
        loss = triplet_loss(out["embeddings"], labels)[0] + part_cross_entropy(out["logits"], labels)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_golden_embeddings():
    """Fixed seed + input -> fixed outputs (guards against silent changes of the computation)."""
    m = make("quick", seed=0).eval()
    x = sils(2, 7, seed=5)
    lengths = torch.tensor([7, 4])
    with torch.no_grad():
        e = m(x, lengths)["embeddings"]
    got = torch.stack([e[0, 0, 0], e[0, 5, 3], e[0, 31, 15], e[1, 0, 0], e[1, 17, 8], e[1, 31, 15],
                       e.abs().sum()])
    expected = torch.tensor(GOLDEN)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)


# seven values: six entries and the sum of |embeddings|
GOLDEN = [-0.01352084, -0.02541536, -0.00596166, 0.002398456, -0.003642244, 0.004883697, 13.43437]


def test_opengait_checkpoint_imports_one_to_one(tmp_path):
    from gaitbench.checkpoint_import import import_opengait

    src = make("casiab", seed=5, num_classes=20)
    ckpt = tmp_path / "GaitGL-80000.pt"
    torch.save({"model": src.state_dict(), "iteration": 80000}, ckpt)  # OpenGait's checkpoint layout
    info = import_opengait(ckpt, METHOD, "casiab", tmp_path / "gaitgl.pt")
    assert info["keys"] == 16 and info["model_kwargs"] == {"num_classes": 20}  # class count inferred
    loaded = gaitbench.load_model(tmp_path / "gaitgl.pt")
    for (k, a), (k2, b) in zip(loaded.state_dict().items(), src.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


# --------------------------------------------------------------------------- recipes


def test_recipes_load_and_build():
    names = METHOD.recipe_names()
    assert {"casiab", "oumvlp", "tpami", "quick", "hid2020"} <= set(names)
    for name in names:
        r = load_recipe(METHOD.recipe_path(name))
        assert r.variant in VARIANTS
    casiab = load_recipe(METHOD.recipe_path("casiab"))
    assert (casiab.optimizer.lr, casiab.optimizer.weight_decay) == (1e-4, 5e-4)
    assert (casiab.sampler.P, casiab.sampler.K, casiab.sampler.frames, casiab.sampler.order) == (8, 8, 30, "ordered")
    assert casiab.train.iterations == 80000 and casiab.schedule.milestones == [70000]
    assert casiab.loss.cross_entropy.weight == 1.0 and casiab.loss.cross_entropy.label_smoothing == 0.0
    oumvlp = load_recipe(METHOD.recipe_path("oumvlp"))
    assert oumvlp.variant == "oumvlp" and oumvlp.schedule.milestones == [150000, 200000]
    assert oumvlp.loss.cross_entropy.label_smoothing == 0.1 and (oumvlp.sampler.P, oumvlp.sampler.K) == (32, 8)
    quick = load_recipe(METHOD.recipe_path("quick"))
    assert quick.train.checkpoint_every == 200 and quick.train.keep_checkpoints == 2
    tpami = load_recipe(METHOD.recipe_path("tpami"))
    assert tpami.variant == "tpami" and tpami.model == {}  # the variant carries the network and masks
    m = METHOD.create(tpami.variant, **tpami.model, num_classes=7)
    assert m.blocks == TPAMI_BLOCKS["tpami"] and m.Head1.fc_bin.shape == (64, 128, 7)
    assert all(g.local == "mask" and g.mask == "strip_vertical" and g.drop_ratio == 0.3 for g in glconvs(m))


# --------------------------------------------------------------------------- TPAMI 2022 networks

TPAMI = ("tpami", "tpami-oumvlp", "tpami-grew", "tpami-gait3d")
LARGE_BLOCKS = ("conv3d", "GLConvA0", "MaxPool0", "GLConvA1", "LTA", "GLConvA2", "MaxPool2", "GLConvB3")
TPAMI_BLOCKS = {
    # CASIA-B (section 4.2): LTA takes stage 1's pooling slot (section 3.1), SP after stage 2
    "tpami": ("conv3d", "GLConvA0", "LTA", "GLConvA1", "MaxPool1", "GLConvB2"),
    # large (section 4.2): SP after stages 1 and 3, LTA in stage 2, a fourth stage
    "tpami-oumvlp": LARGE_BLOCKS, "tpami-grew": LARGE_BLOCKS, "tpami-gait3d": LARGE_BLOCKS,
}
LARGE_WIDTHS = ((64, 64), (128, 128), (256, 256), (512, 512, 512, 512))
TPAMI_WIDTHS = {"tpami": ((64,), (128,), (128, 128)), "tpami-oumvlp": LARGE_WIDTHS, "tpami-grew": LARGE_WIDTHS,
                "tpami-gait3d": LARGE_WIDTHS}
TPAMI_PARAMS = {"tpami": 3_990_625, "tpami-oumvlp": 102_970_721, "tpami-grew": 224_597_345,
                "tpami-gait3d": 114_103_649}
# embedding width, parts (= GeM bins = the final feature height), classes
TPAMI_OUT = {"tpami": (128, 64, 74), "tpami-oumvlp": (256, 32, 5153), "tpami-grew": (256, 32, 20000),
             "tpami-gait3d": (256, 64, 3000)}
SECTION_3_2 = 'model.pools=["max", "lta", "none"]'  # the --set line of the docstrings


def meta(variant, **kw):
    """The full network on the meta device: shapes only, no memory, no compute."""
    with torch.device("meta"):
        return GaitGL(**{**VARIANTS[variant], **kw})


def stage_layers(m):
    """The GLConv layers of each stage, in forward order: [[layer, ...] per stage]."""
    stages = [getattr(m, b) for b in m.blocks if b.startswith("GLConv")]
    return [list(s) if isinstance(s, nn.Sequential) else [s] for s in stages]


def glconvs(m):
    """All GLConv layers, in forward order."""
    return [g for s in stage_layers(m) for g in s]


def tiny(variant, seed=0, **kw):
    """The variant's layout with all widths / 8, 6 classes, for a quarter-size input (bins / 4 follow
    the final height). Returns the model and its input (h, w)."""
    v = VARIANTS[variant]
    small = {**v, "stem": tuple(c // 8 for c in v["stem"]),
             "stages": tuple(tuple(c // 8 for c in s) for s in v["stages"]),
             "embed_dim": v["embed_dim"] // 8, "num_classes": 6, "bins": (v["bins"][0] // 4,)}
    torch.manual_seed(seed)
    h, w = v["input_size"]
    return GaitGL(**{**small, **kw}), (h // 4, w // 4)


def test_every_variant_carries_its_input_size():
    assert set(TPAMI) <= set(VARIANTS)
    for name, v in VARIANTS.items():
        assert v["input_size"] == ((128, 88) if name == "tpami-gait3d" else (64, 44)), name
    assert make("quick").input_size == (64, 44) and GaitGL().input_size == (64, 44)
    assert meta("tpami-gait3d").input_size == (128, 88)


@pytest.mark.parametrize("variant", TPAMI)
def test_tpami_stage_layout(variant):
    m = meta(variant)
    assert m.blocks == TPAMI_BLOCKS[variant]
    # registration (and so state_dict) order follows the data flow
    assert [n for n, _ in m.named_children()] == list(m.blocks) + ["HPP", "Head0", "Bn", "Head1"]
    params_in_order = list(dict.fromkeys(k.split(".")[0] for k in m.state_dict()))
    assert params_in_order == [b for b in m.blocks if not b.startswith("MaxPool")] + ["HPP", "Head0", "Bn", "Head1"]
    layers = stage_layers(m)
    assert tuple(tuple(g.global_conv3d.conv3d.out_channels for g in s) for s in layers) == TPAMI_WIDTHS[variant]
    assert [g.fm_sign for g in glconvs(m)] == [False] * (len(glconvs(m)) - 1) + [True]  # only the last is B
    assert layers[0][0].global_conv3d.conv3d.in_channels == 32  # the one stem conv 1 -> 32
    assert [tuple(c.conv3d.weight.shape) for c in m.conv3d if isinstance(c, BasicConv3d)] == [(32, 1, 3, 3, 3)]
    lta = m.LTA[0].conv3d
    c_lta = 64 if variant == "tpami" else 128  # after stage 1 (CASIA-B) / stage 2 (large)
    assert lta.weight.shape == (c_lta, c_lta, 3, 1, 1) and lta.stride == (3, 1, 1)
    for b in m.blocks:
        if b.startswith("MaxPool"):
            assert getattr(m, b).kernel_size == (1, 2, 2) and getattr(m, b).stride == (1, 2, 2)
    assert all(g.local == "mask" and g.mask == "strip_vertical" and g.drop_ratio == 0.3 and g.mask_eval == "unmasked"
               for g in glconvs(m))
    assert all(g.parts == (8 if variant == "tpami" else 2) for g in glconvs(m))


def test_tpami_param_counts_and_heads():
    for variant, count in TPAMI_PARAMS.items():
        m = meta(variant)
        assert n_params(m) == count, variant
        c, p, _ = TPAMI_OUT[variant]
        assert m.Head0.fc_bin.shape == (p, m.stages[-1][-1], c)
        assert m.Head1.fc_bin.shape == (p, c, VARIANTS[variant]["num_classes"])
    # OU-MVLP and GREW differ only in the classifier
    assert n_params(meta("tpami-oumvlp")) - 32 * 256 * 5153 == n_params(meta("tpami-grew")) - 32 * 256 * 20000
    # dropping the stem conv (stem=()): the first GLConv reads the silhouettes
    bare = meta("tpami", stem=())
    assert not hasattr(bare, "conv3d") and bare.blocks[0] == "GLConvA0"
    assert n_params(bare) == TPAMI_PARAMS["tpami"] - 32 * 27 - 2 * 64 * 31 * 27  # stem conv, 32 -> 1 inputs


@pytest.mark.parametrize("variant", TPAMI)
def test_tpami_output_shapes(variant):
    c, p, classes = TPAMI_OUT[variant]
    lengths = torch.tensor([30, 7])  # read on the host, so made outside the meta context
    m = meta(variant)
    seen = []
    m.HPP.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    with torch.device("meta"):
        x = torch.rand(2, 30, *VARIANTS[variant]["input_size"])
        out = m.train()(x)
        out_eval = m.eval()(x, lengths)
    for o in (out, out_eval):
        assert o["embeddings"].shape == (2, c, p) and o["logits"].shape == (2, classes, p)
    assert seen[0][2] == p and m.HPP.bins == (p,)  # one-row GeM bins over the GLConv-B map


@pytest.mark.parametrize("variant,kw", [
    ("tpami", {}),
    ("tpami", {"pools": ("max", "lta", "none")}),  # section 3.2's reading: LTA after stage 2
    ("tpami-oumvlp", {}),  # the large layout (GREW's differs only in the classifier)
    ("tpami-gait3d", {}),  # the large layout at 128 x 88 input, 64 bins
])
def test_tpami_contract_clauses(variant, kw):
    """The method contract on the TPAMI layouts at 1/8 of the widths and a quarter of the input (the
    networks themselves have 4M-225M parameters)."""
    m, size = tiny(variant, **kw)
    where = f"reduced GaitGL {variant} {kw}"
    check_outputs(m, input_size=size, classes=6, where=where)
    check_padding(m, input_size=size, where=where)
    check_full_lengths(m, input_size=size, where=where)
    check_gradients(m, input_size=size, where=where)
    check_eval_determinism(m, input_size=size, where=where, rebuilt=lambda: tiny(variant, **kw)[0])


def test_tpami_training_masks_are_random():
    m, (h, w) = tiny("tpami")
    x = sils(2, 6, h, w)
    m.train()
    assert not torch.allclose(m(x)["embeddings"], m(x)["embeddings"])  # fresh random masks in training


def test_section_3_2_option():
    import gaitbench_gaitgl
    import gaitbench_gaitgl.model

    # the line the docstrings and the recipe give is the one tested here
    for text in (gaitbench_gaitgl.__doc__, gaitbench_gaitgl.model.__doc__, METHOD.recipe_path("tpami").read_text()):
        assert f"--set '{SECTION_3_2}'" in text
    r = load_recipe(METHOD.recipe_path("tpami"), [SECTION_3_2])
    with torch.device("meta"):
        m = METHOD.create(r.variant, **r.model)
    assert m.pools == ("max", "lta", "none")
    assert m.blocks == ("conv3d", "GLConvA0", "MaxPool0", "GLConvA1", "LTA", "GLConvB2")
    assert m.LTA[0].conv3d.weight.shape == (128, 128, 3, 1, 1)
    assert n_params(m) == TPAMI_PARAMS["tpami"] + 3 * (128 * 128 - 64 * 64)  # only the LTA width changes
    small, (h, w) = tiny("tpami", pools=["max", "lta", "none"])  # lists, as TOML gives them
    out = small.eval()(sils(2, 7, h, w))
    assert out["embeddings"].shape == (2, 16, 16) and torch.isfinite(out["embeddings"]).all()


def test_layout_validation():
    ok = dict(stem=(4,), stages=((8,), (8,)), pools=("lta", "none"), stem_lta=False, bins=(8,))
    GaitGL(**ok)
    with pytest.raises(ValueError, match="exactly one LTA"):
        GaitGL(**{**ok, "pools": ("max", "none")})  # none at all
    with pytest.raises(ValueError, match="exactly one LTA"):
        GaitGL(**{**ok, "stem_lta": True})  # two
    with pytest.raises(ValueError, match="non-empty"):
        GaitGL(**{**ok, "stages": ((8,), ())})
    with pytest.raises(ValueError, match="one entry per stage"):
        GaitGL(**{**ok, "pools": ("lta",)})
    with pytest.raises(ValueError, match="pools entries"):
        GaitGL(**{**ok, "pools": ("avg", "none")})
    with pytest.raises(ValueError, match="GLConv-B"):
        GaitGL(**{**ok, "pools": ("none", "lta")})  # nothing may follow the B layer
    with pytest.raises(ValueError, match="stem"):
        GaitGL(stem=(), stages=((8,),), pools=("none",), stem_lta=True)
    with pytest.raises(ValueError, match="positive"):
        GaitGL(**{**ok, "stages": ((8,), (0,))})
    # lists (TOML) build the same network as tuples
    torch.manual_seed(0)
    a = GaitGL(**ok)
    torch.manual_seed(0)
    b = GaitGL(stem=[4], stages=[[8], [8]], pools=["lta", "none"], stem_lta=False, bins=[8])
    assert a.blocks == b.blocks
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_gem_hpp_reports_wrong_input_size():
    gem = GeMHPP(bins=(32,), input_size=(64, 44))
    with pytest.raises(ValueError, match=r"height 20 .*bin count 32.*input size \(64 x 44\)"):
        gem(torch.rand(1, 2, 20, 8))  # 160 values would reshape into 32 bins silently
    # a TPAMI network fed the wrong size says so
    m, _ = tiny("tpami-oumvlp")
    with pytest.raises(ValueError, match="GeMHPP: feature height"):
        m.eval()(sils(1, 3, 24, 11))


def test_golden_embeddings_tpami():
    """Fixed seed + input -> fixed outputs for the CASIA-B network and the reduced large layout."""
    torch.manual_seed(0)
    full = GaitGL(**VARIANTS["tpami"]).eval()
    large, _ = tiny("tpami-oumvlp", bins=(32,))  # at 64 x 44: the large layout's own bins
    large.eval()
    x = sils(2, 7, seed=5)
    lengths = torch.tensor([7, 4])
    got = {}
    with torch.no_grad():
        for name, m in (("tpami", full), ("large", large)):
            e = m(x, lengths)["embeddings"]
            c, p = e.shape[1:]
            got[name] = torch.stack([e[0, 0, 0], e[0, 5, 3], e[0, c - 1, p - 1], e[1, 0, 0], e[1, c // 2, p // 2],
                                     e[1, c - 1, p - 1], e.abs().sum()])
    for name in got:
        torch.testing.assert_close(got[name], torch.tensor(GOLDEN_TPAMI[name]), atol=1e-6, rtol=1e-4)


# seven values each: six entries and the sum of |embeddings|
GOLDEN_TPAMI = {
    "tpami": [-0.004369041, 0.009025414, -0.00143219, -0.002689052, -0.001958672, 0.0004166948, 50.49076],
    "large": [0.006916477, -0.01595675, -0.009870444, 0.0008491451, -0.001116197, -0.000295256, 14.25186],
}


# name: (P, K, iterations, milestones, label smoothing, eval metric)
TPAMI_RECIPES = {
    "tpami-oumvlp": (32, 8, 200_000, [100_000, 133_000, 167_000], 0.1, ""),
    "tpami-grew": (32, 4, 200_000, [100_000, 133_000, 167_000], 0.1, ""),
    "tpami-gait3d": (32, 4, 150_000, [75_000, 100_000, 125_000], 0.0, "cos"),
}


def test_tpami_recipes():
    for name, (P, K, iterations, milestones, ls, metric) in TPAMI_RECIPES.items():
        r = load_recipe(METHOD.recipe_path(name))
        assert r.variant == name and r.model == {} and "\n" not in r.description, name
        o = r.optimizer
        assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 5e-4), name
        assert not getattr(o, "nesterov", False), name  # classical momentum
        s = r.sampler
        assert (s.P, s.K, s.frames, s.order, s.skip) == (P, K, 30, "ordered", 0), name
        assert r.train.iterations == iterations and r.schedule.milestones == milestones, name
        # lr x0.1 at 1/2, 2/3, 5/6 of training (rounded to thousands)
        assert milestones == [round(iterations * f / 1000) * 1000 for f in (1 / 2, 2 / 3, 5 / 6)]
        assert r.schedule.gamma == 0.1 and r.schedule.warmup == 0
        assert (r.loss.triplet.weight, r.loss.triplet.margin) == (1.0, 0.2), name
        ce = r.loss.cross_entropy
        assert (ce.weight, ce.scale, ce.label_smoothing) == (1.0, 1.0, ls), name
        assert r.eval.metric == metric, name
        with torch.device("meta"):
            m = METHOD.create(r.variant, **r.model)
        assert m.blocks == LARGE_BLOCKS and n_params(m) == TPAMI_PARAMS[name]
    t = load_recipe(METHOD.recipe_path("tpami"))
    assert (t.optimizer.name, t.optimizer.lr, t.optimizer.weight_decay) == ("adam", 1e-4, 5e-4)
    assert (t.sampler.P, t.sampler.K, t.sampler.frames, t.sampler.order, t.sampler.skip) == (8, 16, 30, "ordered", 0)
    assert t.train.iterations == 80_000 and t.schedule.milestones == [70_000] and t.eval.metric == ""
    ce = t.loss.cross_entropy
    assert (t.loss.triplet.margin, ce.weight, ce.scale, ce.label_smoothing) == (0.2, 1.0, 1.0, 0.0)
    assert "\n" not in t.description
