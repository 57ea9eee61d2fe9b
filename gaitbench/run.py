"""``gaitbench run``: train a method under a protocol, embed the test set, evaluate, record."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DataError, GaitbenchError


@dataclass
class RunSettings:
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

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {k: v for k, v in asdict(self).items() if k not in {"resume", "progress"}}


def select_rows(store, protocol) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training and test subjects; errors say what the protocol expected."""
    subjects = store.index["subject"].to_numpy().astype(str)
    present = sorted(set(subjects))
    train_ids, test_ids = protocol.split.ids("train", present), protocol.split.ids("test", present)
    if train_ids & test_ids:
        raise DataError(f"protocol {protocol.describe()}: subjects in both train and test: "
                        f"{sorted(train_ids & test_ids)[:10]}")
    train = np.flatnonzero(np.isin(subjects, sorted(train_ids)))
    test = np.flatnonzero(np.isin(subjects, sorted(test_ids)))
    for name, rows, spec in (("training", train, protocol.split.train), ("test", test, protocol.split.test)):
        if len(rows) == 0:
            raise DataError(
                f"the {name} split of protocol {protocol.describe()} selects no sequences: it expects subjects "
                f"{_summarise(list(spec))}, the dataset at {store.root} has {_summarise(present)}; "
                "pass --partition with an OpenGait-style JSON to choose the split")
    return train, test


def _summarise(ids: list[str]) -> str:
    if len(ids) <= 6:
        return ", ".join(ids) or "none"
    return f"{len(ids)} ids ({ids[0]} ... {ids[-1]})"


def default_frame_budget(device: str) -> int:
    """Frames per inference batch when the recipe leaves it at 0. A GPU wants large batches; a
    CPU is fastest with small ones whose activations stay in cache (measured on 2 cores: the
    paper networks embed 80-frame sequences about 1.45x faster one per forward than 16 per
    forward, the quick variants 12-frame sequences 1.1-1.5x faster at 128 frames than at 4096)."""
    return 4096 if str(device).startswith("cuda") else 128


