"""The flow of a run as named steps, in the order the data moves::

    plan -> open data -> select -> build model -> train -> embed -> evaluate -> record

Each step is a short function with explicit inputs and a small typed result; ``gaitbench run``
(:func:`gaitbench.run.execute`), ``train``, ``embed`` and ``evaluate`` are thin compositions of
them. Nothing here prints directly: steps that have something to tell the user take ``say``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .errors import ConfigError, DataError, GaitbenchError

if TYPE_CHECKING:  # pragma: no cover
    from .contracts import Method
    from .protocols import Protocol
    from .training.recipe import Recipe

Say = Callable[[str], None]


# --------------------------------------------------------------------------- plan


@dataclass
class Plan:
    """What a run will do, settled before any data is read: method, protocol, recipe, variant,
    iterations, the variant's silhouette size and the evaluation stages."""

    method: "Method"
    protocol: "Protocol"
    recipe: "Recipe"
    variant: str
    iterations: int
    input_size: tuple[int, int] | None
    stages: list = field(default_factory=list)


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


def plan_run(settings, plugins) -> Plan:
    """Resolve names and options into a :class:`Plan`; every mistake in them is reported here,
    before data is read or anything is written."""
    from .evaluation.pipeline import resolve_stages
    from .protocols import resolve_protocol
    from .training.recipe import resolve_recipe

    method = plugins.method(settings.method)
    protocol = resolve_protocol(settings.protocol, plugins.protocols())
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
    stages = resolve_stages(list(recipe.eval.stages) + list(settings.stages), recipe.stages, plugins.stages())
    return Plan(method, protocol, recipe, variant, iterations, input_size, stages)


# --------------------------------------------------------------------------- open data


def open_data(settings, plan: Plan, dist, say: Say):
    """The dataset store: ``--data-root``, else the protocol's built-in synthetic set (rendered
    once into the cache); refused when its silhouettes are not the size the variant takes."""
    store = open_store(settings, plan.protocol, dist, say, plan.input_size)
    report_malformed(store, settings.strict, say)
    check_input_size(store, plan.input_size, plan.method, plan.variant)
    return store


def report_malformed(store, strict: bool, say: Say) -> None:
    """The store's malformed entries (what ``data check`` calls malformed in its index): an error
    under ``strict``, else a warning; :func:`select_rows` leaves them out, so no step reads them."""
    bad = getattr(store, "malformed", {})
    if not bad:
        return
    first = next(iter(bad))
    listing = f"{len(bad)} malformed sequences in {store.root}, e.g. {store.describe_row(first)}: {bad[first]}"
    if strict or len(bad) == len(store):
        raise DataError(listing + ("; every sequence is malformed" if len(bad) == len(store) else "") +
                        " (gaitbench data check lists them all)")
    say(f"WARNING: {listing}; they are left out of training and evaluation (--strict makes this an error; "
        "gaitbench data check lists them all)")


def open_store(settings, protocol, dist, say: Say, input_size: tuple[int, int] | None = None):
    """``--data-root``'s store, or the protocol's synthetic set of ``input_size`` silhouettes
    (rendered by rank 0 while the other processes wait)."""
    from .data.store import open_store
    from .data.synthetic import LAYOUTS, SynthSpec, ensure_synthetic

    if settings.data_root is not None:
        store = open_store(settings.data_root)
        if store.meta.get("dataset") in (None, "unknown"):
            store.meta["dataset"] = protocol.dataset
        say(f"data: {store.root} ({len(store)} sequences{', SYNTHETIC' if store.synthetic else ''})")
        return store
    if protocol.dataset not in LAYOUTS:
        raise DataError(f"protocol {protocol.describe()} needs dataset {protocol.dataset!r}, which has no "
                        f"built-in synthetic layout yet; pass --data-root")
    spec = SynthSpec(layout=protocol.dataset, seed=0, subjects=settings.synth_subjects or None,
                     height=input_size[0] if input_size else 64)
    say(f"data: SYNTHETIC {protocol.dataset} (gaitbench walker v{spec.generator_info()['version']}, "
        f"{spec.subjects} subjects, seed {spec.seed}) - not real data; numbers are not comparable with papers")
    if not dist.is_main:  # rank 0 generates, the others wait and open the cache
        dist.barrier()
    store = ensure_synthetic(spec, progress=settings.progress and dist.is_main, say=say)
    if dist.is_main:
        dist.barrier()
    return store


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


