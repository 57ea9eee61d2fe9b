"""`gaitbench bench` on the CPU with tiny shapes: a complete record, FLOPs that scale with frames,
and the record feeding a leaderboard's efficiency columns."""

from __future__ import annotations

import json

import pytest

from gaitbench.bench import count_flops, measure
from gaitbench.plugins import get_plugins

from .conftest import run_cli


def test_bench_cli_writes_a_complete_record(tmp_path, small_synth):
    out = tmp_path / "bench.json"
    store, _ = small_synth
    proc = run_cli("bench", "--method", "gaitset", "--recipe", "quick", "--batch", "2,2", "--frames", "4",
                   "--test-frames", "6", "--infer-batch", "2", "--steps", "2", "--warmup", "1", "--json", str(out),
                   "--data", str(store.root))
    assert proc.returncode == 0, proc.stderr
    assert "seq/s" in proc.stdout and "GFLOPs" in proc.stdout and "loader" in proc.stdout
    r = json.loads(out.read_text())
    assert r["kind"] == "bench" and r["method"] == "gaitset" and r["variant"] == "quick"
    assert r["params"] == 158_216 and r["shapes"]["train"] == [4, 4, 64, 44]
    for section in ("train", "inference"):
        assert r[section]["seq_per_s"] > 0 and r[section]["achieved_tflops"] > 0
    assert r["inference"]["latency_s"] > 0 and r["gflops_per_sequence"] > 0
    assert r["amp"] == "none" and r["compile"] is False and r["torch"]
    assert r["peak_bf16_tflops"] is None and r["train"]["mfu"] is None  # a CPU has no known peak
    # the loader alone, at the same batch shape, beside the training step it has to feed
    loader = r["loader"]
    assert loader["batch"] == [4, 4] and loader["store"] == "PackedStore" and loader["seq_per_s"] > 0
    assert loader["headroom"] == pytest.approx(loader["seq_per_s"] / r["train"]["seq_per_s"])


def test_channels_last_for_2d_and_3d_models():
    for method in ("gaitset", "gaitgl"):
        r = measure(get_plugins().method(method), variant="quick", channels_last=True, train_batch=(2, 2), frames=6,
                    test_frames=6, infer_batch=2, steps=1, warmup=1)
        assert r["channels_last"] is True and r["train"]["seq_per_s"] > 0


def test_mfu_against_a_known_or_given_peak():
    from gaitbench.bench import peak_tflops

    assert peak_tflops("NVIDIA H200") == 989.4 and peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("cpu") is None and peak_tflops(None) is None
    r = measure(get_plugins().method("gaitset"), variant="quick", train_batch=(2, 2), frames=4, test_frames=4,
                infer_batch=2, steps=1, warmup=1, peak=0.5)
    assert r["peak_bf16_tflops"] == 0.5
    assert r["train"]["mfu"] == pytest.approx(r["train"]["achieved_tflops"] / 0.5)
    assert r["inference"]["mfu"] == pytest.approx(r["inference"]["achieved_tflops"] / 0.5)


def test_flops_scale_with_frames():
    import torch

    model = get_plugins().method("gaitset").create("quick").eval()
    f30 = count_flops(model, torch.rand(1, 30, 64, 44))
    f60 = count_flops(model, torch.rand(1, 60, 64, 44))
    assert 1.8 < f60 / f30 < 2.0  # the frame CNN doubles; the set-level part stays


def test_bad_bench_arguments(tmp_path):
    proc = run_cli("bench", "--method", "gaitset", "--batch", "2x2")
    assert proc.returncode != 0 and "--batch expects P,K" in proc.stderr and "Traceback" not in proc.stderr
    missing = tmp_path / "no-such-data"
    proc = run_cli("bench", "--method", "gaitset", "--recipe", "quick", "--batch", "2,2", "--frames", "4",
                   "--test-frames", "4", "--infer-batch", "2", "--steps", "1", "--warmup", "1", "--data", str(missing))
    assert proc.returncode != 0 and str(missing) in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(Exception, match="no CUDA device"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is present")
        measure(get_plugins().method("gaitset"), device="cuda")


@pytest.mark.gpu
def test_bench_on_cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    r = measure(get_plugins().method("gaitset"), variant="casiab", device="cuda", amp="bf16", train_batch=(8, 16),
                frames=30, steps=5, warmup=2)
    assert r["gpu"] and r["train"]["peak_memory_gib"] > 0 and r["train"]["seq_per_s"] > 0
