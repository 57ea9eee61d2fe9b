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
    return get_plugins().stages().get(name)


def apply(name, data, **params):
    resolved = {k: v for k, v in resolve_params(stage(name), params).items() if k != "preset"}
    out = stage(name)(data, **resolved)
    assert out.distance is None  # feature stages invalidate the distance
    return out


def test_builtin_stages_are_registered_with_sides_and_flags():
    stages = get_plugins().stages()
    assert {"rerank", "aqe", "alpha-qe", "dba", "cluster-qe"} <= set(stages)
    from gaitbench.plugins import CORE_PLUGIN

    assert all(stages.plugin_of(n) == CORE_PLUGIN for n in ("rerank", "aqe", "alpha-qe", "dba", "cluster-qe"))
    sides = {n: (stages.get(n).sides, stages.get(n).transductive) for n in ("aqe", "alpha-qe", "dba", "cluster-qe")}
    assert sides == {"aqe": ("probe", False), "alpha-qe": ("probe", False), "dba": ("gallery", False),
                     "cluster-qe": ("both", True)}
    assert stages.get("rerank").transductive


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


def close(x, values):
    return torch.allclose(x[:, 0, 0], torch.tensor(values), atol=1e-6, rtol=0)


def test_cluster_qe_defaults():
    assert dict(stage("cluster-qe").defaults) == {"method": "mutual-knn", "k": 1, "threshold": math.inf,
                                                   "exclude_self": True, "weight": 0.1}


def test_cluster_qe_mutual_nearest_neighbours():
    probe = t([[0.0], [10.25]])
    gallery = t([[0.5], [1.0], [10.0], [50.0]])
    data = StageInput(probe, gallery, "euc")
    # mutual 1-NN pairs: probe 0 <-> gallery 0.5 (0.5 also ties with 1.0; lower index wins),
    # probe 10.25 <-> gallery 10; 1.0 and 50 are singletons and keep their features.
    # weight 1 (the report's wording): each member of a pair takes its partner's feature.
    swap = apply("cluster-qe", data, weight=1.0)
    assert torch.equal(swap.probe[:, 0, 0], torch.tensor([0.5, 10.0]))
    assert torch.equal(swap.gallery[:, 0, 0], torch.tensor([0.0, 1.0, 10.25, 50.0]))
    # the default weight 0.1: a tenth of the way to the partner, 0 -> 0.05, 0.5 -> 0.45,
    # 10.25 -> 10.225, 10 -> 10.025.
    out = apply("cluster-qe", data)
    assert close(out.probe, [0.05, 10.225]) and close(out.gallery, [0.45, 1.0, 10.025, 50.0])
    assert torch.equal(out.gallery[[1, 3]], gallery[[1, 3]])  # singletons exactly unchanged


def test_cluster_qe_threshold_single_linkage():
    probe = t([[0.0], [10.25]])
    gallery = t([[0.5], [1.0], [10.0], [50.0]])
    data = StageInput(probe, gallery, "euc")
    out = apply("cluster-qe", data, method="threshold", threshold=0.6, weight=1.0)
    # clusters {0, 0.5, 1} (chained), {10.25, 10}, {50}: the mean of the other members
    assert torch.equal(out.probe[:, 0, 0], torch.tensor([0.75, 10.0]))
    assert torch.equal(out.gallery[:, 0, 0], torch.tensor([0.5, 0.25, 10.25, 50.0]))
    keep = apply("cluster-qe", data, method="threshold", threshold=0.6, exclude_self=False, weight=1.0)
    assert torch.equal(keep.probe[:, 0, 0], torch.tensor([0.5, 10.125]))
    assert torch.equal(keep.gallery[:, 0, 0], torch.tensor([0.5, 0.5, 10.125, 50.0]))
    # weight 0.1 (default): 0 -> 0 + 0.1 * 0.75, 1 -> 1 - 0.1 * 0.75, 0.5 stays (its others' mean is
    # 0.5); 10.25 -> 10.225, 10 -> 10.025
    soft = apply("cluster-qe", data, method="threshold", threshold=0.6)
    assert close(soft.probe, [0.075, 10.225]) and close(soft.gallery, [0.5, 0.925, 10.025, 50.0])