# --------------------------------------------------------------------------- select


@dataclass
class Selection:
    """The protocol with its split settled, the rows it selects, and (identification protocols)
    the probes' identities when known."""

    protocol: "Protocol"
    train_rows: np.ndarray
    test_rows: np.ndarray
    truth: dict[str, str] | None = None
    truth_source: str = ""


def select(store, protocol, partition: str | None = None, truth: str | None = None) -> Selection:
    """Settle the split (``--partition``, the dataset's own partition file...) and select the
    training and test rows."""
    from .protocols import resolve_split

    protocol = resolve_split(protocol, store, partition)
    train_rows, test_rows = select_rows(store, protocol)
    known, source = probe_truth(protocol, store, truth)
    return Selection(protocol, train_rows, test_rows, known, source)


def select_rows(store, protocol) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training and test subjects; errors say what the protocol expected."""
    subjects = store.index["subject"].to_numpy().astype(str)
    present = sorted(set(subjects))
    train_ids, test_ids = protocol.split.ids("train", present), protocol.split.ids("test", present)
    if train_ids & test_ids:
        raise DataError(f"protocol {protocol.describe()}: subjects in both train and test: "
                        f"{sorted(train_ids & test_ids)[:10]}")
    served = np.ones(len(subjects), bool)
    served[list(getattr(store, "malformed", {}))] = False  # never read (see report_malformed)
    train = np.flatnonzero(np.isin(subjects, sorted(train_ids)) & served)
    test = np.flatnonzero(np.isin(subjects, sorted(test_ids)) & served)
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


# --------------------------------------------------------------------------- build model


@dataclass
class BuiltModel:
    """The model on its device, the keyword arguments it was built with (recorded in checkpoints)
    and where its initial weights came from (None: fresh initialisation)."""

    model: Any
    kwargs: dict[str, Any]
    parameters: int
    initial_weights: dict[str, Any] | None = None


def build_model(settings, plan: Plan, store, selection: Selection, device: str, say: Say) -> BuiltModel:
    """Build the variant with the class count of the training split, then load ``--checkpoint``
    (these very weights) or ``--init-from`` (pre-trained weights to fine-tune)."""
    from .nn import parameter_count
    from .training.checkpoint import file_sha256, load_state_strict, read_checkpoint

    method, variant = plan.method, plan.variant
    kwargs = dict(plan.recipe.model)
    initial = None
    if settings.checkpoint:
        initial = read_checkpoint(settings.checkpoint)
        if initial["method"] != method.name or initial["variant"] != variant:
            raise GaitbenchError(f"{settings.checkpoint} holds {initial['method']} [{initial['variant']}], but this run "
                                 f"builds {method.name} [{variant}] (choose the recipe or --set variant=...)")
        kwargs.update(initial.get("model_kwargs") or {})
    _set_class_count(kwargs, method, store, selection, plan.iterations)
    model = method.create(variant, **kwargs)
    initial_weights = None
    if initial is not None:
        load_state_strict(model, initial["model"], settings.checkpoint)
        initial_weights = {"mode": "checkpoint", "path": str(settings.checkpoint),
                           "sha256": file_sha256(settings.checkpoint)}
    if settings.init_from:
        initial_weights = initialise_from(model, settings.init_from, method, kwargs, say, apply=not settings.resume)
    elif plan.recipe.pretraining.recipe and initial is None and not settings.resume:
        pre = plan.recipe.pretraining
        say(f"note: recipe {plan.recipe.name} is meant to fine-tune a model trained with recipe {pre.recipe} under "
            f"protocol {pre.protocol} (gaitbench run --method {method.name} --protocol {pre.protocol} --recipe "
            f"{pre.recipe}, then --init-from RUN/checkpoints/final.pt); training from scratch")
    model = model.to(device)
    return BuiltModel(model, kwargs, parameter_count(model), initial_weights)


def _set_class_count(kwargs: dict, method, store, selection: Selection, iterations: int) -> None:
    """The classifier's class count: the recipe's, else the number of training subjects."""
    if not method.class_count_arg:
        return
    n_train = len(set(store.index["subject"].to_numpy()[selection.train_rows]))
    classes = kwargs.setdefault(method.class_count_arg, n_train)
    if int(classes) < n_train and iterations > 0:  # evaluating given weights needs no classifier
        raise GaitbenchError(f"the classifier has {method.class_count_arg} = {classes} classes, fewer than the "
                             f"{n_train} training subjects of {selection.protocol.describe()}: leave it unset (the "
                             f"run uses the number of training subjects) or set it to at least {n_train}")


def initialise_from(model, path: str, method, model_kwargs: dict, say: Say, apply: bool = True) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- train


# what a run writes in its folder: a folder holding any of them holds a run (finished when it has
# result.json), whether or not its checkpoints are still there
RUN_FILES = ("result.json", "run_settings.json", "train_log.jsonl", "embeddings.npz", "checkpoints")
# settings a resumed run must share with the run it continues (the others say how long to train,
# where and how to evaluate; the recipe is compared with the checkpoint's own before training)
RESUME_FIXED = ("method", "protocol", "data_root", "partition", "seed", "deterministic", "checkpoint", "init_from",
                "synth_subjects")


def run_directory(settings, method, protocol, dist) -> Path:
    """The run's folder (``--out``, else ``runs/<method>-<protocol>-<time>``, one name for every
    process); refuses a folder that already holds a run unless resuming (and a resumed run whose
    settings differ from the saved ones), and a non-empty folder that is not a run, before
    anything is written; then records the settings in it."""
    from .io import write_json_atomic

    if settings.out:
        out_dir = Path(settings.out)
    else:
        name = [str(Path("runs") / f"{method.name}-{protocol.name}-{time.strftime('%Y%m%d-%H%M%S')}")]
        if dist.enabled:  # every rank must use rank 0's name
            import torch.distributed as td

            td.broadcast_object_list(name, src=0)
        out_dir = Path(name[0])
    check_run_directory(out_dir, settings)
    if dist.enabled:  # every process checks the folder before rank 0 writes into it (the same
        dist.barrier()  # files for all: a refusal is every rank's, so none waits here alone)
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not settings.resume:  # a resumed run records them once its checkpoint is accepted (train)
            write_json_atomic(out_dir / "run_settings.json", settings.to_dict())
    return out_dir


def check_run_directory(out_dir: Path, settings) -> None:
    """Refuse ``out_dir`` for ``settings`` (see :func:`run_directory`); changes nothing."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GaitbenchError(f"--out {out_dir} is a file; choose a folder for the run")
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not settings.resume:
        if held:
            existing = sorted((out_dir / "checkpoints").glob("*.pt"))
            what = ("a finished run (result.json)" if "result.json" in held
                    else f"a run ({existing[-1].name})" if existing else f"a run ({', '.join(held)})")
            raise GaitbenchError(f"{out_dir} already holds {what}; continue it with --resume or choose another "
                                 "--out (nothing was changed)")
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise GaitbenchError(f"--out {out_dir} holds files that are not a gaitbench run: choose a new or empty "
                                 "folder (nothing was changed)")
        return
    saved_path = out_dir / "run_settings.json"
    if not saved_path.is_file():
        return  # the checkpoint's own record is checked before training
    from .io import read_json

    saved, now = read_json(saved_path, "run's settings file"), settings.to_dict()
    if not isinstance(saved, dict):
        raise GaitbenchError(f"{saved_path} is not a run's settings file (expected a JSON object)")

    def same(key):
        a, b = saved.get(key), now.get(key)
        if key in ("data_root", "partition", "checkpoint", "init_from") and a and b:
            return Path(a).resolve() == Path(b).resolve()
        return a == b

    differ = [f"{k} {saved.get(k)!r} (now {now.get(k)!r})" for k in RESUME_FIXED if k in saved and not same(k)]
    if differ:
        raise GaitbenchError(f"cannot resume {out_dir}: it was started with {'; '.join(differ)}; a resumed run "
                             "continues with the settings it was started with (nothing was changed)")


