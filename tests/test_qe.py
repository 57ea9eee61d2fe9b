"""Query-expansion stages against small hand-computed cases, their declared sides and flags,
parameter errors, and composition with re-ranking through ``run_stages``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gaitbench.errors import ConfigError
from gaitbench.evaluation.qe import connected_components
from gaitbench.evaluation.stages import StageInput, resolve_params, run_stages
from gaitbench.plugins import get_plugins


def t(rows):
    """``[n, d]`` nested lists -> ``[n, d, 1]`` float32 tensor (one part)."""
    return torch.tensor(rows, dtype=torch.float32)[:, :, None]


def stage(name):
    return get_plugins().stages()[name].obj


def apply(name, data, **params):
    resolved = {k: v for k, v in resolve_params(stage(name), params).items() if k != "preset"}
    out = stage(name).apply(data, **resolved)
    assert out.distance is None  # feature stages invalidate the distance
    return out


def test_builtin_stages_are_registered_with_sides_and_flags():
    stages = get_plugins().stages()
    assert {"rerank", "aqe", "alpha-qe", "dba", "cluster-qe"} <= set(stages)
    from gaitbench.plugins import CORE_PLUGIN

    assert all(stages[n].plugin == CORE_PLUGIN for n in ("rerank", "aqe", "alpha-qe", "dba", "cluster-qe"))
    sides = {n: (stages[n].obj.sides, stages[n].obj.transductive) for n in ("aqe", "alpha-qe", "dba", "cluster-qe")}
    assert sides == {"aqe": ("probe", False), "alpha-qe": ("probe", False), "dba": ("gallery", False),
                     "cluster-qe": ("both", True)}
    assert stages["rerank"].obj.transductive


def test_aqe_averages_the_top_n_gallery_items():
    data = StageInput(t([[0.0], [9.0]]), t([[1.0], [2.0], [10.0], [7.0]]), "euc")
    out = apply("aqe", data, n=2)
    # probe 0: nearest 1 and 2 -> (0 + 1 + 2) / 3; probe 9: nearest 10 and 7 -> (9 + 10 + 7) / 3
    assert torch.equal(out.probe[:, 0, 0], torch.tensor([1.0, 26.0 / 3]))
    assert torch.equal(out.gallery, data.gallery)
    expected = (out.probe[:, None, 0, 0] - data.gallery[None, :, 0, 0]).abs()
    assert torch.allclose(out.current_distance(), expected)


def test_alpha_qe_weights_by_cosine_to_the_power_alpha():
    probe = t([[1.0, 0.0]])
    gallery = t([[1.0, 1.0], [-0.5, 1.5], [-5.0, 0.0]])  # cosines 1/sqrt(2), < 0, -1
    out = apply("alpha-qe", StageInput(probe, gallery, "euc"), n=2)
    w = (1 / math.sqrt(2)) ** 3  # the negative-cosine neighbour gets weight 0
    expected = np.array([1.0 + w, w]) / (1.0 + w)
    assert np.allclose(out.probe[0, :, 0].numpy(), expected, atol=1e-6)
    out1 = apply("alpha-qe", StageInput(probe, gallery, "euc"), n=2, alpha=0.0)
    assert np.allclose(out1.probe[0, :, 0].numpy(), (np.array([1.0, 0.0]) + [1.0, 1.0] + [-0.5, 1.5]) / 3)


def test_alpha_qe_uses_the_mean_over_parts_of_part_cosines():
    probe = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # [1, C=2, P=2]: parts (1,0) and (0,1)
    gallery = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])  # parts (1,0) and (1,0): cosines 1 and 0
    out = apply("alpha-qe", StageInput(probe, gallery, "euc"), n=1, alpha=1.0)
    assert torch.allclose(out.probe, (probe + 0.5 * gallery) / 1.5)


def test_dba_averages_each_gallery_item_with_its_nearest_others():
    probe = t([[3.0]])
    gallery = t([[0.0], [1.0], [4.0], [10.0]])
    out = apply("dba", StageInput(probe, gallery, "euc"), n=1)
    assert torch.equal(out.gallery[:, 0, 0], torch.tensor([0.5, 0.5, 2.5, 7.0]))
    assert torch.equal(out.probe, probe)
    out2 = apply("dba", StageInput(probe, gallery, "euc"), n=2)
    assert torch.allclose(out2.gallery[:, 0, 0], torch.tensor([5 / 3, 5 / 3, 5 / 3, 5.0]))  # 10: with 4 and 1


def test_dba_keeps_self_out_even_with_duplicates():
    gallery = t([[2.0], [2.0], [2.0], [8.0]])
    out = apply("dba", StageInput(t([[0.0]]), gallery, "euc"), n=1)
    assert torch.equal(out.gallery[:, 0, 0], torch.tensor([2.0, 2.0, 2.0, 5.0]))


def test_cluster_qe_mutual_nearest_neighbours():
    probe = t([[0.0], [10.25]])
    gallery = t([[0.5], [1.0], [10.0], [50.0]])
    out = apply("cluster-qe", StageInput(probe, gallery, "euc"), k=1)
    # mutual 1-NN pairs: probe 0 <-> gallery 0.5 (0.5 also ties with 1.0; lower index wins),
    # probe 10.25 <-> gallery 10; 1.0 and 50 are singletons and keep their features.
    assert torch.equal(out.probe[:, 0, 0], torch.tensor([0.5, 10.0]))
    assert torch.equal(out.gallery[:, 0, 0], torch.tensor([0.0, 1.0, 10.25, 50.0]))


def test_cluster_qe_threshold_single_linkage():
    probe = t([[0.0], [10.25]])
    gallery = t([[0.5], [1.0], [10.0], [50.0]])
    data = StageInput(probe, gallery, "euc")
    out = apply("cluster-qe", data, method="threshold", threshold=0.6)
    # clusters {0, 0.5, 1} (chained), {10.25, 10}, {50}: the mean of the other members
    assert torch.equal(out.probe[:, 0, 0], torch.tensor([0.75, 10.0]))
    assert torch.equal(out.gallery[:, 0, 0], torch.tensor([0.5, 0.25, 10.25, 50.0]))
    keep = apply("cluster-qe", data, method="threshold", threshold=0.6, exclude_self=False)
    assert torch.equal(keep.probe[:, 0, 0], torch.tensor([0.5, 10.125]))
    assert torch.equal(keep.gallery[:, 0, 0], torch.tensor([0.5, 0.5, 10.125, 50.0]))


def test_cluster_qe_mutual_knn_with_a_distance_cut():
    probe = t([[0.0], [10.25]])
    gallery = t([[0.5], [1.0], [10.0], [50.0]])
    out = apply("cluster-qe", StageInput(probe, gallery, "euc"), k=1, threshold=0.3)
    assert torch.equal(out.probe[:, 0, 0], torch.tensor([0.0, 10.0]))  # the 0.5 link is cut
    assert torch.equal(out.gallery[:, 0, 0], torch.tensor([0.5, 1.0, 10.25, 50.0]))


def test_connected_components():
    src = torch.tensor([5, 1, 3, 7])
    dst = torch.tensor([6, 2, 2, 6])
    labels = connected_components(8, src, dst)
    assert labels.tolist() == [0, 1, 1, 1, 2, 3, 3, 3]
    assert connected_components(3, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)).tolist() \
        == [0, 1, 2]
    chain = torch.arange(999)
    assert connected_components(1000, chain.flip(0), chain.flip(0) + 1).unique().tolist() == [0]


def test_qe_parameter_errors():
    with pytest.raises(ConfigError, match=r"stage 'aqe': unknown parameter 'k'.* Available: n"):
        resolve_params(stage("aqe"), {"k": 3})
    with pytest.raises(ConfigError, match=r"stage 'alpha-qe': unknown parameter 'alhpa'; did you mean 'alpha'"):
        resolve_params(stage("alpha-qe"), {"alhpa": 3})
    with pytest.raises(ConfigError, match=r"stage 'aqe': unknown parameter 'preset'"):
        resolve_params(stage("aqe"), {"preset": "x"})
    data = StageInput(t([[0.0]]), t([[1.0], [2.0]]), "euc")
    with pytest.raises(ConfigError, match="stage 'aqe': n must be an integer >= 1"):
        run_stages(data, [(stage("aqe"), {"n": 0})])
    with pytest.raises(ConfigError, match="method 'threshold' needs a finite threshold"):
        run_stages(data, [(stage("cluster-qe"), {"method": "threshold"})])
    with pytest.raises(ConfigError, match="method must be 'mutual-knn' or 'threshold'"):
        run_stages(data, [(stage("cluster-qe"), {"method": "dbscan"})])
    with pytest.raises(ConfigError, match="alpha must be a finite number >= 0"):
        run_stages(data, [(stage("dba"), {"alpha": -1.0})])


def test_stages_compose_and_are_recorded():
    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.standard_normal((12, 8, 2)).astype(np.float32))
    gallery = torch.from_numpy(rng.standard_normal((40, 8, 2)).astype(np.float32))
    data = StageInput(probe, gallery, "euc")
    dist, records = run_stages(data, [(stage("dba"), {}), (stage("aqe"), {"n": 3}), (stage("rerank"), {"k1": 10})])
    assert dist.shape == (12, 40) and bool(torch.isfinite(dist).all())
    assert [r["name"] for r in records] == ["dba", "aqe", "rerank"]
    assert records[1]["params"] == {"n": 3} and records[1]["transductive"] is False
    assert records[2]["params"]["k1"] == 10 and records[2]["params"]["preset"] == "zhong2017"
    only_qe, _ = run_stages(StageInput(probe, gallery, "euc"), [(stage("cluster-qe"), {})])
    assert only_qe.shape == (12, 40)
    untouched, none = run_stages(StageInput(probe, gallery, "euc"), [])
    assert none == [] and torch.allclose(untouched, StageInput(probe, gallery, "euc").current_distance())
