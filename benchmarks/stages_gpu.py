"""Time k-reciprocal re-ranking (the ``rerank`` stage, zhong2017 preset) on a GPU; prints JSON.

    python benchmarks/stages_gpu.py                      # cuda: the two acceptance sizes
    python benchmarks/stages_gpu.py --device cpu --small # a quick check of the script on CPU

Cases (random float32 embeddings [256, 16], metric "euc"):

- ``gait3d``: 1,000 probes x 5,000 gallery (target: under 0.5 s on one H200);
- ``grew``: 4,000 probes x (20,000 gallery + 100,000 distractors), i.e. 24,000 probes+gallery
  plus 100,000 distractors (target: under 10 s), with the peak GPU memory.

Each case runs once as a warm-up and then ``--repeat`` times; the figures are the minimum and
the median, each call synchronised (``torch.cuda.synchronize``) before the clock stops. Peak
memory is ``torch.cuda.max_memory_allocated`` over the timed calls, next to the memory of the
inputs and of a dense N x N float32 matrix for comparison. With ``--check`` (default on for
the gait3d case) the GPU result is compared with the same computation on CPU (max |difference|
and top-1 agreement). Only torch and gaitbench are used.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from gaitbench.evaluation.rerank import memory_estimate
from gaitbench.evaluation.stages import StageInput, run_stages
from gaitbench.plugins import get_plugins

FULL = {"gait3d": (1000, 5000, 0), "grew": (4000, 20000, 100000)}
SMALL = {"gait3d": (100, 500, 0), "grew": (200, 1000, 3000)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make(q: int, g: int, c: int, p: int, device: torch.device, seed: int = 0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    probe = torch.randn(q, c, p, generator=gen).to(device)
    gallery = torch.randn(g, c, p, generator=gen).to(device)
    return probe, gallery


def run_case(name, q, g, distractors, args, device):
    stage = get_plugins().stages().get("rerank")
    probe, gallery = make(q, g + distractors, args.channels, args.parts, device)
    n = q + g + distractors

    def once():
        sync(device)
        started = time.perf_counter()
        dist, records = run_stages(StageInput(probe, gallery, "euc"), [(stage, {})])
        sync(device)
        return time.perf_counter() - started, dist, records

    once()  # warm-up: CUDA context, kernels, allocator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times, dist, records = [], None, None
    for _ in range(args.repeat):
        seconds, dist, records = once()
        times.append(seconds)
    out = {
        "case": name, "device": str(device), "probes": q, "gallery": g, "distractors": distractors, "n": n,
        "embedding": [args.channels, args.parts], "params": records[0]["params"],
        "seconds_min": round(min(times), 4), "seconds_median": round(statistics.median(times), 4),
        "repeats": args.repeat, "input_bytes": (probe.numel() + gallery.numel()) * 4,
        "dense_nxn_float32_bytes": 4 * n * n, "estimate": memory_estimate(q, g + distractors, device=str(device)),
    }
    if device.type == "cuda":
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
        out["peak_gpu_bytes_above_inputs"] = out["peak_gpu_bytes"] - base
        out["gpu"] = torch.cuda.get_device_name(device)
    if args.check and name in args.check_cases and device.type != "cpu":
        started = time.perf_counter()
        cpu, _ = run_stages(StageInput(probe.cpu(), gallery.cpu(), "euc"), [(stage, {})])
        gpu = dist.cpu()
        out["check"] = {
            "cpu_seconds": round(time.perf_counter() - started, 3),
            "max_abs_diff": float((gpu - cpu).abs().max()),
            "top1_agreement": float((gpu.argmin(1) == cpu.argmin(1)).float().mean()),
        }
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (to check the script on CPU)")
    parser.add_argument("--cases", default="gait3d,grew")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--no-check", dest="check", action="store_false")
    parser.add_argument("--check-cases", default="gait3d")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available; use --device cpu --small to check the script")
    sizes = SMALL if args.small else FULL
    if args.small:
        args.channels, args.parts = min(args.channels, 32), min(args.parts, 4)
    results = {
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cases": [run_case(name, *sizes[name], args, device) for name in args.cases.split(",")],
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