def probe_forward(model, frame_shape: tuple[int, int], device: str, frames: int = 8) -> tuple[float, int]:
    """``(bytes of module outputs per input frame, parts of the embedding)`` from a forward of two
    clips of ``frames`` frames: what autograd keeps for the backward, at least. Measured on a copy
    of the model, in eval mode, without gradients and with the random state put back, so that the
    run is the same with or without it; ``(0, 1)`` when the forward fails (the contract checks
    report that)."""
    import torch

    kept: dict[int, int] = {}  # storage -> bytes: an in-place layer's output is counted once
    alive = []  # held until the end, so that no storage is freed and its address reused

    def hook(module, args, output):
        for t in (output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list))
                  else [output]):
            if isinstance(t, torch.Tensor):
                alive.append(t)
                storage = t.untyped_storage()
                kept[storage.data_ptr()] = storage.nbytes()

    import copy

    model = copy.deepcopy(model)  # the run's model is not called: its state stays exactly as built
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            out = model(torch.zeros(2, frames, *frame_shape, device=device))
        emb = out.get("embeddings") if isinstance(out, dict) else None
        parts = int(emb.shape[-1]) if isinstance(emb, torch.Tensor) and emb.ndim == 3 else 1
    except Exception:  # the model's own contract checks report a broken forward; no estimate here
        return 0.0, 1
    finally:
        for h in handles:
            h.remove()
    return sum(kept.values()) / (2 * frames), parts