def test_cluster_qe_mutual_knn_with_a_distance_cut():
    probe = t([[0.0], [10.25]])
    gallery = t([[0.5], [1.0], [10.0], [50.0]])
    out = apply("cluster-qe", StageInput(probe, gallery, "euc"), threshold=0.3)
    assert close(out.probe, [0.0, 10.225])  # the 0.5 link is cut; 10.25 and 10 move 0.025 closer
    assert close(out.gallery, [0.5, 1.0, 10.025, 50.0])


def test_cluster_qe_default_does_not_chain_two_identities():
    # Two identities on a line, each of two tight pairs 1 apart, the identities 1.5 apart (3 | 4.5):
    #   A: 0, 0.9, 2, 3        B: 4.5, 5.5, 6.6, 7.5
    # 3 and 4.5 are each among the other's 3 nearest (3: 2, 4.5, 0.9; 4.5: 5.5, 3, 6.6), so the
    # connected components of mutual 3-NN (the old defaults) join A and B into one cluster of 8
    # and every member takes the mean of the 7 others: 0 -> 30 / 7, past B's first member.
    a, b = [0.0, 0.9, 2.0, 3.0], [4.5, 5.5, 6.6, 7.5]
    probe, gallery = t([[v] for v in a[1:] + b[1:]]), t([[a[0]], [b[0]]])
    data = StageInput(probe, gallery, "euc")
    x = torch.cat([probe, gallery])
    from gaitbench.evaluation.qe import cluster_labels

    assert cluster_labels(data, x, k=3).unique().tolist() == [0]
    old = apply("cluster-qe", data, k=3, weight=1.0)
    assert abs(float(old.gallery[0, 0, 0]) - 30 / 7) < 1e-5
    # The default (mutual 1-NN) pairs 0-0.9, 2-3, 4.5-5.5, 6.6-7.5: never across the A | B gap.
    labels = cluster_labels(data, x).tolist()  # rows: 0.9, 2, 3, 5.5, 6.6, 7.5, then 0, 4.5
    assert labels[6] == labels[0] and labels[1] == labels[2] and labels[7] == labels[3] and labels[4] == labels[5]
    assert len(set(labels)) == 4
    out = apply("cluster-qe", data)  # each moves a tenth of the way to its partner
    assert close(out.probe, [0.81, 2.1, 2.9, 5.4, 6.69, 7.41]) and close(out.gallery, [0.09, 4.6])


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


@pytest.mark.parametrize("params,message", [
    ({"wieght": 0.5}, r"stage 'cluster-qe': unknown parameter 'wieght'; did you mean 'weight'"),
    ({"weight": "half"}, r"stage 'cluster-qe': parameter 'weight' must be float, got 'half'"),
    ({"k": 1.5}, r"stage 'cluster-qe': parameter 'k' must be int"),
    ({"exclude_self": 1}, r"stage 'cluster-qe': parameter 'exclude_self' must be bool"),
    ({"weight": 0.0}, r"stage 'cluster-qe': weight must be a number in \(0, 1\]"),
    ({"weight": 1.5}, r"stage 'cluster-qe': weight must be a number in \(0, 1\]"),
    ({"k": 0}, r"stage 'cluster-qe': k must be an integer >= 1"),
    ({"threshold": -1.0}, r"stage 'cluster-qe': threshold must be a number >= 0"),
    ({"threshold": math.nan}, r"stage 'cluster-qe': threshold must be a number >= 0"),
    ({"method": "threshold"}, r"stage 'cluster-qe': method 'threshold' needs a finite threshold"),
])
def test_cluster_qe_parameter_errors(params, message):
    data = StageInput(t([[0.0]]), t([[1.0], [2.0]]), "euc")
    with pytest.raises(ConfigError, match=message):
        run_stages(data, [(stage("cluster-qe"), params)])


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
