"""Fusion of several embeddings files: label alignment (order, duplicates), mismatch errors,
concat and mean-distance, and stages on fused inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitbench.errors import DataError
from gaitbench.evaluation.distance import part_distance
from gaitbench.evaluation.embeddings import read_embeddings as load_embeddings
from gaitbench.evaluation.fusion import MeanDistanceInput, fuse
from gaitbench.evaluation.rerank import rerank_matrix
from gaitbench.evaluation.stages import StageInput, run_stages
from gaitbench.plugins import get_plugins

LABELS = [("001", "nm-01", "000"), ("001", "nm-01", "018"), ("002", "bg-01", "000"), ("001", "nm-01", "000"),
          ("003", "cl-01", "090"), ("002", "nm-02", "180")]  # rows 0 and 3 share a label triple


def make(emb, labels):
    s, t, v = (np.array(col) for col in zip(*labels))
    return {"embeddings": np.asarray(emb, dtype=np.float32), "subjects": s, "types": t, "views": v}


@pytest.fixture
def two_files():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4, 3)).astype(np.float32)
    b_aligned = rng.standard_normal((6, 2, 3)).astype(np.float32)
    perm = [5, 0, 3, 4, 2, 1]  # b's row i is a's row perm[i] (the shared label keeps its order)
    b = make(b_aligned[perm], [LABELS[i] for i in perm])
    return make(a, LABELS), b, b_aligned


def test_concat_aligns_by_labels_and_occurrence(two_files):
    a, b, b_aligned = two_files
    fused = fuse([a, b], mode="concat")
    assert fused.embeddings.shape == (6, 6, 3)
    assert np.array_equal(fused.embeddings, np.concatenate([a["embeddings"], b_aligned], axis=1))
    assert list(fused.subjects) == [s for s, _, _ in LABELS] and list(fused.views) == [v for _, _, v in LABELS]
    # Rows sharing a label are matched by order of occurrence: here the file lists the content
    # of a's row 3 first, so it is fused with a's first occurrence (row 0).
    order = [3, 5, 0, 4, 2, 1]
    swapped = fuse([a, make(b_aligned[order], [LABELS[i] for i in order])])
    assert np.array_equal(swapped.embeddings[0, 4:], b_aligned[3])
    assert np.array_equal(swapped.embeddings[3, 4:], b_aligned[0])
    assert np.array_equal(swapped.embeddings[1, 4:], b_aligned[1])


def test_concat_flattens_when_parts_differ_and_normalizes(two_files):
    a, _, _ = two_files
    c = make(np.random.default_rng(1).standard_normal((6, 5, 2)), LABELS)
    fused = fuse([a, c], mode="concat", normalize=True)
    assert fused.embeddings.shape == (6, 12 + 10, 1)
    first, second = fused.embeddings[:, :12, 0], fused.embeddings[:, 12:, 0]
    assert np.allclose(np.linalg.norm(first, axis=1), 1) and np.allclose(np.linalg.norm(second, axis=1), 1)
    flat = a["embeddings"].reshape(6, -1)
    assert np.allclose(first, flat / np.linalg.norm(flat, axis=1, keepdims=True))
    assert fused.describe()["layout"] == [[4, 3], [5, 2]]


def test_mean_distance_averages_the_files_distances(two_files):
    a, b, b_aligned = two_files
    fused = fuse([a, b], mode="mean-distance")
    assert fused.embeddings.shape == (6, 12 + 6, 1)
    x = torch.from_numpy(fused.embeddings)
    probe, gallery = x[:2], x[2:]
    data = fused.stage_input(probe, gallery, "euc")
    assert isinstance(data, MeanDistanceInput)
    a_emb = a["embeddings"]
    expected = (part_distance(a_emb[:2], a_emb[2:]) + part_distance(b_aligned[:2], b_aligned[2:])) / 2
    assert np.allclose(data.current_distance().numpy(), expected, atol=1e-6)
    assert np.allclose(fused.distances(fused.embeddings[:2], fused.embeddings[2:], "euc").numpy(), expected, atol=1e-6)
    blocks = data.distance_blocks(x)
    assert np.allclose(blocks(slice(0, 2), slice(2, 6)).numpy(), expected, atol=1e-6)


def test_rerank_and_qe_run_on_a_mean_distance_input():
    rng = np.random.default_rng(2)
    labels = [(f"{i:03d}", "nm-01", "000") for i in range(60)]
    a = make(rng.standard_normal((60, 6, 2)), labels)
    b = make(rng.standard_normal((60, 3, 4)), labels)
    fused = fuse([a, b], mode="mean-distance")
    x = torch.from_numpy(fused.embeddings)
    stages = get_plugins().stages()
    data = fused.stage_input(x[:15], x[15:], "euc")
    dist, _ = run_stages(data, [(stages.get("rerank"), {"preset": "opengait-hid"})])
    full = (part_distance(a["embeddings"], a["embeddings"]) + part_distance(b["embeddings"], b["embeddings"])) / 2
    full = np.minimum(full, full.T)
    expected = rerank_matrix(full, 15, k1=6, k2=6, lambda_value=0.3, squared=False)
    assert torch.allclose(dist, expected, atol=1e-5, rtol=0)
    qe, _ = run_stages(fused.stage_input(x[:15], x[15:], "euc"), [(stages.get("aqe"), {"n": 2})])
    assert qe.shape == (15, 45)


def test_concat_equals_a_plain_stage_input(two_files):
    a, b, _ = two_files
    fused = fuse([a, b], mode="concat")
    x = torch.from_numpy(fused.embeddings)
    data = fused.stage_input(x[:2], x[2:], "euc")
    assert type(data) is StageInput
    assert np.array_equal(fused.as_dict()["embeddings"], fused.embeddings)


def test_mismatched_files_list_the_first_differences(two_files):
    a, b, _ = two_files
    other = dict(b)
    other["views"] = b["views"].copy()
    other["views"][0] = "036"  # b's row 0 is a's row 5: 002/nm-02/180 becomes 002/nm-02/036
    with pytest.raises(DataError) as err:
        fuse([a, other], names=["gaitgl.npz", "gaitmask.npz"])
    msg = str(err.value)
    assert "gaitmask.npz does not hold the same sequences as gaitgl.npz (6 vs 6 sequences)" in msg
    assert "1 only in gaitgl.npz: 002/nm-02/180" in msg and "1 only in gaitmask.npz: 002/nm-02/036" in msg
    short = {k: v[:4] for k, v in b.items()}
    with pytest.raises(DataError, match=r"\(6 vs 4 sequences\); 2 only in embeddings #1"):
        fuse([a, short])
    dup = make(np.zeros((6, 2, 3)), [LABELS[0]] * 6)
    with pytest.raises(DataError, match=r"001/nm-01/000 \(#3\)"):  # the third occurrence has no partner
        fuse([a, dup])


def test_fuse_reads_files_written_like_embed_outputs(tmp_path, two_files):
    a, b, _ = two_files
    for name, d in (("a", a), ("b", b)):
        np.savez(tmp_path / f"{name}.npz", **d)
    fused = fuse([load_embeddings(tmp_path / "a.npz"), load_embeddings(tmp_path / "b.npz")], mode="concat")
    assert fused.embeddings.shape == (6, 6, 3)
    with pytest.raises(ValueError, match="unknown fusion mode"):
        fuse([a, b], mode="max")