def guard_batch_memory(sampler_cfg, model, store, rows, device: str, world_size: int = 1) -> None:
    """Refuse a training batch that cannot fit in memory (see
    :func:`gaitbench.data.sampling.check_batch_memory`) before any batch is drawn."""
    import numpy as np

    from .data.sampling import check_batch_memory
    from .data.store import cut_sides

    if not len(rows):
        return
    row = store.index.iloc[int(rows[0])]
    height, width = int(row.get("height", -1)), int(row.get("width", -1))
    if height <= 0 or width <= 0:  # a pkl tree: known once read
        try:
            height, width = store.frames(int(rows[0])).shape[1:]
        except (DataError, ValueError):
            return  # the sampler reports what it cannot read
    frame_shape = cut_sides(np.zeros((1, height, width), np.uint8)).shape[1:]
    per_frame, parts = probe_forward(model, frame_shape, device)
    check_batch_memory(sampler_cfg.P, sampler_cfg.K, sampler_cfg.frames, frame_shape,
                       activation_bytes_per_frame=per_frame, parts=parts, available=available_memory(device),
                       device=device, world_size=world_size)


def available_memory(device: str) -> int | None:
    """Free memory of ``device``: the GPU's free memory, or the host's available memory."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    from .io import available_memory as host_memory

    return host_memory()


@dataclass
class Training:
    """What training left: the trainer (step, precision), the logged history, the final
    checkpoint, where a resumed run started, and the training data's problems."""

    trainer: Any
    history: list[dict[str, float]]
    checkpoint: Path | None
    resumed_from: dict[str, Any] | None
    problems: dict[str, Any]
    seconds: float


