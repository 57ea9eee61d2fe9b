"""Throughput of every method at the shapes it carries (``Method.throughput_cases``).

On CUDA (marked ``gpu``, skipped without it): the full shapes of each case with pytest-benchmark,
bf16 autocast, warm-up rounds, a device synchronisation inside every timed step, and sequences/s,
peak memory and the GPU name in ``extra_info``. On CPU, in the normal suite: every case once at tiny
shapes (``ThroughputCase.tiny``), so a case that cannot even build or step fails here first.
"""

from __future__ import annotations

import pytest
import torch

from gaitbench.bench import build_case
from gaitbench.plugins import build_plugin_manager


PLUGINS = build_plugin_manager(distributions={"gaitbench"})
CASES = dict(PLUGINS.throughput_cases().items())
IDS = sorted(CASES)


def test_every_method_registers_train_and_inference_cases():
    for method in PLUGINS.methods():
        kinds = {case.kind for case in CASES.values() if case.method == method}
        assert kinds == {"train", "inference"}, f"{method} registers {kinds}"


def assert_output_contract(out, batch: int) -> None:
    """A method's forward returns a dict: ``embeddings`` [batch, C, P] and, optionally, ``logits``
    [batch, classes, P], all finite floats."""
    assert isinstance(out, dict) and "embeddings" in out, f"the forward returned {type(out).__name__}"
    emb = out["embeddings"]
    assert emb.ndim == 3 and emb.shape[0] == batch and min(emb.shape) > 0, f"embeddings of shape {tuple(emb.shape)}"
    assert emb.is_floating_point() and torch.isfinite(emb).all(), "non-finite embeddings"
    if "logits" in out:
        logits = out["logits"]
        assert logits.ndim == 3 and logits.shape[0] == batch and logits.shape[2] == emb.shape[2], \
            f"logits of shape {tuple(logits.shape)} beside embeddings {tuple(emb.shape)}"
        assert torch.isfinite(logits).all(), "non-finite logits"


def assert_every_parameter_has_a_gradient(model) -> None:
    """After a training step (which sets gradients to None before its backward pass), every
    trainable parameter holds the finite gradient of this step."""
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} got a non-finite gradient"


@pytest.mark.parametrize("case_id", IDS)
def test_throughput_smoke_cpu(benchmark, case_id):
    case = CASES[case_id].tiny()
    step, model, n = build_case(case, PLUGINS.method(case.method), "cpu")
    benchmark.group = "throughput-cpu-smoke"
    out = benchmark.pedantic(step, rounds=1, warmup_rounds=0)
    if case.kind == "train":  # the step really trained
        assert_every_parameter_has_a_gradient(model)
    else:
        assert_output_contract(out, case.batch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case_id", IDS)
def test_throughput_gpu(benchmark, case_id):
    case = CASES[case_id]
    torch.backends.cudnn.benchmark = True
    step, model, n = build_case(case, PLUGINS.method(case.method), "cuda", channels_last=True)
    torch.cuda.reset_peak_memory_stats()
    benchmark.group = f"throughput-{case.kind}"
    benchmark.pedantic(step, rounds=20, warmup_rounds=5)
    if benchmark.stats:
        benchmark.extra_info.update({
            "sequences_per_s": round(n / benchmark.stats.stats.median, 1),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "gpu": torch.cuda.get_device_name(), "amp": case.amp, "torch": torch.__version__,
        })
