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


@dataclass(frozen=True)
class ThroughputCase:
    """A shape at which a method's speed is measured, registered through
    ``register_throughput_cases``. ``kind``: ``train`` (forward + loss + backward + optimizer step
    on ``P x K`` clips of ``frames``) or ``inference`` (``batch`` whole sequences of ``frames`` per
    forward). ``tiny`` gives the shapes of the CPU smoke run of the same case."""

    method: str
    name: str
    kind: str
    variant: str
    frames: int
    batch: int = 1  # inference: sequences per forward
    P: int = 8  # train: subjects x sequences per batch
    K: int = 16
    recipe: str | None = None  # whose optimizer settings a training step uses
    amp: str = "bf16"  # the precision the case is measured at on CUDA
    description: str = ""

    def __post_init__(self):
        if self.kind not in ("train", "inference"):
            raise ValueError(f"throughput case {self.id}: kind must be 'train' or 'inference', got {self.kind!r}")

    @property
    def id(self) -> str:
        return f"{self.method}/{self.name}"

    @classmethod
    def standard(cls, method: str, prefix: str, variant: str, *, P: int, K: int, frames: int = 30,
                 recipe: str | None = None, test_frames: int = 80) -> list["ThroughputCase"]:
        """The usual three cases of one network: a training step at the recipe's batch, and
        inference of one and of 16 packed ``test_frames``-frame sequences per forward."""
        return [
            cls(method, f"{prefix}-train", "train", variant, frames=frames, P=P, K=K, recipe=recipe or prefix,
                description=f"{variant} network, {P} x {K} clips of {frames} frames"),
            cls(method, f"{prefix}-infer-1x{test_frames}", "inference", variant, frames=test_frames, batch=1,
                description=f"{variant} network, one {test_frames}-frame sequence per forward"),
            cls(method, f"{prefix}-infer-16x{test_frames}", "inference", variant, frames=test_frames, batch=16,
                description=f"{variant} network, 16 packed {test_frames}-frame sequences per forward"),
        ]

    def tiny(self) -> "ThroughputCase":
        from dataclasses import replace

        return replace(self, frames=min(self.frames, 6), batch=min(self.batch, 2), P=2, K=2, amp="none")


def build_case(case: ThroughputCase, device: str = "cpu", *, compile: bool = False, channels_last: bool = False):
    """``(step, model, sequences_per_step)``: one call of ``step()`` is one timed step of the case,
    ending in a device synchronisation (what ``benchmark.pedantic`` times); an inference step
    returns the model's output."""
    import torch

    from .plugins import get_plugins
    from .training.recipe import Recipe, resolve_recipe

    method = get_plugins().method(case.method)
    recipe = resolve_recipe(method, case.recipe) if case.recipe else Recipe(name="bench")
    dev = torch.device(device)
    amp = case.amp if dev.type == "cuda" else "none"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    model = _prepare_model(method.create(case.variant).to(dev), channels_last)
    runner = torch.compile(model) if compile else model
    gen = torch.Generator().manual_seed(0)
    if case.kind == "train":
        step = train_step_fn(model, runner, recipe, case.P, case.K, case.frames, dev, amp, gen)
        n = case.P * case.K
    else:
        step = infer_fn(model, runner, case.batch, case.frames, dev, dtype, gen)
        n = case.batch

    def timed_step():
        out = step()
        _sync(dev)
        return out

    return timed_step, model, n


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
            warmup: int = 3, height: int = 64, width: int = 44, peak: float | None = None) -> dict[str, Any]:
    """Measure ``method`` (a registered Method) at its recipe's shapes (or the given ones)."""
    import numpy as np
    import torch

    from .nn import parameter_count

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GaitbenchError("--device cuda was asked for, but torch sees no CUDA device")
    if amp not in {"none", "bf16", "fp16"}:
        raise GaitbenchError(f"--amp must be none, bf16 or fp16, got {amp!r}")
    variant = variant or (recipe.variant if recipe and recipe.variant else method.default_variant)
    P, K = train_batch or ((recipe.sampler.P, recipe.sampler.K) if recipe else (8, 16))
    frames = frames or (recipe.sampler.frames if recipe else 30)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    model = _prepare_model(method.create(variant).to(dev), channels_last)
    runner = torch.compile(model) if compile else model
    params = parameter_count(model)
    gen = torch.Generator().manual_seed(0)
    record: dict[str, Any] = {
        "kind": "bench", "method": method.name, "variant": variant, "recipe": recipe.name if recipe else None,
        "device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "amp": amp, "compile": compile, "channels_last": channels_last,
        "torch": torch.__version__, "cuda": torch.version.cuda, "params": params,
        "shapes": {"train": [P * K, frames, height, width], "infer": [infer_batch, test_frames, height, width]},
        "steps": steps, "warmup": warmup,
    }

    # -- training step: forward + loss + backward + optimizer step
    from .training.recipe import Recipe

    train_step = train_step_fn(model, runner, recipe or Recipe(name="bench"), P, K, frames, dev, amp, gen,
                               height, width)
    sils = train_step.sils

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    train_step()
    _sync(dev)
    first = time.perf_counter() - t0
    times = _timed(train_step, dev, steps, max(0, warmup - 1))
    step_s = float(np.median(times))
    record["train"] = {"step_s": step_s, "seq_per_s": P * K / step_s, "frames_per_s": P * K * frames / step_s,
                       "first_step_s": first}
    if compile:
        record["train"]["compile_s"] = max(0.0, first - step_s)
    if dev.type == "cuda":
        record["train"]["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30

    # -- inference: packed batches of test-length sequences, and one sequence alone
    infer_batch_step = infer_fn(model, runner, infer_batch, test_frames, dev, dtype, gen, height, width)
    infer_one = infer_fn(model, runner, 1, test_frames, dev, dtype, gen, height, width)
    one = infer_one.x

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = _timed(infer_batch_step, dev, steps, warmup)
    batch_s = float(np.median(times))
    latency = float(np.median(_timed(infer_one, dev, steps, warmup)))
    flops = count_flops(model, one)
    record["inference"] = {"batch_s": batch_s, "seq_per_s": infer_batch / batch_s, "latency_s": latency,
                           "frames_per_s": infer_batch * test_frames / batch_s}
    if dev.type == "cuda":
        record["inference"]["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    record["gflops_per_sequence"] = flops / 1e9
    record["inference"]["achieved_tflops"] = flops * record["inference"]["seq_per_s"] / 1e12
    # training ~ 3x the forward FLOPs (forward + backward), at the training clip length
    train_flops = 3 * count_flops(model, sils[:1]) * P * K
    record["train"]["achieved_tflops"] = train_flops / step_s / 1e12
    # model FLOP utilisation: achieved over the device's dense bf16 peak
    peak = peak or peak_tflops(record["gpu"])
    record["peak_bf16_tflops"] = peak
    for section in ("train", "inference"):
        record[section]["mfu"] = record[section]["achieved_tflops"] / peak if peak else None
    return record


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