def train(settings, plan: Plan, store, selection: Selection, built: BuiltModel, *, device: str, dist, out_dir: Path,
          plugins, say: Say) -> Training:
    """Sample P x K batches of the training rows and train for the plan's iterations (resuming
    from the run's last checkpoint with ``--resume``); writes the final checkpoint."""
    from .data.augment import Augmenter
    from .data.sampling import TripletSampler
    from .training.checkpoint import read_checkpoint
    from .training.trainer import Trainer, check_resumable, find_resume_checkpoint

    s = plan.recipe.sampler
    if dist.enabled and (s.P * s.K) % dist.world_size:
        raise GaitbenchError(f"P x K = {s.P * s.K} must be divisible by the {dist.world_size} processes")
    augment = Augmenter(plan.recipe.augment) if plan.recipe.augment.active else None
    sampler = TripletSampler(store, selection.train_rows, s.P, s.K, s.frames, s.order, s.skip, seed=settings.seed,
                             min_frames=s.min_frames, workers=settings.workers, strict=settings.strict,
                             augment=augment)
    if s.P > len(sampler.classes) and plan.iterations > 0:
        sampler.close()
        raise ConfigError(f"sampler.P = {s.P} subjects per batch, but the training split has {len(sampler.classes)} "
                          f"subjects with sequences of at least {s.min_frames} frames: set --set sampler.P="
                          f"{len(sampler.classes)} or fewer, or train on more subjects")
    if sampler.left_out:
        say(f"left out of training: {len(sampler.left_out)} sequences shorter than {s.min_frames} frames "
            f"(sampler.min_frames), e.g. {sampler.problems()['examples'][0]}")
    trainer = Trainer(built.model, plan.recipe, sampler, method=plan.method, variant=plan.variant, device=device,
                      plugins=plugins, out_dir=out_dir, progress=settings.progress, data_fingerprint=store.fingerprint,
                      model_kwargs=built.kwargs, dist=dist, echo=say, protocol=selection.protocol.name)
    resumed_from = None
    if settings.resume:
        path = find_resume_checkpoint(out_dir)
        payload = read_checkpoint(path)
        check_resumable(payload, method=plan.method.name, variant=plan.variant, fingerprint=store.fingerprint,
                        recipe=plan.recipe, source=str(path))
        trainer.restore(payload, str(path))
        if dist.is_main:
            from .io import write_json_atomic

            write_json_atomic(out_dir / "run_settings.json", settings.to_dict())
        resumed_from = {"checkpoint": str(path), "iteration": trainer.step}
        say(f"resuming from {path} (iteration {trainer.step})")
    if plan.iterations == 0 and trainer.step == 0 and built.initial_weights is None:
        say("WARNING: 0 training iterations and no initial weights (--checkpoint or --init-from): the evaluation "
            "measures a randomly initialised model")
    started = time.perf_counter()
    from .io import writing

    try:
        # the training log is appended line by line: a disk that refuses it is one line too
        with writing(out_dir / "train_log.jsonl", what="training log"):
            history = trainer.train(plan.iterations)
    finally:
        sampler.close()
    seconds = round(time.perf_counter() - started, 3)
    if sampler.skipped:
        say(f"WARNING: {len(sampler.skipped)} training sequences could not be read and were replaced by another "
            f"of the same subject, e.g. {sampler.problems()['examples'][-1]} (--strict makes this an error)")
    return Training(trainer, history, trainer.save("final"), resumed_from, sampler.problems(), seconds)


