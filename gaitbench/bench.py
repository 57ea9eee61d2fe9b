"""``gaitbench bench``: throughput, latency, memory, parameters and FLOPs, measured one way.

Follows timm's benchmark methodology: one synthetic input reused, warm-up steps, then timed steps
each ending in a device synchronisation; AMP dtype, memory format and compile mode recorded with
every figure. The record (``kind: "bench"``) is what leaderboards read for efficiency columns.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any


from .contracts import ThroughputCase
from .errors import GaitbenchError


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


@dataclass
class _Bench:
    """A model set up for timing: the bare module, what is called (compiled or not), the device,
    the precision (``amp`` and its autocast dtype) and a seeded generator for the random inputs."""

    model: Any
    runner: Any
    device: Any
    amp: str
    dtype: Any
    gen: Any


def _setup(method, variant: str, device: str, amp: str, *, compile: bool, channels_last: bool) -> _Bench:
    import torch

    dev = torch.device(device)
    model = _prepare_model(method.create(variant).to(dev), channels_last)
    runner = torch.compile(model) if compile else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return _Bench(model, runner, dev, amp, dtype, torch.Generator().manual_seed(0))


def build_case(case: ThroughputCase, method, device: str = "cpu", *, compile: bool = False,
               channels_last: bool = False):
    """``(step, model, sequences_per_step)`` for ``case`` of ``method`` (the registered Method):
    one call of ``step()`` is one timed step of the case, ending in a device synchronisation (what
    ``benchmark.pedantic`` times; an inference step returns the model's output). Inputs have the
    variant's silhouette size."""
    from .training.recipe import Recipe, resolve_recipe

    recipe = resolve_recipe(method, case.recipe) if case.recipe else Recipe(name="bench")
    amp = case.amp if str(device).startswith("cuda") else "none"  # a case's AMP is its GPU setting
    b = _setup(method, case.variant, device, amp, compile=compile, channels_last=channels_last)
    height, width = method.variant_input_size(case.variant)
    if case.kind == "train":
        step = train_step_fn(b.model, b.runner, recipe, case.P, case.K, case.frames, b.device, b.amp, b.gen,
                             height, width)
        n = case.P * case.K
    else:
        step = infer_fn(b.model, b.runner, case.batch, case.frames, b.device, b.dtype, b.gen, height, width)
        n = case.batch

    def timed_step():
        out = step()
        _sync(b.device)
        return out

    return timed_step, b.model, n


def _prepare_model(model, channels_last: bool):
    from .nn import to_channels_last

    return to_channels_last(model) if channels_last else model


class FixedBatch:
    """A sampler that hands out one fixed random P x K batch, as the loader would (uint8 frames
    and numpy labels on the host), so a timed step is the trainer's own step: upload, forward,
    the recipe's losses, backward, optimizer and scheduler."""

    def __init__(self, P: int, K: int, frames: int, height: int, width: int, gen):
        import numpy as np
        import torch

        from .data.sampling import TrainBatch

        sils = (torch.rand(P * K, frames, height, width, generator=gen) > 0.5).to(torch.uint8).mul_(255).numpy()
        labels = np.repeat(np.arange(P), K)
        self.batch = TrainBatch(sils, labels, np.arange(P * K), global_labels=labels)

    def next_batch(self, rank: int = 0, world_size: int = 1):
        return self.batch

    def state_dict(self) -> dict:
        return {}


def train_step_fn(model, runner, recipe, P: int, K: int, frames: int, dev, amp: str, gen, height: int = 64,
                  width: int = 44):
    """One step of gaitbench's :class:`~gaitbench.training.trainer.Trainer` on a fixed random
    batch at ``amp`` precision (``none``, ``bf16``, ``fp16`` with a gradient scaler)."""
    from dataclasses import replace

    import torch

    from .training.trainer import Trainer

    recipe = replace(recipe, train=replace(recipe.train, amp=amp))
    trainer = Trainer(model, recipe, FixedBatch(P, K, frames, height, width, gen), device=str(dev), progress=False)
    trainer.train_model = runner
    model.train()

    def step():
        trainer.train_step(check_now=False)

    step.sils = torch.from_numpy(trainer.sampler.batch.sils).to(dev).float().div_(255)
    step.trainer = trainer
    return step


def infer_fn(model, runner, batch: int, frames: int, dev, dtype, gen, height: int = 64, width: int = 44):
    """One inference forward of ``batch`` whole sequences (a packed batch with lengths); the step
    returns the model's output."""
    import torch

    x = (torch.rand(batch, frames, height, width, generator=gen) > 0.5).float().to(dev)
    lengths = torch.full((batch,), frames, dtype=torch.long, device=dev)
    model.eval()

    def step():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return runner(x, lengths=lengths if batch > 1 else None)

    step.x = x
    return step


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the first key
# found in torch's device name counts (the SXM parts are plain "H100 80GB HBM3" / "H200").
# Unknown devices: pass --peak-tflops.
BF16_PEAK_TFLOPS = {"H200 NVL": 835.0, "H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,
                    "A100": 312.0}


def peak_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by name (``None`` when unknown or not a GPU)."""
    for key, value in BF16_PEAK_TFLOPS.items():
        if device_name and key.lower() in device_name.lower():
            return value
    return None


def count_flops(model, sils) -> int:
    """FLOPs of one forward pass (torch's flop counter: matmuls and convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(sils)
    return int(counter.get_total_flops())


def measure(method, *, variant: str | None = None, recipe=None, device: str = "cpu", amp: str = "none",
            compile: bool = False, channels_last: bool = False, train_batch: tuple[int, int] | None = None,
            frames: int | None = None, test_frames: int = 80, infer_batch: int = 16, steps: int = 10,
            warmup: int = 3, peak: float | None = None) -> dict[str, Any]:
    """Measure ``method`` (a registered Method) at its recipe's shapes (or the given ones), on
    silhouettes of the variant's declared ``input_size``."""
    import torch

    from .nn import parameter_count
    from .training.recipe import Recipe

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GaitbenchError("--device cuda was asked for, but torch sees no CUDA device")
    if amp not in {"none", "bf16", "fp16"}:
        raise GaitbenchError(f"--amp must be none, bf16 or fp16, got {amp!r}")
    variant = variant or (recipe.variant if recipe and recipe.variant else method.default_variant)
    P, K = train_batch or ((recipe.sampler.P, recipe.sampler.K) if recipe else (8, 16))
    frames = frames or (recipe.sampler.frames if recipe else 30)
    height, width = method.variant_input_size(variant)
    b = _setup(method, variant, device, amp, compile=compile, channels_last=channels_last)
    record: dict[str, Any] = {
        "kind": "bench", "method": method.name, "variant": variant, "recipe": recipe.name if recipe else None,
        "device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "amp": amp, "compile": compile, "channels_last": channels_last,
        "torch": torch.__version__, "cuda": torch.version.cuda, "params": parameter_count(b.model),
        "shapes": {"train": [P * K, frames, height, width], "infer": [infer_batch, test_frames, height, width]},
        "steps": steps, "warmup": warmup,
    }
    record["train"], sils = _measure_training(b, recipe or Recipe(name="bench"), P, K, frames, (height, width),
                                              steps, warmup, compile)
    record["inference"], one = _measure_inference(b, infer_batch, test_frames, (height, width), steps, warmup)
    _add_flops(record, b.model, sils, one, P * K)
    peak = peak or peak_tflops(record["gpu"])  # model FLOP utilisation: achieved over the dense bf16 peak
    record["peak_bf16_tflops"] = peak
    for section in ("train", "inference"):
        record[section]["mfu"] = record[section]["achieved_tflops"] / peak if peak else None
    return record


def _measure_training(b: _Bench, recipe, P: int, K: int, frames: int, size: tuple[int, int], steps: int, warmup: int,
                      compile: bool):
    """The training step (forward + loss + backward + optimizer step): ``(figures, a batch)``."""
    import numpy as np
    import torch

    train_step = train_step_fn(b.model, b.runner, recipe, P, K, frames, b.device, b.amp, b.gen, *size)
    if b.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(b.device)
    t0 = time.perf_counter()
    train_step()
    _sync(b.device)
    first = time.perf_counter() - t0
    step_s = float(np.median(_timed(train_step, b.device, steps, max(0, warmup - 1))))
    out = {"step_s": step_s, "seq_per_s": P * K / step_s, "frames_per_s": P * K * frames / step_s,
           "first_step_s": first}
    if compile:
        out["compile_s"] = max(0.0, first - step_s)
    if b.device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(b.device) / 2**30
    return out, train_step.sils


def _measure_inference(b: _Bench, batch: int, frames: int, size: tuple[int, int], steps: int, warmup: int):
    """Packed batches of test-length sequences, and one sequence alone: ``(figures, one input)``."""
    import numpy as np
    import torch

    batch_step = infer_fn(b.model, b.runner, batch, frames, b.device, b.dtype, b.gen, *size)
    one = infer_fn(b.model, b.runner, 1, frames, b.device, b.dtype, b.gen, *size)
    if b.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(b.device)
    batch_s = float(np.median(_timed(batch_step, b.device, steps, warmup)))
    latency = float(np.median(_timed(one, b.device, steps, warmup)))
    out = {"batch_s": batch_s, "seq_per_s": batch / batch_s, "latency_s": latency,
           "frames_per_s": batch * frames / batch_s}
    if b.device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(b.device) / 2**30
    return out, one.x


def _add_flops(record: dict[str, Any], model, train_sils, one, train_sequences: int) -> None:
    """GFLOPs per test sequence and the achieved TFLOP/s of both sections (training counted as
    3x the forward FLOPs at the training clip length: forward + backward)."""
    flops = count_flops(model, one)
    record["gflops_per_sequence"] = flops / 1e9
    record["inference"]["achieved_tflops"] = flops * record["inference"]["seq_per_s"] / 1e12
    train_flops = 3 * count_flops(model, train_sils[:1]) * train_sequences
    record["train"]["achieved_tflops"] = train_flops / record["train"]["step_s"] / 1e12


def measure_loader(store, *, P: int, K: int, frames: int, order: str = "unordered", skip: int = 0,
                   min_frames: int = 1, workers: int = 0, steps: int = 10, warmup: int = 2) -> dict[str, Any]:
    """The training loader alone: P x K clips per batch drawn from ``store`` (an opened dataset)
    by the trainer's own sampler (``workers`` processes), as uint8 host arrays. Compare its
    sequences/s with the training step's: below it, the device waits on the loader."""
    import numpy as np

    from .data.sampling import TripletSampler

    rows = np.arange(len(store.index))
    sampler = TripletSampler(store, rows, P, K, frames, order, skip, seed=0, min_frames=min_frames, workers=workers)
    try:
        t0 = time.perf_counter()
        for _ in range(max(1, warmup)):  # the first batch also starts the worker pool
            sampler.next_batch()
        startup = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            batch = sampler.next_batch()
            times.append(time.perf_counter() - t)
    finally:
        sampler.close()
    # with workers the batches were loaded ahead, in parallel: the mean wait is the rate
    batch_s = float(np.mean(times))
    return {"data": str(store.root), "store": type(store).__name__, "workers": workers, "batch": [P * K, frames],
            "batch_s": batch_s, "seq_per_s": P * K / batch_s, "frames_per_s": P * K * frames / batch_s,
            "batch_mb": batch.sils.nbytes / 2**20, "startup_s": startup, "steps": steps}
