"""``gaitbench run`` and ``gaitbench train``: the steps of :mod:`gaitbench.steps` in order."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .errors import GaitbenchError

__all__ = ["RunSettings", "execute"]


@dataclass
class RunSettings:
    """Everything ``gaitbench run`` / ``train`` are asked to do (the command line, as data)."""

    method: str
    protocol: str
    data_root: str | None = None
    partition: str | None = None
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    iterations: int | None = None
    device: str = "cpu"
    seed: int = 0
    out: str | None = None
    progress: bool = True
    synth_subjects: int | None = None  # a smaller synthetic set (tests, quick looks)
    resume: bool = False  # continue the run in `out` from its last checkpoint
    deterministic: bool = False  # torch's deterministic algorithms
    train_only: bool = False  # stop after training (`gaitbench train`)
    checkpoint: str | None = None  # initial weights (e.g. imported from OpenGait)
    init_from: str | None = None  # pre-trained weights of the same architecture (fine-tuning)
    truth: str | None = None  # identification protocols (HID): the probes' identities, videoID,label
    stages: list[str] = field(default_factory=list)  # post-processing stages, after the recipe's
    strict: bool = False  # an unreadable sequence stops the run instead of being reported and skipped
    workers: int = 0  # loader processes for training batches (the batches do not depend on it)
    smoke: bool = False  # a few iterations on a few synthetic subjects (gaitbench.smoke)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in {"resume", "progress"}}


def execute(settings: RunSettings, plugins=None, echo: Callable[[str], None] = print):
    """Run the whole job; returns the :class:`~gaitbench.results.record.RunRecord` also written to
    ``OUT/result.json`` (None on ranks other than 0 of a distributed run, and for ``train_only``).
    Without progress displays (``--quiet``), rank 0 writes one line per phase instead."""
    import os

    from .progress import phase_lines

    with phase_lines(not settings.progress and os.environ.get("RANK", "0") == "0"):
        return _execute(settings, plugins, echo)


def _execute(settings: RunSettings, plugins, echo: Callable[[str], None]):
    import torch

    from . import steps
    from .plugins import get_plugins
    from .progress import phase
    from .results.tables import print_run
    from .training.distributed import from_environment
    from .training.trainer import seed_everything

    plugins = plugins or get_plugins()
    started = time.perf_counter()
    if settings.smoke:
        from . import smoke

        settings = smoke.prepare(settings, plugins)
    plan = steps.plan_run(settings, plugins)
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise GaitbenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    dist = from_environment(settings.device)
    device = f"cuda:{dist.local_rank}" if dist.enabled and settings.device.startswith("cuda") else settings.device
    if device != settings.device:
        torch.cuda.set_device(device)
    say = echo if dist.is_main else (lambda s: None)
    if settings.smoke:
        say(smoke.banner(settings))

    t = time.perf_counter()
    store = steps.open_data(settings, plan, dist, say)
    selection = steps.select(store, plan.protocol, settings.partition, settings.truth)
    timings: dict[str, Any] = {"data_s": round(time.perf_counter() - t, 3)}
    seed_everything(settings.seed, settings.deterministic)
    built = steps.build_model(settings, plan, store, selection, device, say)
    if plan.iterations > 0:  # a batch that cannot fit is refused before anything is written
        steps.guard_batch_memory(plan.recipe.sampler, built.model, store, selection.train_rows, device, dist.world_size)
    out_dir = steps.run_directory(settings, plan.method, selection.protocol, dist)
    say(steps.describe_run(plan, selection, built, device, dist))
    training = steps.train(settings, plan, store, selection, built, device=device, dist=dist, out_dir=out_dir,
                           plugins=plugins, say=say)
    timings["train_s"] = training.seconds
    if settings.train_only:
        say(f"training done: {training.checkpoint}")
        return None

    # model selection is explicit: the final weights
    test = steps.embed_test_set(built.model, store, selection.test_rows, plan.recipe, device=device, dist=dist,
                                strict=settings.strict, progress=settings.progress, say=say)
    if test is None:  # not rank 0
        return None
    timings["embed_s"] = test.seconds
    steps.write_test_embeddings(out_dir / "embeddings.npz", test, store, selection, method=plan.method.name,
                                metric=plan.recipe.eval.metric or selection.protocol.evaluation.metric)
    with phase("evaluating", total=len(test.rows), unit="seq") as line:
        evaluation = steps.evaluate_test_set(test, store, plan, selection, device=device, out_dir=out_dir)
        line.update(len(test.rows))
    timings["evaluate_s"] = evaluation.report.timings["evaluate_s"]
    timings["evaluation"] = evaluation.report.timings
    plugins.evaluate_end(settings, evaluation.report)
    timings["total_s"] = round(time.perf_counter() - started, 3)
    run = steps.record(settings, plan, store, selection, built, training, test, evaluation, device=device, dist=dist,
                       plugins=plugins, timings=timings, out_dir=out_dir)
    print_run(run, evaluation.report, selection.protocol, out_dir, echo)
    if settings.smoke:
        echo(smoke.banner(settings))
    return run
