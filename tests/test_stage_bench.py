"""Benchmark: k-reciprocal re-ranking, the readable reference port against the fast stage, in the
same run on the same inputs.

The acceptance size (1,000 probes x 5,000 gallery, random float32 embeddings [256, 16], CPU) runs
only when asked, with ``GAITBENCH_BENCH=1`` or ``--benchmark-enable``::

    GAITBENCH_BENCH=1 pytest tests/test_stage_bench.py -s

Both sides start from the embeddings: the reference computes its three distance matrices with
``part_distance`` and then runs its loops; the fast stage computes its blocks itself. A third
figure starts from the probe x gallery distance the engine has already computed for the baseline
metrics. The reference takes about 10 s on 2 cores, so it runs one round, once per module: the
fast tests compare with the reference benchmark's result, or run the reference themselves when
selected alone. The fast stage runs three rounds after a warm-up. A tiny-shape smoke version of the
same comparison runs in the normal suite.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from gaitbench.evaluation.rerank import rerank
from gaitbench.evaluation.stages import StageInput, run_stages
from gaitbench.plugins import get_plugins

from .reference_rerank import reference_rerank_embeddings

PARAMS = {"k1": 20, "k2": 6, "lambda_value": 0.3, "squared": True}  # the zhong2017 preset


def big_enabled(request) -> bool:
    return os.environ.get("GAITBENCH_BENCH", "") == "1" or bool(request.config.getoption("benchmark_enable", False))


def embeddings(q, g, c, p, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((q, c, p), dtype=np.float32), rng.standard_normal((g, c, p), dtype=np.float32)


class Clock:
    """Wraps a function and keeps the wall time of every call (benchmark stats may be disabled)."""

    def __init__(self, fn):
        self.fn, self.times = fn, []

    def __call__(self):
        started = time.perf_counter()
        out = self.fn()
        self.times.append(time.perf_counter() - started)
        return out


def fast(probe, gallery):
    return rerank(probe, gallery, "euc", **PARAMS).numpy()


def reference(probe, gallery):
    return reference_rerank_embeddings(probe, gallery, "euc", **PARAMS)


def test_bench_rerank_smoke(benchmark):
    probe, gallery = embeddings(60, 240, 32, 4)
    ref = Clock(lambda: reference(probe, gallery))
    expected = ref()
    ours = Clock(lambda: fast(probe, gallery))
    result = benchmark.pedantic(ours, rounds=3, warmup_rounds=1)
    assert np.abs(result - expected).max() <= 1e-5
    benchmark.extra_info.update(reference_s=round(ref.times[0], 4), fast_min_s=round(min(ours.times), 4))


@pytest.fixture(scope="module")
def acceptance_size():
    return embeddings(1000, 5000, 256, 16)


class ReferenceRun:
    """The reference port's time and result at the acceptance size, kept for the module: recorded
    by the reference benchmark, or computed by the first test that needs them before it ran."""

    def __init__(self, probe, gallery):
        self.probe, self.gallery = probe, gallery
        self.seconds: float | None = None
        self.result: np.ndarray | None = None

    def clock(self) -> Clock:
        return Clock(lambda: reference(self.probe, self.gallery))

    def record(self, clock: Clock, result: np.ndarray) -> None:
        self.seconds, self.result = clock.times[-1], result

    def get(self) -> tuple[float, np.ndarray]:
        if self.result is None:
            clock = self.clock()
            self.record(clock, clock())
        return self.seconds, self.result


@pytest.fixture(scope="module")
def reference_run(acceptance_size):
    return ReferenceRun(*acceptance_size)


def test_bench_rerank_reference_1000x5000(benchmark, request, reference_run):
    if not big_enabled(request):
        pytest.skip("set GAITBENCH_BENCH=1 or pass --benchmark-enable to run the acceptance-size benchmark")
    ref = reference_run.clock()
    result = benchmark.pedantic(ref, rounds=1, iterations=1, warmup_rounds=0)
    reference_run.record(ref, result)
    assert result.shape == (1000, 5000) and np.isfinite(result).all()
    benchmark.extra_info["seconds"] = round(ref.times[-1], 3)
    print(f"\nreference port, 1000 x 5000 [256, 16]: {ref.times[-1]:.2f} s")


def test_bench_rerank_fast_1000x5000(benchmark, request, acceptance_size, reference_run):
    if not big_enabled(request):
        pytest.skip("set GAITBENCH_BENCH=1 or pass --benchmark-enable to run the acceptance-size benchmark")
    probe, gallery = acceptance_size
    ours = Clock(lambda: fast(probe, gallery))
    result = benchmark.pedantic(ours, rounds=3, warmup_rounds=1)
    best = min(ours.times[1:])  # the warm-up call is not counted
    benchmark.extra_info["min_seconds"] = round(best, 3)
    print(f"\nfast stage, 1000 x 5000 [256, 16], from embeddings: min {best:.2f} s of {len(ours.times) - 1}")
    ref_time, ref_result = reference_run.get()
    assert np.abs(result - ref_result).max() <= 1e-5
    speedup = ref_time / best
    benchmark.extra_info["speedup"] = round(speedup, 2)
    print(f"speed-up over the reference port: {speedup:.1f}x")
    assert speedup >= 5.0, f"only {speedup:.1f}x faster than the reference port ({best:.2f} s vs {ref_time:.2f} s)"


def test_bench_rerank_stage_with_known_distance(benchmark, request, acceptance_size, reference_run):
    """The engine path: the probe x gallery distance is already known from the baseline metrics."""
    if not big_enabled(request):
        pytest.skip("set GAITBENCH_BENCH=1 or pass --benchmark-enable to run the acceptance-size benchmark")
    probe, gallery = (torch.from_numpy(a) for a in acceptance_size)
    known = StageInput(probe, gallery, "euc").current_distance()
    stage = get_plugins().stages().get("rerank")

    ours = Clock(lambda: run_stages(StageInput(probe, gallery, "euc", known.clone()), [(stage, {})])[0].numpy())
    result = benchmark.pedantic(ours, rounds=3, warmup_rounds=1)
    best = min(ours.times[1:])
    benchmark.extra_info["min_seconds"] = round(best, 3)
    print(f"\nrerank stage with the engine's probe x gallery distance: min {best:.2f} s")
    ref_time, ref_result = reference_run.get()
    assert np.abs(result - ref_result).max() <= 1e-5
    print(f"ratio to the reference port from embeddings: {ref_time / best:.1f}x")
