"""Tests for the evaluation core: part distances and the single-view-gallery protocol."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from gaitbench.evaluation import reference
from gaitbench.evaluation.distance import part_distance
from gaitbench.evaluation.reference import reference_part_distance, reference_view_matrix
from gaitbench.evaluation.view_matrix import ViewMatrixResult, de_diag, evaluate_view_matrix


def CUDA(func):
    """Mark a test as needing CUDA (the project's ``gpu`` marker) and skip it without one."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(func))


# --------------------------------------------------------------------------- helpers


def manual_part_mean_euc(x, y):
    """Per-part Euclidean distance by explicit differences, mean over parts (float64)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    diff = x[:, None, :, :] - y[None, :, :, :]  # [nx, ny, c, p]
    return np.sqrt((diff**2).sum(axis=2)).mean(axis=2)


def manual_flat_euc(x, y):
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))


def manual_cos(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return 1.0 - np.einsum("icp,jcp->ij", xn, yn) / x.shape[2]


CASIA_SETS = {"NM": ["nm-05", "nm-06"], "BG": ["bg-01", "bg-02"], "CL": ["cl-01", "cl-02"]}
CASIA_GALLERY = ["nm-01", "nm-02", "nm-03", "nm-04"]
CASIA_TYPES = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]


def make_dataset(seed, n_subjects=6, views=("000", "045", "090", "135"), c=8, p=4, dtype=np.float32,
                 drop_gallery=3, duplicates=6, extra_view=True):
    """Random CASIA-B-like data with subject structure, missing gallery, ties and an ignored view."""
    rng = np.random.default_rng(seed)
    subjects, types, vws = [], [], []
    for s in range(n_subjects):
        for t in CASIA_TYPES:
            for v in views:
                subjects.append(f"s{s:02d}")
                types.append(t)
                vws.append(v)
    if extra_view:  # a view outside view_list: must be ignored
        for s in range(2):
            for t in CASIA_TYPES[:5]:
                subjects.append(f"s{s:02d}")
                types.append(t)
                vws.append("999")
    n = len(subjects)
    subj_center = rng.standard_normal((n_subjects, c, p))
    code = np.array([int(s[1:]) for s in subjects])
    emb = subj_center[code] * 0.8 + rng.standard_normal((n, c, p))
    emb = emb.astype(np.float32)
    types = np.array(types, dtype=object)
    vws = np.array(vws, dtype=object)
    subjects = np.array(subjects, dtype=object)
    gal = np.flatnonzero(np.isin(types, CASIA_GALLERY) & (vws != "999"))
    # Remove every gallery sequence of some (subject, view) pairs: those probes are guaranteed misses.
    keep = np.ones(n, dtype=bool)
    for _ in range(drop_gallery):
        s = rng.integers(n_subjects)
        v = views[rng.integers(len(views))]
        keep &= ~((subjects == f"s{s:02d}") & (vws == v) & np.isin(types, CASIA_GALLERY))
    # Ties: copy gallery embeddings onto gallery items of *other* subjects at the same view,
    # and make some probes exact copies of gallery items (distance-0 ties).
    for _ in range(duplicates):
        a, b = rng.choice(gal, 2, replace=False)
        same_view = np.flatnonzero(np.isin(types, CASIA_GALLERY) & (vws == vws[a]))
        b = rng.choice(same_view)
        emb[b] = emb[a]
        probe = rng.choice(np.flatnonzero(np.isin(types, ["nm-05", "bg-01", "cl-02"])))
        emb[probe] = emb[a]
    emb, subjects, types, vws = emb[keep], subjects[keep], types[keep], vws[keep]
    # Shuffle so input order is not grouped.
    perm = rng.permutation(len(emb))
    return (emb[perm].astype(dtype), list(subjects[perm]), list(types[perm]), list(vws[perm]), list(views))


def assert_same_result(fast: ViewMatrixResult, ref: ViewMatrixResult, sets, report_valid):
    for name in sets:
        assert fast.tables[name]["matrix"] == ref.tables[name]["matrix"], name
        assert fast.tables[name]["num_probes"] == ref.tables[name]["num_probes"]
        for v, val in ref.tables[name]["per_probe_view"].items():
            assert fast.tables[name]["per_probe_view"][v] == pytest.approx(val, rel=1e-12, abs=1e-12)
        assert fast.metrics[f"{name}/rank1"] == pytest.approx(ref.metrics[f"{name}/rank1"], rel=1e-12)
        if report_valid:
            assert fast.tables[name]["valid"]["matrix"] == ref.tables[name]["valid"]["matrix"]
            for v, val in ref.tables[name]["valid"]["per_probe_view"].items():
                got = fast.tables[name]["valid"]["per_probe_view"][v]
                assert (got is None) == (val is None)
                if val is not None:
                    assert got == pytest.approx(val, rel=1e-12)
            key = f"{name}/rank1_valid"
            assert (key in fast.metrics) == (key in ref.metrics)
            if key in ref.metrics:
                assert fast.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-12)
    assert fast.tables["ignored_views"] == ref.tables["ignored_views"]


# --------------------------------------------------------------------------- de_diag


def test_de_diag_golden():
    acc = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    rows, mean = reference.de_diag(acc)
    assert rows == pytest.approx([2.5, 5.0, 7.5])
    assert mean == pytest.approx(5.0)
    rows2, mean2 = de_diag(np.array(acc))
    np.testing.assert_allclose(rows2, [2.5, 5.0, 7.5])
    assert mean2 == pytest.approx(5.0)


def test_de_diag_without_exclusion():
    rows, mean = de_diag([[1, 2, 3], [4, 5, 6], [7, 8, 9]], exclude_identical_view=False)
    np.testing.assert_allclose(rows, [2.0, 5.0, 8.0])
    assert mean == pytest.approx(5.0)
    rrows, rmean = reference.de_diag([[1, 2, 3], [4, 5, 6], [7, 8, 9]], exclude_identical_view=False)
    assert rrows == pytest.approx([2.0, 5.0, 8.0]) and rmean == pytest.approx(5.0)


# --------------------------------------------------------------------------- golden view matrix


def tiny_oumvlp():
    """3 subjects x 3 views, probe '00', gallery '01'; subject 3 has no gallery at view 030."""
    views = ["000", "015", "030"]
    subjects, types, vws, emb = [], [], [], []
    for s in range(3):
        for t in ["00", "01"]:
            for vi, v in enumerate(views):
                if s == 2 and t == "01" and v == "030":
                    continue
                vec = np.zeros((4, 2), dtype=np.float32)
                vec[s, :] = 10.0  # subject identity dominates
                vec[3, :] = vi * 0.5 + (0.1 if t == "00" else 0.0)  # small view/type offset
                subjects.append(f"{s + 1:05d}")
                types.append(t)
                vws.append(v)
                emb.append(vec)
    return np.stack(emb), subjects, types, vws, views


def test_golden_missing_gallery_counts_as_miss():
    emb, subjects, types, vws, views = tiny_oumvlp()
    kw = dict(probe_sets={"NM": ["00"]}, gallery_types=["01"], view_list=views)
    res = evaluate_view_matrix(emb, subjects, types, vws, **kw)
    t = res.tables["NM"]
    assert t["views"] == views
    assert t["matrix"] == [[100.0, 100.0, 66.67], [100.0, 100.0, 66.67], [100.0, 100.0, 66.67]]
    assert t["num_probes"] == {"000": 3, "015": 3, "030": 3}
    assert t["per_probe_view"]["000"] == pytest.approx(83.335)
    assert t["per_probe_view"]["015"] == pytest.approx(83.335)
    assert t["per_probe_view"]["030"] == pytest.approx(100.0)
    assert res.metrics["NM/rank1"] == pytest.approx((83.335 * 2 + 100.0) / 3)
    assert "NM/rank1_valid" not in res.metrics
    assert res.tables["ignored_views"] == []
    json.dumps(res.tables)  # JSON-serialisable

    ref = reference_view_matrix(emb, subjects, types, vws, **kw)
    assert_same_result(res, ref, ["NM"], report_valid=False)


def test_golden_valid_variant_excludes_probe_without_gallery():
    emb, subjects, types, vws, views = tiny_oumvlp()
    kw = dict(probe_sets={"NM": ["00"]}, gallery_types=["01"], view_list=views, report_valid=True)
    res = evaluate_view_matrix(emb, subjects, types, vws, **kw)
    assert res.metrics["NM/rank1"] == pytest.approx((83.335 * 2 + 100.0) / 3)
    assert res.metrics["NM/rank1_valid"] == pytest.approx(100.0)
    v = res.tables["NM"]["valid"]
    assert v["matrix"] == [[100.0] * 3] * 3
    assert v["num_valid_probes"] == [[3, 3, 2], [3, 3, 2], [3, 3, 2]]
    assert v["skipped_cells"] == []
    json.dumps(res.tables)
    ref = reference_view_matrix(emb, subjects, types, vws, **kw)
    assert_same_result(res, ref, ["NM"], report_valid=True)


def test_golden_no_rounding_and_no_exclusion():
    emb, subjects, types, vws, views = tiny_oumvlp()
    kw = dict(probe_sets={"NM": ["00"]}, gallery_types=["01"], view_list=views)
    res = evaluate_view_matrix(emb, subjects, types, vws, round_cells=None, **kw)
    assert res.tables["NM"]["matrix"][0][2] == pytest.approx(200 / 3)
    assert res.tables["NM"]["matrix"][0][2] != 66.67
    res2 = evaluate_view_matrix(emb, subjects, types, vws, exclude_identical_view=False, **kw)
    row = (100 + 100 + 66.67) / 3
    assert res2.tables["NM"]["per_probe_view"]["000"] == pytest.approx(row)
    assert res2.metrics["NM/rank1"] == pytest.approx(row)


def test_valid_variant_skips_cells_without_valid_probes():
    # Only subject 3 probes at view 030, and subject 3 has no gallery at 015 -> cell (030, 015) empty.
    emb, subjects, types, vws, views = tiny_oumvlp()
    keep = [i for i in range(len(emb))
            if not (types[i] == "00" and vws[i] == "030" and subjects[i] != "00003")]
    keep = [i for i in keep if not (subjects[i] == "00003" and types[i] == "01" and vws[i] == "015")]
    e = emb[keep]
    s = [subjects[i] for i in keep]
    t = [types[i] for i in keep]
    v = [vws[i] for i in keep]
    kw = dict(probe_sets={"NM": ["00"]}, gallery_types=["01"], view_list=views, report_valid=True)
    with pytest.warns(UserWarning, match="skipped"):
        res = evaluate_view_matrix(e, s, t, v, **kw)
    vt = res.tables["NM"]["valid"]
    assert ["030", "015"] in vt["skipped_cells"]
    assert vt["matrix"][2][1] is None
    assert res.tables["NM"]["matrix"][2][1] == 0.0  # the plain variant counts the miss
    for value in res.metrics.values():
        assert np.isfinite(value)
    json.dumps(res.tables)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference_view_matrix(e, s, t, v, **kw)
    assert_same_result(res, ref, ["NM"], report_valid=True)


def test_stable_tie_break_first_gallery_item_wins():
    # Two gallery items at the same view with identical embeddings, different subjects.
    views = ["a", "b"]
    emb = np.zeros((6, 3, 2), dtype=np.float32)
    emb[:, 0, :] = 1.0
    subjects = ["B", "A", "A", "B", "A", "B"]
    types = ["g", "g", "p", "g", "g", "p"]
    vws = ["a", "a", "a", "b", "b", "b"]
    # all embeddings equal -> every distance ties; the first gallery item per view wins
    res = evaluate_view_matrix(emb, subjects, types, vws, probe_sets={"P": ["p"]}, gallery_types=["g"],
                               view_list=views)
    # gallery at a: first is subject B; at b: first is subject B
    # probe A@a -> miss at a and b; probe B@b -> hit at a and b
    assert res.tables["P"]["matrix"] == [[0.0, 0.0], [100.0, 100.0]]
    ref = reference_view_matrix(emb, subjects, types, vws, probe_sets={"P": ["p"]}, gallery_types=["g"],
                                view_list=views)
    assert ref.tables["P"]["matrix"] == res.tables["P"]["matrix"]


# --------------------------------------------------------------------------- cross-check fast vs reference


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_cross_check_against_reference(seed, dtype):
    emb, subjects, types, vws, views = make_dataset(seed, dtype=dtype)
    kw = dict(probe_sets=CASIA_SETS, gallery_types=CASIA_GALLERY, view_list=views, report_valid=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = evaluate_view_matrix(emb, subjects, types, vws, **kw)
        ref = reference_view_matrix(emb, subjects, types, vws, **kw)
    assert_same_result(fast, ref, CASIA_SETS, report_valid=True)
    assert fast.tables["ignored_views"] == ["999"]
    json.dumps(fast.tables)


@pytest.mark.parametrize("metric", ["cos", "flat_euc"])
@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("round_cells", [2, None, 0])
def test_cross_check_options(metric, exclude, round_cells):
    emb, subjects, types, vws, views = make_dataset(7, n_subjects=5, views=("0", "1", "2"), c=6, p=3)
    kw = dict(probe_sets={"NM": ["nm-05", "nm-06"], "CL": ["cl-01"]}, gallery_types=CASIA_GALLERY,
              view_list=views, metric=metric, exclude_identical_view=exclude, round_cells=round_cells,
              report_valid=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = evaluate_view_matrix(emb, subjects, types, vws, **kw)
        ref = reference_view_matrix(emb, subjects, types, vws, **kw)
    assert_same_result(fast, ref, ["NM", "CL"], report_valid=True)


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_cross_check_with_small_tiles(monkeypatch, metric):
    """Many ragged row blocks / column tiles / transposition chunks: ties across tiles still stable."""
    from gaitbench.evaluation import distance as dist_mod

    monkeypatch.setattr(dist_mod, "_CPU_BLOCK_ROWS", 9)
    monkeypatch.setattr(dist_mod, "_CPU_COL_TILE", 13)
    monkeypatch.setattr(dist_mod, "_CPU_TRANSPOSE_ROWS", 5)
    emb, subjects, types, vws, views = make_dataset(5, n_subjects=8, duplicates=12)
    kw = dict(probe_sets=CASIA_SETS, gallery_types=CASIA_GALLERY, view_list=views, metric=metric)
    fast = evaluate_view_matrix(emb, subjects, types, vws, **kw)
    ref = reference_view_matrix(emb, subjects, types, vws, **kw)
    assert_same_result(fast, ref, CASIA_SETS, report_valid=False)


def test_ties_are_exercised():
    """The duplicated embeddings of make_dataset do create exact ties across subjects."""
    emb, subjects, types, vws, views = make_dataset(0)
    flat = emb.reshape(len(emb), -1)
    _, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    dup_groups = [np.flatnonzero(inverse == g) for g in np.flatnonzero(counts > 1)]
    assert any(len({subjects[i] for i in grp}) > 1 for grp in dup_groups)


def test_probe_chunking_gives_same_result(monkeypatch):
    from gaitbench.evaluation import view_matrix as vm

    emb, subjects, types, vws, views = make_dataset(3)
    kw = dict(probe_sets=CASIA_SETS, gallery_types=CASIA_GALLERY, view_list=views)
    full = evaluate_view_matrix(emb, subjects, types, vws, **kw)
    monkeypatch.setattr(vm, "_DIST_CHUNK_BYTES", 4 * 100 * 7)  # 7 probe rows per chunk
    chunked = evaluate_view_matrix(emb, subjects, types, vws, **kw)
    assert chunked.metrics == full.metrics
    assert chunked.tables == full.tables


# --------------------------------------------------------------------------- distance


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(42)
    x = rng.standard_normal((37, 16, 5)).astype(np.float32)
    y = rng.standard_normal((53, 16, 5)).astype(np.float32)
    return x, y


def test_euc_is_mean_of_part_distances_not_flat_l2(xy):
    x, y = xy
    d = part_distance(x, y)
    assert d.dtype == np.float32 and d.shape == (37, 53)
    np.testing.assert_allclose(d, manual_part_mean_euc(x, y), rtol=1e-4, atol=1e-4)
    flat = manual_flat_euc(x, y)
    assert not np.allclose(d, flat, rtol=1e-2, atol=1e-2)
    # and the rankings differ too
    assert (np.argsort(d, axis=1) != np.argsort(flat, axis=1)).any()


def test_flat_euc_and_cos(xy):
    x, y = xy
    np.testing.assert_allclose(part_distance(x, y, "flat_euc"), manual_flat_euc(x, y), rtol=1e-4, atol=1e-4)
    dc = part_distance(x, y, "cos")
    np.testing.assert_allclose(dc, manual_cos(x, y), rtol=1e-5, atol=1e-5)
    assert dc.min() >= 0.0 - 1e-6 and dc.max() <= 2.0 + 1e-6


@pytest.mark.parametrize("metric", ["euc", "cos", "flat_euc"])
def test_reference_distance_matches_fast(xy, metric):
    x, y = xy
    np.testing.assert_allclose(part_distance(x, y, metric), reference_part_distance(x, y, metric),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["euc", "cos", "flat_euc"])
def test_block_size_does_not_change_result(metric):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((61, 8, 6)).astype(np.float32)
    y = rng.standard_normal((600, 8, 6)).astype(np.float32)  # > one 256-column tile
    big = part_distance(x, y, metric, block_size=10_000)
    for bs in (1, 7, 32, None):
        # GEMM kernels may differ with the block shape: equal up to float32 rounding.
        np.testing.assert_allclose(part_distance(x, y, metric, block_size=bs), big, rtol=1e-6, atol=1e-6)


def test_float16_input_and_2d_input(xy):
    x, y = xy
    d16 = part_distance(x.astype(np.float16), y.astype(np.float16))
    assert d16.dtype == np.float32
    ref = manual_part_mean_euc(x.astype(np.float16), y.astype(np.float16))
    np.testing.assert_allclose(d16, ref, rtol=1e-4, atol=1e-4)
    x2, y2 = x[:, :, 0], y[:, :, 0]
    np.testing.assert_allclose(part_distance(x2, y2), manual_flat_euc(x2, y2), rtol=1e-4, atol=1e-4)


def test_duplicated_items_get_identical_distances():
    rng = np.random.default_rng(5)
    y = rng.standard_normal((700, 32, 9)).astype(np.float32)  # several column tiles, ragged last one
    y[699] = y[3]
    y[300] = y[10]
    y[256] = y[255]
    x = np.concatenate([rng.standard_normal((20, 32, 9)).astype(np.float32), y[:4]])
    for metric in ("euc", "cos", "flat_euc"):
        d = part_distance(x, y, metric)
        for a, b in [(3, 699), (10, 300), (255, 256)]:
            np.testing.assert_array_equal(d[:, a], d[:, b])


def test_matmul_precision_forced_and_restored(xy):
    x, y = xy
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        d = part_distance(x, y)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
    np.testing.assert_allclose(d, manual_part_mean_euc(x, y), rtol=1e-5, atol=1e-5)


def test_distance_errors():
    x = np.zeros((2, 3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="metric"):
        part_distance(x, x, "manhattan")
    with pytest.raises(ValueError, match="same"):
        part_distance(x, np.zeros((2, 3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        part_distance(np.zeros((2, 3, 4, 5)), x)
    with pytest.raises(ValueError, match="block_size"):
        part_distance(x, x, block_size=0)
    assert part_distance(np.zeros((0, 3, 4)), x).shape == (0, 2)
    bad = np.ones((2, 3, 4), dtype=np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        part_distance(bad, x)
    with pytest.raises(ValueError, match="non-finite"):
        part_distance(x, bad, "cos")


@CUDA
@pytest.mark.parametrize("metric", ["euc", "cos", "flat_euc"])
def test_cuda_matches_cpu(xy, metric):
    x, y = xy
    np.testing.assert_allclose(part_distance(x, y, metric, device="cuda"), part_distance(x, y, metric),
                               rtol=1e-4, atol=1e-4)


@CUDA
def test_cuda_view_matrix_matches_cpu():
    emb, subjects, types, vws, views = make_dataset(11)
    kw = dict(probe_sets=CASIA_SETS, gallery_types=CASIA_GALLERY, view_list=views)
    a = evaluate_view_matrix(emb, subjects, types, vws, **kw)
    b = evaluate_view_matrix(emb, subjects, types, vws, device="cuda", **kw)
    assert a.tables == b.tables


# --------------------------------------------------------------------------- errors


@pytest.fixture()
def small():
    emb, subjects, types, vws, views = make_dataset(1, n_subjects=4, views=("0", "1", "2"), c=4, p=2,
                                                    drop_gallery=0, duplicates=0)
    kw = dict(probe_sets={"NM": ["nm-05", "nm-06"]}, gallery_types=CASIA_GALLERY, view_list=views)
    return emb, subjects, types, vws, kw


def test_error_no_probes_for_set(small):
    emb, s, t, v, kw = small
    kw["probe_sets"] = {"NM": ["nm-05"], "XX": ["zz-01"]}
    with pytest.raises(ValueError, match=r"no probes for probe set 'XX'"):
        evaluate_view_matrix(emb, s, t, v, **kw)


def test_error_probe_view_without_probes(small):
    emb, s, t, v, kw = small
    keep = [i for i in range(len(emb)) if not (t[i] in ("nm-05", "nm-06") and v[i] == "1")]
    with pytest.raises(ValueError, match=r"'NM'.*no probes at view\(s\) \['1'\]"):
        evaluate_view_matrix(emb[keep], [s[i] for i in keep], [t[i] for i in keep], [v[i] for i in keep], **kw)


def test_error_view_without_gallery(small):
    emb, s, t, v, kw = small
    keep = [i for i in range(len(emb)) if not (t[i] in CASIA_GALLERY and v[i] == "2")]
    with pytest.raises(ValueError, match=r"no gallery.*\['2'\]"):
        evaluate_view_matrix(emb[keep], [s[i] for i in keep], [t[i] for i in keep], [v[i] for i in keep], **kw)


def test_error_length_mismatch(small):
    emb, s, t, v, kw = small
    with pytest.raises(ValueError, match="length mismatch.*subjects"):
        evaluate_view_matrix(emb, s[:-1], t, v, **kw)
    with pytest.raises(ValueError, match="length mismatch.*views"):
        evaluate_view_matrix(emb, s, t, v + ["0"], **kw)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_non_finite(small, bad):
    emb, s, t, v, kw = small
    emb = emb.copy()
    emb[5, 1, 1] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        evaluate_view_matrix(emb, s, t, v, **kw)
    with pytest.raises(ValueError, match="NaN/inf"):
        evaluate_view_matrix(emb.astype(np.float16), s, t, v, **kw)


def test_error_views_absent_from_data(small):
    emb, s, t, v, kw = small
    kw["view_list"] = ["0", "1", "2", "7", "8"]
    with pytest.raises(ValueError, match=r"absent from the data: \['7', '8'\]"):
        evaluate_view_matrix(emb, s, t, v, **kw)


def test_ignored_views_listed(small):
    emb, s, t, v, kw = small
    kw["view_list"] = ["0", "2"]
    res = evaluate_view_matrix(emb, s, t, v, **kw)
    assert res.tables["ignored_views"] == ["1", "999"]
    assert res.tables["NM"]["views"] == ["0", "2"]
    assert len(res.tables["NM"]["matrix"]) == 2


def test_error_misc_arguments(small):
    emb, s, t, v, kw = small
    with pytest.raises(ValueError, match="metric"):
        evaluate_view_matrix(emb, s, t, v, metric="l1", **kw)
    with pytest.raises(ValueError, match="duplicated"):
        evaluate_view_matrix(emb, s, t, v, **{**kw, "view_list": ["0", "0", "1"]})
    with pytest.raises(ValueError, match="at least 2 views"):
        evaluate_view_matrix(emb, s, t, v, **{**kw, "view_list": ["0"]})
    with pytest.raises(ValueError, match="probe_sets is empty"):
        evaluate_view_matrix(emb, s, t, v, **{**kw, "probe_sets": {}})
    with pytest.raises(ValueError, match="reserved"):
        evaluate_view_matrix(emb, s, t, v, **{**kw, "probe_sets": {"ignored_views": ["nm-05"]}})
    with pytest.raises(ValueError, match="shape"):
        evaluate_view_matrix(emb[..., None], s, t, v, **kw)
    # a single view is fine when identical views are not excluded
    res = evaluate_view_matrix(emb, s, t, v, exclude_identical_view=False, **{**kw, "view_list": ["0"]})
    assert len(res.tables["NM"]["matrix"]) == 1


def test_prepare_reads_tensors_where_they_lie():
    """A tensor input gives bit-identical distances to the same values as a numpy array (stages
    hand their tensors straight to the distance code, without a trip through the host)."""
    import torch

    from gaitbench.evaluation.distance import prepare, prepared_distance

    rng = np.random.default_rng(11)
    x = rng.standard_normal((37, 16, 5)).astype(np.float32)
    y = rng.standard_normal((23, 16, 5)).astype(np.float32)
    for metric in ("euc", "cos", "flat_euc"):
        from_numpy = prepared_distance(prepare(x, metric, role="x"), prepare(y, metric, role="y", index=np.arange(3, 20)))
        from_torch = prepared_distance(prepare(torch.from_numpy(x), metric, role="x"),
                                       prepare(torch.from_numpy(y), metric, role="y", index=torch.arange(3, 20)))
        assert torch.equal(from_numpy, from_torch)
    with pytest.raises(ValueError, match="real dtype"):
        prepare(torch.zeros(3, 4, 2, dtype=torch.bool), "euc", role="x")