# --------------------------------------------------------------------------- embed


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

    from .data.sampling import sequence_batches
    from .nn import host_to_device
    from .progress import progress as progress_bar

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
    with torch.inference_mode(), progress_bar(total=len(rows), desc="embedding", unit="seq", enabled=progress) as bar:
        for batch_rows, frames, lengths in batches:
            x = host_to_device(frames, dev).float().mul_(1.0 / 255.0)
            lens = host_to_device(lengths, dev)
            result = model(x, lengths=lens)
            if out is None:  # the first forward: its output is checked once
                from .training.trainer import check_model_output

                check_model_output(result, len(batch_rows), f"model {type(model).__module__}."
                                                            f"{type(model).__qualname__}")
            emb = result["embeddings"].float().cpu().numpy()
            if out is None:
                out = np.empty((len(rows), *emb.shape[1:]), np.float32)
            out[[position[int(r)] for r in batch_rows]] = emb
            done += len(batch_rows)
            bar.update(len(batch_rows))
    missing = len(rows) - done - len(skipped or {})
    if out is None or missing:
        raise GaitbenchError(f"embedded {done} of {len(rows)} sequences ({len(skipped or {})} unreadable)")
    return out


@dataclass
class Embedded:
    """Embeddings of the test set and their rows in the store; the ``unreadable`` rows (reported
    and left out) with the reason."""

    embeddings: np.ndarray
    rows: np.ndarray
    unreadable: dict[int, str]
    seconds: float


def embed_test_set(model, store, rows: np.ndarray, recipe, *, device: str, dist, strict: bool, progress: bool,
                   say: Say) -> Embedded | None:
    """Embed ``rows`` (split across the processes of a distributed run and gathered on rank 0);
    unreadable sequences are left out with a warning unless ``strict``. None on other ranks."""
    from .training.distributed import gather_rows

    started = time.perf_counter()
    local_rows = rows[dist.rank::dist.world_size]
    unreadable: dict[int, str] = {}
    emb = embed(model, store, local_rows, device=device, max_frames_per_batch=recipe.eval.max_frames_per_batch,
                max_sequences=recipe.eval.max_sequences_per_batch, progress=progress and dist.is_main,
                skipped=None if strict else unreadable)
    emb = gather_rows(local_rows, emb, rows, dist)
    if dist.enabled:
        import torch.distributed as td

        parts: list = [None] * dist.world_size
        td.all_gather_object(parts, unreadable)
        unreadable = {k: v for part in parts for k, v in part.items()}
    seconds = round(time.perf_counter() - started, 3)
    if not dist.is_main:
        return None
    if unreadable:
        keep = ~np.isin(rows, list(unreadable))
        emb, rows = emb[keep], rows[keep]
        say(f"WARNING: {len(unreadable)} test sequences could not be read and are left out of the evaluation, e.g. "
            f"{store.describe_row(next(iter(unreadable)))}: {next(iter(unreadable.values()))} "
            "(--strict makes this an error)")
    return Embedded(emb, rows, unreadable, seconds)


def write_test_embeddings(path, test: Embedded, store, selection: Selection, *, method: str,
                          metric: str) -> Path:
    """The embeddings file ``evaluate`` reads (:mod:`gaitbench.evaluation.embeddings`), with the
    distance the run evaluates with (``metric``) so that re-evaluating it gives the same numbers."""
    from .evaluation.embeddings import write_embeddings

    return write_embeddings(path, test.embeddings, store.index.iloc[test.rows], selection.protocol.split.probe_set,
                            method=method, protocol=selection.protocol.name, synthetic=store.synthetic,
                            dataset_fingerprint=store.fingerprint, metric=metric)


# --------------------------------------------------------------------------- evaluate


@dataclass
class Evaluation:
    """The evaluation report and, for identification protocols, the submission file written."""

    report: Any
    submission: str | None = None


