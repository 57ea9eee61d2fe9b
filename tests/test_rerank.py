"""k-reciprocal re-ranking: the fast stage against the readable reference port, its guards,
presets and parameter errors, and its memory bound."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from gaitbench.errors import ConfigError
from gaitbench.evaluation.distance import part_distance
from gaitbench.evaluation.rerank import k_reciprocal, memory_estimate, rerank, rerank_matrix, smallest_k
from gaitbench.builtin import RERANK_PRESETS
from gaitbench.evaluation.stages import StageInput, resolve_params, run_stages
from gaitbench.plugins import get_plugins

from .reference_rerank import reference_rerank_embeddings, reference_rerank_matrix

TOL = 1e-5


def retrieval_metrics(dist, probe_labels, gallery_labels):
    """rank-1, mAP and mINP in percent (stable sort: ties by gallery index; probes without a
    match are skipped), as the Gait3D protocol computes them."""
    order = np.argsort(np.asarray(dist), axis=1, kind="stable")
    match = np.asarray(gallery_labels)[order] == np.asarray(probe_labels)[:, None]
    r1, ap, inp = [], [], []
    for row in match:
        hits = np.flatnonzero(row)
        if len(hits) == 0:
            continue
        r1.append(row[0])
        ap.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
        inp.append(len(hits) / (hits[-1] + 1))
    return tuple(round(100 * float(np.mean(v)), 6) for v in (r1, ap, inp))


def symmetric_distance(x, metric="euc"):
    d = part_distance(x, x, metric)
    return np.minimum(d, d.T)


def clustered(ids, per_id, dim, parts=1, noise=1.5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim, parts)).astype(np.float32)
    labels = np.repeat(np.arange(ids), per_id)
    x = centres[labels] + noise * rng.standard_normal((len(labels), dim, parts)).astype(np.float32)
    perm = rng.permutation(len(labels))
    return x[perm], labels[perm]


CASES = [  # q, g, k1, k2, lambda, squared
    (20, 80, 20, 6, 0.3, True),
    (30, 150, 6, 6, 0.3, False),
    (40, 160, 19, 1, 0.0, True),   # k1 = 3 mod 4 (half-list rounding), no local QE, pure Jaccard
    (25, 120, 15, 3, 1.0, False),  # lambda = 1: only the normalised distance
]


@pytest.mark.parametrize("q,g,k1,k2,lam,squared", CASES)
def test_matches_reference_on_random_matrices(q, g, k1, k2, lam, squared):
    x = np.random.default_rng(q).standard_normal((q + g, 16, 2)).astype(np.float32)
    full = symmetric_distance(x)
    ref = reference_rerank_matrix(full, q, k1=k1, k2=k2, lambda_value=lam, squared=squared)
    ours = rerank_matrix(full, q, k1=k1, k2=k2, lambda_value=lam, squared=squared).numpy()
    assert ours.dtype == np.float32 and ours.shape == (q, g)
    assert np.abs(ours - ref).max() <= TOL
    assert np.array_equal(smallest_k(torch.from_numpy(ours), 10)[1].numpy(),
                          np.argsort(ref, axis=1, kind="stable")[:, :10])


@pytest.mark.parametrize("preset", sorted(RERANK_PRESETS))
def test_matches_reference_on_clustered_data_and_helps(preset):
    p = RERANK_PRESETS[preset]
    x, labels = clustered(ids=40, per_id=8, dim=24, parts=2)
    q = 60
    full = symmetric_distance(x)
    ref = reference_rerank_matrix(full, q, k1=p["k1"], k2=p["k2"], lambda_value=p["lambda"], squared=p["squared"])
    ours = rerank_matrix(full, q, k1=p["k1"], k2=p["k2"], lambda_value=p["lambda"], squared=p["squared"]).numpy()
    assert np.abs(ours - ref).max() <= TOL
    probe_l, gallery_l = labels[:q], labels[q:]
    assert retrieval_metrics(ours, probe_l, gallery_l) == retrieval_metrics(ref, probe_l, gallery_l)
    before = retrieval_metrics(full[:q, q:], probe_l, gallery_l)
    assert retrieval_metrics(ours, probe_l, gallery_l)[1] > before[1]  # mAP improves on clustered data


@pytest.mark.parametrize("squared", [True, False])
def test_matches_reference_with_ties(squared):
    # Distances rounded to one decimal: many exact ties inside neighbour lists and at their ends.
    x, labels = clustered(ids=30, per_id=6, dim=8, noise=1.0, seed=3)
    full = np.round(symmetric_distance(x), 1).astype(np.float32)
    q = 40
    for k1, k2, lam in ((20, 6, 0.3), (6, 6, 0.3), (20, 6, 0.0)):
        ref = reference_rerank_matrix(full, q, k1=k1, k2=k2, lambda_value=lam, squared=squared)
        ours = rerank_matrix(full, q, k1=k1, k2=k2, lambda_value=lam, squared=squared).numpy()
        assert np.abs(ours - ref).max() <= TOL
        assert retrieval_metrics(ours, labels[:q], labels[q:]) == retrieval_metrics(ref, labels[:q], labels[q:])


def test_duplicated_sequences_tie_like_the_reference():
    x, labels = clustered(ids=20, per_id=5, dim=8, seed=5)
    x = np.concatenate([x, x[:30], x[:10]])  # exact copies: equal distances, ties broken by index
    labels = np.concatenate([labels, labels[:30], labels[:10]])
    full = symmetric_distance(x)
    q = 25
    ref = reference_rerank_matrix(full, q, k1=20, k2=6, lambda_value=0.3, squared=True)
    ours = rerank_matrix(full, q, k1=20, k2=6, lambda_value=0.3, squared=True).numpy()
    assert np.abs(ours - ref).max() <= TOL
    assert retrieval_metrics(ours, labels[:q], labels[q:]) == retrieval_metrics(ref, labels[:q], labels[q:])


def test_k_larger_than_the_set_is_clamped_with_a_warning():
    x = np.random.default_rng(1).standard_normal((12, 4, 1)).astype(np.float32)
    full = symmetric_distance(x)
    with pytest.warns(UserWarning, match="exceeds the 12 probe and gallery sequences"):
        ours = rerank_matrix(full, 4, k1=20, k2=30, lambda_value=0.3, squared=True).numpy()
    ref = reference_rerank_matrix(full, 4, k1=20, k2=30, lambda_value=0.3, squared=True)
    assert np.abs(ours - ref).max() <= TOL


@pytest.mark.filterwarnings("ignore:rerank. k")
@pytest.mark.parametrize("n_probe,n_gallery", [(3, 9), (1, 1)])
def test_identical_features_give_no_nan(n_probe, n_gallery):
    x = np.ones((n_probe + n_gallery, 8, 2), dtype=np.float32)
    full = symmetric_distance(x)
    ours = rerank_matrix(full, n_probe, k1=20, k2=6, lambda_value=0.3, squared=True).numpy()
    assert np.isfinite(ours).all()
    ref = reference_rerank_matrix(full, n_probe, k1=20, k2=6, lambda_value=0.3, squared=True)
    assert np.abs(ours - ref).max() <= TOL
    zeros = np.zeros((n_probe + n_gallery,) * 2, dtype=np.float32)
    assert np.isfinite(rerank_matrix(zeros, n_probe, k1=6, k2=6, lambda_value=0.3, squared=False).numpy()).all()


def test_zero_rows_among_others_give_no_nan():
    x = np.random.default_rng(2).standard_normal((30, 8, 1)).astype(np.float32)
    x[5] = x[17] = x[6]  # a small group of identical sequences
    full = symmetric_distance(x)
    ours = rerank_matrix(full, 10, k1=6, k2=6, lambda_value=0.3, squared=False).numpy()
    ref = reference_rerank_matrix(full, 10, k1=6, k2=6, lambda_value=0.3, squared=False)
    assert np.isfinite(ours).all() and np.abs(ours - ref).max() <= TOL


@pytest.mark.parametrize("metric,squared", [("euc", True), ("euc", False), ("cos", True), ("cos", False),
                                            ("flat_euc", False)])
def test_embeddings_path_matches_reference(metric, squared):
    x, labels = clustered(ids=30, per_id=7, dim=16, parts=4, seed=7)
    q = 45
    probe, gallery = x[:q], x[q:]
    ref = reference_rerank_embeddings(probe, gallery, metric, k1=20, k2=6, lambda_value=0.3, squared=squared)
    ours = rerank(probe, gallery, metric, k1=20, k2=6, lambda_value=0.3, squared=squared).numpy()
    assert np.abs(ours - ref).max() <= TOL
    assert retrieval_metrics(ours, labels[:q], labels[q:]) == retrieval_metrics(ref, labels[:q], labels[q:])


def test_stripes_and_reused_distance_do_not_change_the_result(monkeypatch):
    import gaitbench.evaluation.rerank as rr

    x, _ = clustered(ids=25, per_id=8, dim=12, parts=3, seed=9)
    probe, gallery = torch.from_numpy(x[:50]), torch.from_numpy(x[50:])
    stage = get_plugins().stages().get("rerank")
    plain = run_stages(StageInput(probe, gallery, "euc"), [(stage, {})])[0]
    known = StageInput(probe, gallery, "euc")
    known.current_distance()
    reused = run_stages(known, [(stage, {})])[0]
    monkeypatch.setattr(rr, "_CPU_STRIPE_ROWS", 7)  # many stripes, uneven at the probe boundary
    monkeypatch.setattr(rr, "_CPU_CHUNK_ROWS", 16)  # many row chunks in the sparse steps
    monkeypatch.setattr(rr, "_CPU_PAIRS", 500)  # many Jaccard chunks
    striped = run_stages(StageInput(probe, gallery, "euc"), [(stage, {})])[0]
    assert torch.allclose(plain, reused, atol=TOL, rtol=0) and torch.allclose(plain, striped, atol=TOL, rtol=0)


def test_rerank_stage_records_and_presets():
    stage = get_plugins().stages().get("rerank")
    assert stage.transductive and stage.defaults["preset"] == "zhong2017"
    x, _ = clustered(ids=10, per_id=6, dim=8, seed=11)
    data = StageInput(torch.from_numpy(x[:15]), torch.from_numpy(x[15:]), "euc")
    dist, records = run_stages(data, [(stage, {"preset": "opengait-hid", "k2": 3})])
    assert records[0]["name"] == "rerank" and records[0]["transductive"] is True
    assert records[0]["params"] == {"preset": "opengait-hid", "k1": 6, "k2": 3, "lambda": 0.3, "squared": False,
                                    "distance": "protocol"}
    assert records[0]["seconds"] >= 0
    expected = rerank(x[:15], x[15:], "euc", k1=6, k2=3, lambda_value=0.3, squared=False)
    assert torch.allclose(dist, expected, atol=TOL, rtol=0)
    flat = run_stages(StageInput(data.probe, data.gallery, "euc"), [(stage, {"distance": "flat_euc"})])[0]
    assert torch.allclose(flat, rerank(x[:15], x[15:], "flat_euc", k1=20, k2=6, lambda_value=0.3, squared=True),
                          atol=TOL, rtol=0)


def test_rerank_parameter_errors():
    stage = get_plugins().stages().get("rerank")
    with pytest.raises(ConfigError, match=r"stage 'rerank': unknown parameter 'lamda'; did you mean 'lambda'"):
        resolve_params(stage, {"lamda": 0.5})
    with pytest.raises(ConfigError, match=r"unknown parameter 'k3'.* Available: distance, k1, k2, lambda, preset"):
        resolve_params(stage, {"k3": 4})
    with pytest.raises(ConfigError, match=r"stage 'rerank': unknown preset 'opengait'; did you mean 'opengait-hid'"):
        resolve_params(stage, {"preset": "opengait"})
    with pytest.raises(ConfigError, match=r"stage 'rerank': parameter 'k1' must be int"):
        resolve_params(stage, {"k1": 2.5})
    assert resolve_params(stage, {"lambda": 1})["lambda"] == 1.0
    data = StageInput(torch.zeros(2, 4, 1), torch.ones(3, 4, 1), "euc")
    for bad in ({"k1": 0}, {"lambda": 1.5}, {"distance": "manhattan"}):
        with pytest.raises(ConfigError, match="stage 'rerank'"):
            run_stages(data, [(stage, bad)])


def test_order_keys_sort_like_a_stable_argsort():
    values = torch.tensor([[0.5, -0.0, 0.0, -1.0, -1e-40, 1e-40, 2.0, float("inf"), -0.0, 0.5]])
    got_values, got_cols = smallest_k(values, 10)
    expected = np.argsort(values.numpy(), axis=1, kind="stable")
    assert np.array_equal(got_cols.numpy(), expected)  # -0.0 ties +0.0; subnormals and inf in order
    assert np.array_equal(got_values.numpy(), np.take_along_axis(values.numpy(), expected, 1))
    assert smallest_k(values, 3)[1].tolist() == [[3, 4, 1]]


def test_empty_sides():
    assert rerank_matrix(np.zeros((3, 3), np.float32), 3, k1=2, k2=1, lambda_value=0.3, squared=True).shape == (3, 0)
    out = k_reciprocal(lambda r, c: torch.zeros(1), 0, 4, k1=2, k2=2, lambda_value=0.3, squared=True)
    assert out.shape == (0, 4)


def test_memory_estimate_is_linear_in_n_beyond_the_qg_block():
    small = memory_estimate(1000, 5000)
    big = memory_estimate(1000, 105000)
    assert big["dense_reference"] > 250 * small["dense_reference"]
    assert big["total"] - big["qg_buffers"] < 40 * (small["total"] - small["qg_buffers"])
    assert big["total"] < big["dense_reference"] / 50


def test_peak_memory_stays_far_below_a_dense_matrix():
    """N = 12,000 tiny embeddings: a dense N x N float32 matrix is 576 MB and the reference holds
    about five of them; the fast path must stay below a fraction of one.

    Measured as the growth of the process's anonymous resident memory (sampled every millisecond
    during a second call at full size): the peak RSS would also count shared-library pages touched
    for the first time, which vary with the machine's page cache (400 MB to 1 GB seen)."""
    code = textwrap.dedent("""
        import threading, time, numpy as np, torch
        from gaitbench.evaluation.rerank import rerank
        torch.set_num_threads(1)
        def anon_mb():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
        x = np.random.default_rng(0).standard_normal((12000, 8, 1)).astype(np.float32)
        rerank(x[:200], x[200:], "euc", k1=20, k2=6, lambda_value=0.3, squared=True)  # warm-up, full size
        base = anon_mb(); peak = [base]; done = threading.Event()
        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], anon_mb()); time.sleep(0.001)
        watcher = threading.Thread(target=watch); watcher.start()
        out = rerank(x[:200], x[200:], "euc", k1=20, k2=6, lambda_value=0.3, squared=True)
        done.set(); watcher.join()
        assert out.shape == (200, 11800) and bool(torch.isfinite(out).all())
        print(int(peak[0] - base))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    grown_mb = int(proc.stdout.strip().splitlines()[-1])
    assert grown_mb < 200, f"anonymous memory grew by {grown_mb} MB"


def test_warning_free_on_ordinary_inputs():
    x, _ = clustered(ids=10, per_id=10, dim=8, seed=13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rerank(x[:20], x[20:], "euc", k1=20, k2=6, lambda_value=0.3, squared=True)


def test_a_transformed_distance_is_not_reused():
    """A second rerank sees distance_source 'rerank' and recomputes from the features, so
    re-ranking twice equals re-ranking once (the features are unchanged)."""
    x, _ = clustered(ids=10, per_id=6, dim=8, seed=17)
    stage = get_plugins().stages().get("rerank")
    data = StageInput(torch.from_numpy(x[:12]), torch.from_numpy(x[12:]), "euc")
    once, _ = run_stages(data, [(stage, {})])
    twice, records = run_stages(StageInput(data.probe, data.gallery, "euc"), [(stage, {}), (stage, {})])
    assert len(records) == 2 and torch.allclose(once, twice, atol=TOL, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, labels = clustered(ids=40, per_id=10, dim=32, parts=4, seed=19)
    cpu = rerank(x[:80], x[80:], "euc", k1=20, k2=6, lambda_value=0.3, squared=True)
    gpu = rerank(x[:80], x[80:], "euc", k1=20, k2=6, lambda_value=0.3, squared=True, device="cuda")
    assert gpu.is_cuda and torch.allclose(cpu, gpu.cpu(), atol=TOL, rtol=0)
    full = symmetric_distance(x)
    ref = reference_rerank_matrix(full, 80, k1=6, k2=6, lambda_value=0.3, squared=False)
    ours = rerank_matrix(full, 80, k1=6, k2=6, lambda_value=0.3, squared=False, device="cuda").cpu().numpy()
    assert np.abs(ours - ref).max() <= TOL
