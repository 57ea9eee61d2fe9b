"""Benchmark: synthetic silhouette rendering, frames per second on one core.

The issue asks for at least 2,000 frames per second per core at 64x64 (the stored 64x44 frames are
64x64 frames after the standard side cut). One round renders 60 sequences (5 subjects x 3
conditions x 4 views) in this process; ``extra_info`` reports frames per second of wall time (best
and mean round) and per CPU second, the figure that stays honest on a machine shared with other
jobs. Nothing is asserted about time. Run with ``pytest tests/test_synthetic_bench.py`` (pin a core
with ``taskset -c 1``; ``--benchmark-disable`` runs it once without timing statistics).
"""

from __future__ import annotations

import time

import pytest

from gaitbench.data.walker import Occlusion, render_sequence

WORK = [(s, c, v) for s in range(1, 6) for c in ("nm", "bg", "cl") for v in (0.0, 54.0, 90.0, 144.0)]


@pytest.mark.parametrize("height,frames,occluded", [
    (64, 12, False),  # the default synthetic datasets: 12 frames a sequence
    (64, 30, False),  # one gait cycle at full frame rate
    (64, 24, True),  # Gait3D-like: occluded below the hips
    (128, 24, False),  # Gait3D's 128x88 variant
])
def test_bench_render_sequence(benchmark, height, frames, occluded):
    occlusion = Occlusion("lower", level=0.35) if occluded else None
    cpu = []

    def run():
        start = time.process_time()
        n = 0
        for subject, condition, view in WORK:
            n += len(render_sequence(subject, condition, view, seed=0, sequence=1, frames=frames, frame_step=2.5,
                                     height=height, occlusion=occlusion))
        cpu.append(time.process_time() - start)
        return n

    n = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert n == len(WORK) * frames
    info = {"frames_per_round": n, "frame_shape": f"{height}x{height // 64 * 44}",
            "frames_per_cpu_s": round(n / min(cpu), 1)}
    if benchmark.stats is not None:  # None under --benchmark-disable
        stats = benchmark.stats.stats
        info.update(frames_per_s_best=round(n / stats.min, 1), frames_per_s_mean=round(n / stats.mean, 1))
    benchmark.extra_info.update(info)