def evaluate_test_set(test: Embedded, store, plan: Plan, selection: Selection, *, device: str,
                      out_dir: Path) -> Evaluation:
    """Evaluate the test embeddings under the protocol, with the plan's stages; an identification
    protocol's predictions are written as ``submission.csv``."""
    from .evaluation.engine import evaluate

    labels = store.index.iloc[test.rows]
    report = evaluate(selection.protocol, test.embeddings, labels["subject"], labels["type"], labels["view"],
                      device=device, stages=plan.stages, metric=plan.recipe.eval.metric or None,
                      truth=selection.truth, truth_source=selection.truth_source,
                      verification=plan.recipe.eval.verification)
    submission = None
    if report.predictions is not None:
        from .evaluation.identification import write_predictions

        submission = str(write_predictions(out_dir / "submission.csv", selection.protocol.evaluation,
                                           report.predictions))
    return Evaluation(report, submission)


# --------------------------------------------------------------------------- record


def record(settings, plan: Plan, store, selection: Selection, built: BuiltModel, training: Training,
           test: Embedded, evaluation: Evaluation, *, device: str, dist, plugins, timings: dict[str, Any],
           out_dir: Path):
    """The run record, written atomically to ``OUT/result.json``."""
    import platform

    import torch

    from . import smoke
    from .config import to_dict
    from .io import package_version, write_json_atomic
    from .results.record import DatasetInfo, RunRecord, SplitInfo, StageRecord, Tables, Versions

    protocol, report, trainer = selection.protocol, evaluation.report, training.trainer
    plugin = plugins.infos.get(plugins.methods().plugin_of(plan.method.name))
    run = RunRecord(
        method=plan.method.name, variant=plan.variant, recipe=plan.recipe.name, protocol=protocol.name,
        protocol_version=protocol.version,
        split=SplitInfo(train=protocol.split.train, test=protocol.split.test,
                        partition=protocol.split.source if protocol.split.partition else None,
                        probe_set=len(protocol.split.probe_set) or None),
        dataset=DatasetInfo.from_json(store.describe()), config=to_dict(plan.recipe), seed=settings.seed,
        deterministic=settings.deterministic, iterations=trainer.step, device=device, world_size=dist.world_size,
        global_batch=plan.recipe.sampler.P * plan.recipe.sampler.K, precision=trainer.precision,
        parameters=built.parameters, metrics=report.metrics, tables=Tables.from_json(report.tables), timings=timings,
        versions=Versions(package_version(), torch.__version__, platform.python_version(),
                          {"name": plugin.name, "distribution": plugin.distribution, "version": plugin.version}
                          if plugin else None),
        stages=[StageRecord.from_json(s) for s in report.stages],
        data_problems={"training": training.problems, "test_unreadable": len(test.unreadable),
                       "test_examples": [f"{store.describe_row(r)}: {why}"
                                         for r, why in list(test.unreadable.items())[:5]]},
        training={"final": training.history[-1] if training.history else None,
                  "resumed_from": training.resumed_from, "initial_checkpoint": settings.checkpoint,
                  "initial_weights": built.initial_weights},
        evaluated_checkpoint=str(training.checkpoint), checkpoint=str(training.checkpoint),
        submission=({"path": evaluation.submission, "truth": selection.truth_source if selection.truth is not None
                     else None} if protocol.evaluation.kind == "identification" else None),
        extra=smoke.record_entry(settings) if getattr(settings, "smoke", False) else {},
    )
    write_json_atomic(out_dir / "result.json", run.to_json())
    return run


def describe_run(plan: Plan, selection: Selection, built: BuiltModel, device: str, dist) -> str:
    """The line that says what is about to be trained on what."""
    reduced = ", REDUCED for CPU - not the paper network" if plan.variant == "quick" else ""
    return (f"method: {plan.method.name} (variant {plan.variant}{reduced}, {built.parameters:,} parameters); recipe "
            f"{plan.recipe.name}; protocol {selection.protocol.describe()}; {len(selection.train_rows)} training / "
            f"{len(selection.test_rows)} test sequences; {plan.iterations} iterations on {device}"
            f"{f' x {dist.world_size} processes' if dist.enabled else ''}")


# --------------------------------------------------------------------------- saved embeddings


