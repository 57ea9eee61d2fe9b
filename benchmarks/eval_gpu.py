"""Time the evaluation engine at OU-MVLP and CASIA-B size; prints JSON.

    python benchmarks/eval_gpu.py                       # cuda: OU-MVLP test-set size (the H200 target)
    python benchmarks/eval_gpu.py --device cpu --small  # a quick check of the script on CPU

Cases (random embeddings; labels laid out as the protocol's test set):

- ``oumvlp``: 5,154 test subjects x 14 views x sequences 00/01 = 144,312 sequences, [256, 16],
  protocol ``oumvlp`` (rank1 and rank1_valid; 2.5 % of gallery sequences removed so both
  conventions are exercised). Target: under 2 s on one H200, peak host memory under 8 GB.
- ``casiab``: 50 subjects x 10 types x 11 views = 5,500 sequences, [256, 62], protocol ``casiab``.

Each case runs once as a warm-up, then ``--repeat`` times (minimum and median reported; the engine
synchronises the device before its clocks stop). Peak host memory is the process's maximum RSS
(``ru_maxrss``) and its growth over the inputs; peak GPU memory is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import numpy as np
import torch

from gaitbench.evaluation.engine import evaluate
from gaitbench import get_protocol


def rss_mb() -> float:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


def oumvlp_labels(subjects: int, rng):
    views = get_protocol("oumvlp").evaluation.views
    ids = [f"{2 * i + 2:05d}" for i in range(subjects)]
    subj = np.repeat(ids, 2 * len(views))
    typ = np.tile(np.repeat(["00", "01"], len(views)), subjects)
    vw = np.tile(views * 2, subjects)
    keep = ~((typ == "01") & (rng.random(len(subj)) < 0.025))
    return subj[keep], typ[keep], vw[keep]


def casiab_labels(subjects: int):
    ev = get_protocol("casiab").evaluation
    types = ev.gallery_types + [t for ts in ev.probe_sets.values() for t in ts]
    rows = [(f"{75 + s:03d}", t, v) for s in range(subjects) for t in types for v in ev.views]
    return tuple(np.array(c) for c in zip(*rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", default="oumvlp,casiab")
    args = ap.parse_args()
    dev = torch.device(args.device)
    rng = np.random.default_rng(0)
    out = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
           "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
           "cases": {}}
    for case in args.cases.split(","):
        if case == "oumvlp":
            labels = oumvlp_labels(200 if args.small else 5154, rng)
            shape, proto = (256, 16), get_protocol("oumvlp")
        else:
            labels = casiab_labels(10 if args.small else 50)
            shape, proto = (256, 62), get_protocol("casiab")
        base = rss_mb()
        emb = rng.standard_normal((len(labels[0]), *shape), dtype=np.float32)
        inputs_mb = rss_mb() - base
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        report = evaluate(proto, emb, *labels, device=str(dev))  # warm-up
        times, timings = [], None
        for _ in range(args.repeat):
            t = time.perf_counter()
            report = evaluate(proto, emb, *labels, device=str(dev))
            times.append(time.perf_counter() - t)
            timings = report.timings
        out["cases"][case] = {
            "sequences": int(len(labels[0])), "shape": list(shape), "protocol": proto.describe(),
            "seconds_min": round(min(times), 4), "seconds_median": round(statistics.median(times), 4),
            "timings": timings, "metrics": report.metrics,
            "inputs_mb": round(inputs_mb, 1),
            "peak_host_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None,
        }
        del emb
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