def prefetched(items, depth: int = 2):
    """Iterate ``items`` while a background thread produces up to ``depth`` ahead (the host's
    reading and padding overlaps the device's work). An exception in the producer is raised here,
    at the item where it happened; stopping early stops the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer
            put((False, exc))
            return
        put((True, done))

    thread = threading.Thread(target=produce, name="gaitbench-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def embed(model, store, rows: np.ndarray, *, device: str = "cpu", max_frames_per_batch: int = 0,
          max_sequences: int = 64, progress: bool = True, skipped: dict | None = None) -> np.ndarray:
    """Embeddings ``[len(rows), C, P]`` float32 of whole sequences, in the order of ``rows``.

    ``max_frames_per_batch``: frames per forward (0: :func:`default_frame_budget` of ``device``);
    a sequence longer than the budget is embedded alone.

    ``skipped``: a dict to collect sequences that cannot be read (``{row: reason}``) instead of
    stopping; their rows of the result are zeros and must be left out by the caller."""
    import torch
    from tqdm.auto import tqdm

    from .data.sampling import sequence_batches
    from .nn import host_to_device

    model.eval()
    dev = torch.device(device)
    max_frames_per_batch = max_frames_per_batch or default_frame_budget(device)
    position = {int(r): i for i, r in enumerate(rows)}
    out: np.ndarray | None = None
    done = 0
    # uint8 frames travel to the device (a quarter of the bytes) and are scaled there; on CUDA the
    # next batch is read and padded by a thread while the device computes this one.
    batches = sequence_batches(store, rows, max_frames_per_batch, max_sequences, skipped=skipped, raw=True)
    if dev.type == "cuda":
        batches = prefetched(batches)
    with torch.inference_mode(), tqdm(total=len(rows), desc="embedding", unit="seq", disable=not progress,
                                      dynamic_ncols=True) as bar:
        for batch_rows, frames, lengths in batches:
            x = host_to_device(frames, dev).float().mul_(1.0 / 255.0)
            lens = host_to_device(lengths, dev)
            emb = model(x, lengths=lens)["embeddings"].float().cpu().numpy()
            if out is None:
                out = np.empty((len(rows), *emb.shape[1:]), np.float32)
            out[[position[int(r)] for r in batch_rows]] = emb
            done += len(batch_rows)
            bar.update(len(batch_rows))
    missing = len(rows) - done - len(skipped or {})
    if out is None or missing:
        raise GaitbenchError(f"embedded {done} of {len(rows)} sequences ({len(skipped or {})} unreadable)")
    return out


def save_embeddings(path: str | Path, embeddings: np.ndarray, index, rows, probe_set=(), **meta) -> Path:
    """The embeddings file of DESIGN.md: ``embeddings`` plus ``subjects``, ``types``, ``views``;
    ``probe_set`` (the partition's PROBE_SET, Gait3D) is kept so ``evaluate`` needs no partition."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sel = index.iloc[rows]
    extra = {"probe_set": np.asarray(list(probe_set), dtype=str)} if len(probe_set) else {}
    np.savez(path, embeddings=embeddings, subjects=sel["subject"].to_numpy().astype(str),
             types=sel["type"].to_numpy().astype(str), views=sel["view"].to_numpy().astype(str),
             **extra, **{k: np.asarray(str(v)) for k, v in meta.items()})
    return path


def load_store(settings: RunSettings, protocol, dist, echo, input_size: tuple[int, int] | None = None):
    from .data.store import open_store
    from .data.synthetic import LAYOUTS, SynthSpec, ensure_synthetic

    if settings.data_root is not None:
        store = open_store(settings.data_root)
        if store.meta.get("dataset") in (None, "unknown"):
            store.meta["dataset"] = protocol.dataset
        echo(f"data: {store.root} ({len(store)} sequences{', SYNTHETIC' if store.synthetic else ''})")
        return store
    if protocol.dataset not in LAYOUTS:
        raise DataError(f"protocol {protocol.describe()} needs dataset {protocol.dataset!r}, which has no "
                        f"built-in synthetic layout yet; pass --data-root")
    spec = SynthSpec(layout=protocol.dataset, seed=0,
                     subjects=settings.synth_subjects or LAYOUTS[protocol.dataset].subjects,
                     height=input_size[0] if input_size else 64)
    echo(f"data: SYNTHETIC {protocol.dataset} (gaitbench walker v{spec.generator_info()['version']}, "
         f"{spec.subjects} subjects, seed {spec.seed}) - not real data; numbers are not comparable with papers")
    if not dist.is_main:  # rank 0 generates, the others wait and open the cache
        dist.barrier()
    store = ensure_synthetic(spec, progress=settings.progress and dist.is_main)
    if dist.is_main:
        dist.barrier()
    return store


def default_recipe(method, protocol, *, synthetic: bool) -> str:
    """``quick`` on the built-in synthetic data; on real data the method's paper recipe for the
    protocol, else for the protocol's dataset (``casiab-crossview`` trains as ``casiab``), else the
    one recipe that declares the protocol in its ``protocols`` (``hid2020`` for ``hid``)."""
    if synthetic:
        return "quick"
    from .training.recipe import recipes_for_protocol

    names = method.recipe_names()
    for name in (protocol.name, protocol.dataset):
        if name in names:
            return name
    declared = recipes_for_protocol(method, protocol)
    if len(declared) == 1:
        return declared[0]
    if declared:
        raise GaitbenchError(f"method {method.name!r} has several recipes for protocol {protocol.name!r} "
                             f"({', '.join(declared)}): choose one with --recipe NAME")
    raise GaitbenchError(f"method {method.name!r} has no recipe for protocol {protocol.name!r} or dataset "
                         f"{protocol.dataset!r} (it has {', '.join(names)}): choose one with --recipe NAME|FILE")


def declared_input_size(method, variant: str, recipe) -> tuple[int, int] | None:
    """The silhouette size (height, width) the variant declares (``input_size`` in its keyword
    arguments, or the recipe's ``[model]``), or None when it declares none."""
    size = recipe.model.get("input_size", method.variant_kwargs(variant).get("input_size"))
    return (int(size[0]), int(size[1])) if size else None


def check_input_size(store, input_size, method, variant: str) -> None:
    """Refuse, before training, a dataset whose silhouettes (after the reference's side cut) are
    not the size the variant declares."""
    if input_size is None or len(store) == 0:
        return
    from .data.store import cut_sides

    if "height" in store.index and "width" in store.index:
        sizes = set(zip(store.index["height"].astype(int), store.index["width"].astype(int)))
    else:
        try:
            sizes = {tuple(store.frames(0).shape[1:])}
        except DataError:
            return  # an unreadable first sequence is reported where it is read
    seen = {(h, cut_sides(np.zeros((1, h, w), np.uint8)).shape[-1]) for h, w in sizes}
    if seen != {tuple(input_size)}:
        got = ", ".join(f"{h}x{w}" for h, w in sorted(seen))
        raise GaitbenchError(
            f"{method.name} [{variant}] expects {input_size[0]}x{input_size[1]} silhouettes, but the dataset at "
            f"{store.root} gives {got} (after the side cut): pretreat the data at that height "
            f"(gaitbench data pretreat --img-size {input_size[0]}) or, for synthetic data, "
            f"gaitbench data synth --height {input_size[0]}")


def probe_truth(protocol, store, path: str | None) -> tuple[dict[str, str] | None, str]:
    """The probes' identities of an identification protocol (HID): ``--truth`` if given, else the
    dataset's own ``probe_truth.csv`` (the synthetic HID set ships one), else none."""
    if protocol.evaluation.kind != "identification":
        if path:
            raise GaitbenchError(f"--truth scores identification protocols (hid); {protocol.describe()} has labelled "
                                 "probes")
        return None, ""
    from .data.store import PROBE_TRUTH_FILE
    from .evaluation.identification import read_truth

    if path:
        return read_truth(path), str(path)
    own = Path(store.root) / PROBE_TRUTH_FILE
    if own.is_file():
        return read_truth(own), str(own)
    return None, ""


def initialise_from(model, path: str, method, model_kwargs: dict, say, apply: bool = True) -> dict[str, Any]:
    """Load the pre-trained weights at ``path`` into ``model`` (see
    :func:`gaitbench.training.checkpoint.load_pretrained`); returns what the run record keeps."""
    from .training.checkpoint import file_sha256, load_pretrained, read_checkpoint

    pre = read_checkpoint(path)
    if pre["method"] != method.name:
        raise GaitbenchError(f"--init-from {path} holds method {pre['method']!r}; this run trains {method.name!r}")
    info: dict[str, Any] = {"mode": "init-from", "path": str(path), "sha256": file_sha256(path),
                            "method": pre["method"], "variant": pre["variant"], "protocol": pre.get("protocol") or None,
                            "iteration": int(pre["iteration"])}
    if not apply:  # a resumed run: its checkpoint already holds the weights that started from these
        return info
    arg = method.class_count_arg
    classes = None
    if arg:
        known = {**method.variant_kwargs(pre["variant"] if pre["variant"] in method.variants else None),
                 **(pre.get("model_kwargs") or {})}
        classes = (int(known.get(arg, model_kwargs.get(arg, 0))), int(model_kwargs.get(arg, 0)))
    loaded = load_pretrained(model, pre["model"], str(path), classes=classes)
    info.update(loaded)
    where = f" under {pre['protocol']}" if pre.get("protocol") else ""
    fresh = (f"; re-initialised {', '.join(loaded['reinitialised'])} (classes {classes[0]} -> {classes[1]})"
             if loaded["reinitialised"] else "")
    say(f"initialised from {path} ({pre['method']} [{pre['variant']}] trained{where}, iteration {pre['iteration']}): "
        f"{loaded['loaded']} tensors loaded{fresh}")
    return info


def _out_dir(settings: RunSettings, method, protocol, dist) -> Path:
    if settings.out:
        return Path(settings.out)
    name = [str(Path("runs") / f"{method.name}-{protocol.name}-{time.strftime('%Y%m%d-%H%M%S')}")]
    if dist.enabled:  # every rank must use rank 0's name
        import torch.distributed as td

        td.broadcast_object_list(name, src=0)
    return Path(name[0])


def execute(settings: RunSettings, plugins=None, echo: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Run the whole job; returns the run record that is also written to ``OUT/result.json``
    (None on ranks other than 0 of a distributed run, and for ``train_only``)."""
    from . import __version__
    from .config import to_dict
    from .data.sampling import TripletSampler
    from .evaluation.engine import evaluate
    from .plugins import get_plugins
    from .evaluation.pipeline import resolve_stages
    from .protocols import resolve_protocol, resolve_split
    from .results import describe_metrics, report_table, write_json_atomic
    from .training.checkpoint import read_checkpoint
    from .training.distributed import from_environment, gather_rows
    from .training.recipe import resolve_recipe
    from .training.trainer import Trainer, check_resumable, find_resume_checkpoint, seed_everything

    plugins = plugins or get_plugins()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    method = plugins.method(settings.method)
    protocol = resolve_protocol(settings.protocol, plugins)
    recipe_name = settings.recipe or default_recipe(method, protocol, synthetic=settings.data_root is None)
    recipe = resolve_recipe(method, recipe_name, settings.overrides, protocol=protocol)
    iterations = recipe.train.iterations if settings.iterations is None else settings.iterations
    if iterations < 0:
        raise GaitbenchError("--iterations must be >= 0")
    variant = recipe.variant or method.default_variant
    input_size = declared_input_size(method, variant, recipe)  # also fails early on an unknown variant
    if settings.checkpoint and settings.init_from:
        raise GaitbenchError("--checkpoint (these very weights, same method and variant) and --init-from (pre-trained "
                             "weights to fine-tune) exclude each other: give one")
    stages = resolve_stages(list(recipe.eval.stages) + list(settings.stages), recipe.stages, plugins)

    import torch

    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise GaitbenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    dist = from_environment(settings.device)
    device = settings.device
    if dist.enabled and device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    say = echo if dist.is_main else (lambda s: None)

    # -- data
    t = time.perf_counter()
    store = load_store(settings, protocol, dist, say, input_size)
    check_input_size(store, input_size, method, variant)
    protocol = resolve_split(protocol, store, settings.partition)
    train_rows, test_rows = select_rows(store, protocol)
    truth, truth_source = probe_truth(protocol, store, settings.truth)
    timings["data_s"] = round(time.perf_counter() - t, 3)

    out_dir = _out_dir(settings, method, protocol, dist)
    existing = sorted((out_dir / "checkpoints").glob("*.pt"))
    if existing and not settings.resume:
        raise GaitbenchError(f"{out_dir} already holds a run ({existing[-1].name}); continue it with --resume "
                             "or choose another --out")
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "run_settings.json", settings.to_dict())

    # -- model and training
    seed_everything(settings.seed, settings.deterministic)
    model_kwargs = dict(recipe.model)
    initial = None
    if settings.checkpoint:
        initial = read_checkpoint(settings.checkpoint)
        if initial["method"] != method.name or initial["variant"] != variant:
            raise GaitbenchError(f"{settings.checkpoint} holds {initial['method']} [{initial['variant']}], but this run "
                                 f"builds {method.name} [{variant}] (choose the recipe or --set variant=...)")
        model_kwargs.update(initial.get("model_kwargs") or {})
    if method.class_count_arg:
        n_train = len(set(store.index["subject"].to_numpy()[train_rows]))
        classes = model_kwargs.setdefault(method.class_count_arg, n_train)
        if int(classes) < n_train and iterations > 0:  # evaluating given weights needs no classifier
            raise GaitbenchError(f"the classifier has {method.class_count_arg} = {classes} classes, fewer than the "
                                 f"{n_train} training subjects of {protocol.describe()}: leave it unset (the run uses "
                                 f"the number of training subjects) or set it to at least {n_train}")
    model = method.create(variant, **model_kwargs)
    initial_weights = None
    if initial is not None:
        from .training.checkpoint import file_sha256, load_state_strict

        load_state_strict(model, initial["model"], settings.checkpoint)
        initial_weights = {"mode": "checkpoint", "path": str(settings.checkpoint),
                           "sha256": file_sha256(settings.checkpoint)}
    if settings.init_from:
        initial_weights = initialise_from(model, settings.init_from, method, model_kwargs, say,
                                          apply=not settings.resume)
    elif recipe.pretraining.recipe and initial is None and not settings.resume:
        say(f"note: recipe {recipe.name} is meant to fine-tune a model trained with recipe "
            f"{recipe.pretraining.recipe} under protocol {recipe.pretraining.protocol} (gaitbench run --method "
            f"{method.name} --protocol {recipe.pretraining.protocol} --recipe {recipe.pretraining.recipe}, then "
            "--init-from RUN/checkpoints/final.pt); training from scratch")
    model = model.to(device)
    from .nn import parameter_count

    parameters = parameter_count(model)
    say(f"method: {method.name} (variant {variant}{', REDUCED for CPU - not the paper network' if variant == 'quick' else ''}, "
        f"{parameters:,} parameters); recipe {recipe.name}; protocol {protocol.describe()}; "
        f"{len(train_rows)} training / {len(test_rows)} test sequences; {iterations} iterations on {device}"
        f"{f' x {dist.world_size} processes' if dist.enabled else ''}")
    s = recipe.sampler
    if dist.enabled and (s.P * s.K) % dist.world_size:
        raise GaitbenchError(f"P x K = {s.P * s.K} must be divisible by the {dist.world_size} processes")
    sampler = TripletSampler(store, train_rows, s.P, s.K, s.frames, s.order, s.skip, seed=settings.seed,
                             min_frames=s.min_frames, workers=settings.workers, strict=settings.strict)
    if sampler.left_out:
        say(f"left out of training: {len(sampler.left_out)} sequences shorter than {s.min_frames} frames "
            f"(sampler.min_frames), e.g. {sampler.problems()['examples'][0]}")
    trainer = Trainer(model, recipe, sampler, method=method, variant=variant, device=device, plugins=plugins,
                      out_dir=out_dir, progress=settings.progress, data_fingerprint=store.fingerprint,
                      model_kwargs=model_kwargs, dist=dist, echo=say, protocol=protocol.name)
    resumed_from = None
    if settings.resume:
        ckpt_path = find_resume_checkpoint(out_dir)
        payload = read_checkpoint(ckpt_path)
        check_resumable(payload, method=method.name, variant=variant, fingerprint=store.fingerprint, recipe=recipe,
                        source=str(ckpt_path))
        trainer.restore(payload, str(ckpt_path))
        resumed_from = {"checkpoint": str(ckpt_path), "iteration": trainer.step}
        say(f"resuming from {ckpt_path} (iteration {trainer.step})")
    t = time.perf_counter()
    try:
        history = trainer.train(iterations)
    finally:
        sampler.close()
    timings["train_s"] = round(time.perf_counter() - t, 3)
    if sampler.skipped:
        say(f"WARNING: {len(sampler.skipped)} training sequences could not be read and were replaced by another "
            f"of the same subject, e.g. {sampler.problems()['examples'][-1]} (--strict makes this an error)")
    ckpt = trainer.save("final")
    if settings.train_only:
        say(f"training done: {ckpt}")
        return None

    # -- embed and evaluate (model selection is explicit: the final weights)
    t = time.perf_counter()
    local_rows = test_rows[dist.rank::dist.world_size]
    unreadable: dict[int, str] = {}
    emb = embed(model, store, local_rows, device=device, max_frames_per_batch=recipe.eval.max_frames_per_batch,
                max_sequences=recipe.eval.max_sequences_per_batch, progress=settings.progress and dist.is_main,
                skipped=None if settings.strict else unreadable)
    emb = gather_rows(local_rows, emb, test_rows, dist)
    if dist.enabled:
        import torch.distributed as td

        parts: list = [None] * dist.world_size
        td.all_gather_object(parts, unreadable)
        unreadable = {k: v for part in parts for k, v in part.items()}
    timings["embed_s"] = round(time.perf_counter() - t, 3)
    if not dist.is_main:
        return None
    if unreadable:
        keep = ~np.isin(test_rows, list(unreadable))
        emb, test_rows = emb[keep], test_rows[keep]
        say(f"WARNING: {len(unreadable)} test sequences could not be read and are left out of the evaluation, e.g. "
            f"{store.describe_row(next(iter(unreadable)))}: {next(iter(unreadable.values()))} "
            "(--strict makes this an error)")
    save_embeddings(out_dir / "embeddings.npz", emb, store.index, test_rows, method=method.name,
                    protocol=protocol.name, synthetic=store.synthetic, dataset_fingerprint=store.fingerprint,
                    probe_set=protocol.split.probe_set, metric=recipe.eval.metric or protocol.evaluation.metric)
    labels = store.index.iloc[test_rows]
    report = evaluate(protocol, emb, labels["subject"], labels["type"], labels["view"], device=device,
                      stages=stages, metric=recipe.eval.metric or None, truth=truth, truth_source=truth_source)
    submission = None
    if report.predictions is not None:
        from .evaluation.identification import write_predictions

        submission = str(write_predictions(out_dir / "submission.csv", protocol.evaluation, report.predictions))
    timings["evaluate_s"] = report.timings["evaluate_s"]
    timings["evaluation"] = report.timings
    plugins.evaluate_end(settings, report)
    timings["total_s"] = round(time.perf_counter() - t0, 3)

    plugin_info = plugins.infos.get(plugins.methods()[method.name].plugin)
    result = {
        "method": method.name,
        "variant": variant,
        "recipe": recipe.name,
        "protocol": protocol.name,
        "protocol_version": protocol.version,
        "split": {"train": protocol.split.train, "test": protocol.split.test,
                  "partition": protocol.split.source if protocol.split.partition else None,
                  "probe_set": len(protocol.split.probe_set) or None},
        "dataset": store.describe(),
        "config": to_dict(recipe),
        "seed": settings.seed,
        "deterministic": settings.deterministic,
        "iterations": trainer.step,
        "device": device,
        "world_size": dist.world_size,
        "global_batch": s.P * s.K,
        "precision": trainer.precision,
        "parameters": parameters,
        "metrics": report.metrics,
        "tables": report.tables,
        "timings": timings,
        "versions": {
            "gaitbench": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "plugin": {"name": plugin_info.name, "distribution": plugin_info.distribution,
                       "version": plugin_info.version} if plugin_info else None,
        },
        "stages": report.stages,
        "data_problems": {
            "training": sampler.problems(),
            "test_unreadable": len(unreadable),
            "test_examples": [f"{store.describe_row(r)}: {why}" for r, why in list(unreadable.items())[:5]],
        },
        "training": {"final": history[-1] if history else None, "resumed_from": resumed_from,
                     "initial_checkpoint": settings.checkpoint, "initial_weights": initial_weights},
        "evaluated_checkpoint": str(ckpt),
        "checkpoint": str(ckpt),
    }
    if protocol.evaluation.kind == "identification":
        result["submission"] = {"path": submission, "truth": truth_source if truth is not None else None}
    write_json_atomic(out_dir / "result.json", result)
    header = (f"{method.name} [{variant}] on {protocol.describe()} - {describe_metrics(protocol)}"
              f"{' - SYNTHETIC DATA' if store.synthetic else ''}"
              f"{'; stages: ' + ', '.join(s['name'] for s in report.stages) if report.stages else ''}")
    echo("")
    echo(header)
    echo(report_table(report))
    if submission:
        echo(f"submission written to {submission}" + ("" if truth is not None else
             " (no truth file: the probes' identities are unknown, so there is no score; --truth FILE scores it)"))
    echo(f"\nrun written to {out_dir}/result.json ({timings['total_s']:.0f} s)")
    return result