@dataclass
class SavedEvaluation:
    """``gaitbench evaluate``'s result: the report (None when GREW's official submission file was
    written instead, see ``submission_info``) and the protocol as evaluated. ``synthetic``: whether
    any file says its data was synthetic; ``synthetic_recorded``: whether every file says either way."""

    protocol: "Protocol"
    report: Any = None
    submission_info: dict[str, Any] | None = None
    synthetic: bool = False
    synthetic_recorded: bool = False


def evaluate_saved(protocol, files, eplan, *, partition: str | None = None, truth: str | None = None,
                   submission: str | None = None, device: str = "cpu", max_bytes: int | None = None,
                   say: Say = print) -> SavedEvaluation:
    """Evaluate embeddings files (fused as ``eplan`` says) under ``protocol``, without the model."""
    from .evaluation.embeddings import read_embeddings
    from .evaluation.engine import evaluate, write_submission
    from .protocols import resolve_split

    started = time.perf_counter()
    if eplan.changes:
        protocol = protocol.with_evaluation(**eplan.changes)
    datas = [read_embeddings(f) for f in files]
    data, arrays = _fused(datas, files, eplan)
    protocol = resolve_split(protocol, None, partition, recorded_probe_set=data.get("probe_set"),
                             recorded_from=str(files[0]))
    recorded = {str(d["metric"]) for d in datas if str(d.get("metric", ""))}
    if "metric" not in eplan.changes and len(recorded) == 1 and recorded != {protocol.evaluation.metric}:
        # the distance the recipe of the run that wrote the embeddings evaluated with (GaitGL's Gait3D
        # recipe: cos; the HID 2020 recipe: flat_euc), so that evaluating them again gives its numbers
        protocol = protocol.with_evaluation(metric=recorded.pop())
        say(f"metric {protocol.evaluation.metric}: the distance the embeddings were evaluated with by their run's "
            "recipe (--set metric=... chooses another)")
    out = SavedEvaluation(protocol, synthetic=any(str(d.get("synthetic", "unknown")) == "True" for d in datas),
                          synthetic_recorded=all("synthetic" in d for d in datas))
    identification = protocol.evaluation.kind == "identification"
    if truth and not identification:
        raise GaitbenchError(f"--truth scores identification protocols (hid); {protocol.describe()} has labelled "
                             "probes")
    args = (protocol, arrays, data["subjects"], data["types"], data["views"])
    load_s = time.perf_counter() - started
    if submission and not identification:  # GREW's official file instead of local metrics
        out.submission_info = write_submission(*args, submission, device=device, stages=eplan.stages)
        return out
    truth_map = None
    if truth:
        from .evaluation.identification import read_truth

        truth_map = read_truth(truth)
    if len(data["subjects"]) > 50_000:
        budget = max_bytes or 512 * 2**20
        say(f"evaluating {len(data['subjects']):,} sequences on {device}; distance blocks within "
            f"{budget / 2**20:.0f} MB (--max-memory)")
    out.report = evaluate(*args, device=device, stages=eplan.stages, max_bytes=max_bytes, truth=truth_map,
                          truth_source=str(truth), verification=eplan.verification)
    out.report.timings = {"load_s": round(load_s, 4), **out.report.timings}
    if identification and submission:
        from .evaluation.identification import write_predictions

        write_predictions(submission, protocol.evaluation, out.report.predictions)
    return out


def _fused(datas, files, eplan):
    """(the labels' file dict, the embeddings to evaluate): one file as it is, several fused."""
    if not eplan.fuse:
        return datas[0], datas[0]["embeddings"]
    from .evaluation.fusion import fuse

    fused = fuse(datas, mode=eplan.fuse, normalize=eplan.normalize, names=[str(f) for f in files])
    return {**datas[0], **fused.as_dict()}, (fused.embeddings if eplan.fuse == "concat" else fused.members())
