"""gaitbench against the reference implementation (OpenGait), same run, same device, same shapes;
prints JSON. The reference is read from a checkout you give (never part of this repository).

    python benchmarks/reference_speed.py --opengait /path/to/OpenGait/opengait --device cuda
    python benchmarks/reference_speed.py --opengait /path/to/OpenGait/opengait --device cpu --small

``--opengait`` is the folder holding OpenGait's ``modeling/``, ``utils/``, ``data/`` and
``evaluation/``. Packages the reference imports but these measurements never use (OpenCV,
einops, kornia, tensorboard, ...) are replaced by empty stand-ins when not installed.

Training (``--cases``): the issue's four networks at their CASIA-B / OU-MVLP recipes, random
64 x 44 silhouettes, 30-frame clips.

- reference: OpenGait's model class built from its config's ``model_cfg``, its ``LossAggregator``
  with the config's losses, the config's optimizer, and its ``train_step``: forward under fp16
  autocast, losses, ``zero_grad``, gradient scaler, optimizer step. torch.distributed is
  initialised with one process, as OpenGait requires. Run twice: cuDNN deterministic (its
  default) and autotuned; the faster counts.
- gaitbench: ``Trainer.train_step`` of the method's own recipe (the upload of the uint8 batch
  included) at ``--amp`` (default bf16), ``channels_last`` where ``--channels-last``.

Inference: the reference's evaluation path is one sequence per forward (its test batch equals the
GPU count), fp16 autocast, features copied to the host; also 16 per forward. gaitbench: packed
batches of ``--infer-batch`` sequences with a lengths vector, features to the host.

Evaluation (``--eval``): OpenGait's ``evaluate_indoor_dataset`` and gaitbench's engine on the same
random OU-MVLP-size embeddings (and CASIA-B-size), times and the rank-1 of both.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types

import numpy as np
import torch

from gaitbench.bench import _sync, _timed
from gaitbench.nn import parameter_count

# imported somewhere on OpenGait's import path, never used by what is measured here
STUBBED = ("cv2", "einops", "kornia", "tensorboard", "torch.utils.tensorboard", "sklearn", "lightly",
           "yaml", "matplotlib")


class _Absent(types.ModuleType):
    """A stand-in for an optional package: importable, any use raises."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def absent(*args, **kwargs):
            raise RuntimeError(f"{self.__name__}.{name} is not installed (stubbed for the benchmark)")

        return absent


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``: only packages that are really missing get a stand-in."""

    def find_spec(self, name, path=None, target=None):
        if any(name == s or name.startswith(s + ".") for s in STUBBED):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Absent(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def load_reference(root: str):
    """Import OpenGait from ``root`` without its training entry point; returns its modules."""
    if not os.path.isdir(os.path.join(root, "modeling")):
        raise SystemExit(f"--opengait {root}: expected OpenGait's source folder (with modeling/, utils/, data/)")
    sys.meta_path.append(_StubFinder())
    try:  # present in torch, but raises without the tensorboard package
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        sys.modules["torch.utils.tensorboard"] = _StubFinder().create_module(
            importlib.machinery.ModuleSpec("torch.utils.tensorboard", None))
    sys.path.insert(0, root)
    import modeling  # noqa: F401  (a namespace package)

    # the models package imports every model (some need packages we do not have): only ours
    pkg = types.ModuleType("modeling.models")
    pkg.__path__ = [os.path.join(root, "modeling", "models")]
    sys.modules["modeling.models"] = pkg
    import utils

    class _Quiet:
        def __getattr__(self, name):
            return lambda *a, **k: None

    utils.get_msg_mgr = lambda: _Quiet()
    from modeling import loss_aggregator
    from modeling.models.gaitgl import GaitGL
    from modeling.models.gaitpart import GaitPart
    from modeling.models.gaitset import GaitSet

    loss_aggregator.get_msg_mgr = lambda: _Quiet()
    return {"GaitSet": GaitSet, "GaitPart": GaitPart, "GaitGL": GaitGL,
            "LossAggregator": loss_aggregator.LossAggregator}


def init_single_process_group(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tempfile.NamedTemporaryFile(delete=False).name
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}",
                                rank=0, world_size=1)


TRIPLET = {"loss_term_weight": 1.0, "margin": 0.2, "type": "TripletLoss", "log_prefix": "triplet"}


def softmax(label_smooth: bool):
    return {"loss_term_weight": 1.0, "scale": 1, "type": "CrossEntropyLoss", "log_accuracy": True,
            "label_smooth": label_smooth, "log_prefix": "softmax"}


# The reference configs (configs/<method>/<method>.yaml) and the gaitbench method/recipe measured
# beside each: batch P x K and the networks are the same.
CASES = {
    "gaitset": dict(
        cls="GaitSet", dataset="CASIA-B", P=8, K=16, method="gaitset", recipe="casiab",
        model_cfg={"in_channels": [1, 32, 64, 128], "SeparateFCs": {"in_channels": 128, "out_channels": 256,
                                                                     "parts_num": 62}, "bin_num": [16, 8, 4, 2, 1]},
        loss_cfg=TRIPLET, optimizer=("SGD", dict(lr=0.1, momentum=0.9, weight_decay=5e-4))),
    "gaitpart": dict(
        cls="GaitPart", dataset="CASIA-B", P=8, K=16, method="gaitpart", recipe="casiab",
        model_cfg={"backbone_cfg": {"in_channels": 1, "type": "Plain",
                                    "layers_cfg": ["BC-32", "BC-32", "M", "FC-64-2", "FC-64-2", "M",
                                                   "FC-128-3", "FC-128-3"]},
                   "SeparateFCs": {"in_channels": 128, "out_channels": 128, "parts_num": 16}, "bin_num": [16]},
        loss_cfg=TRIPLET, optimizer=("Adam", dict(lr=1e-4, weight_decay=0.0))),
    "gaitgl": dict(
        cls="GaitGL", dataset="CASIA-B", P=8, K=8, method="gaitgl", recipe="casiab",
        model_cfg={"channels": [32, 64, 128], "class_num": 74},
        loss_cfg=[TRIPLET, softmax(False)], optimizer=("Adam", dict(lr=1e-4, weight_decay=5e-4))),
    "gaitgl-oumvlp": dict(
        cls="GaitGL", dataset="OUMVLP", P=32, K=8, method="gaitgl", recipe="oumvlp",
        model_cfg={"channels": [32, 64, 128, 256], "class_num": 5153},
        loss_cfg=[TRIPLET, softmax(True)], optimizer=("Adam", dict(lr=1e-4, weight_decay=0.0))),
}


def timed(fn, dev, steps: int, warmup: int) -> dict:
    """gaitbench bench's timing (warm-up, a device synchronisation ending every timed step)."""
    times = _timed(fn, dev, steps, warmup)
    return {"median_s": statistics.median(times), "min_s": min(times)}


def peak_reset(dev):
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev):
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


def build_reference(ref, case, dev):
    cls = ref[case["cls"]]
    model = cls.__new__(cls)
    torch.nn.Module.__init__(model)
    model.cfgs = {"data_cfg": {"dataset_name": case["dataset"]}}
    model.build_network(case["model_cfg"])
    return model.to(dev)


def reference_train(ref, case, dev, P, K, frames, fp16, steps, warmup, gen):
    model = build_reference(ref, case, dev).train()
    losses = ref["LossAggregator"](case["loss_cfg"]).to(dev)
    name, kwargs = case["optimizer"]
    opt = getattr(torch.optim, name)(model.parameters(), **kwargs)
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    sils = (torch.rand(P * K, frames, 64, 44, generator=gen) > 0.5).float().to(dev)
    labs = torch.arange(P, device=dev).repeat_interleave(K)

    def step():
        with torch.autocast(dev.type, dtype=torch.float16, enabled=fp16):
            out = model(([sils], labs, None, None, None))
        loss_sum, _ = losses(out["training_feat"])
        opt.zero_grad()
        if loss_sum <= 1e-9:  # the reference's check (a host read every step)
            pass
        if scaler is not None:
            scaler.scale(loss_sum).backward()
            scaler.step(opt)
            scaler.get_scale()
            scaler.update()
        else:
            loss_sum.backward()
            opt.step()

    peak_reset(dev)
    t = timed(step, dev, steps, warmup)
    return {**t, "seq_per_s": P * K / t["median_s"], "peak_memory_gib": peak_gib(dev)}


def reference_infer(ref, case, dev, batch, frames, fp16, steps, warmup, gen):
    model = build_reference(ref, case, dev).eval()
    x = (torch.rand(batch, frames, 64, 44, generator=gen) > 0.5).float().to(dev)
    labs = torch.zeros(batch, dtype=torch.long, device=dev)

    def step():
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=fp16):
            out = model(([x], labs, None, None, None))
        out["inference_feat"]["embeddings"].cpu().numpy()

    mode = "eval"
    try:
        step()
    except ValueError:  # GaitGL's test mode takes one sequence per forward: time its training-mode forward
        model.train()
        mode = "train-mode forward without gradients (its test mode refuses more than one sequence)"
    t = timed(step, dev, steps, warmup)
    return {**t, "seq_per_s": batch / t["median_s"], "mode": mode}


def our_model(case, dev, channels_last):
    """The gaitbench network of ``case`` (its recipe's variant) on ``dev``, and the recipe."""
    from gaitbench.bench import _prepare_model
    from gaitbench.plugins import get_plugins
    from gaitbench.training.recipe import resolve_recipe

    method = get_plugins().method(case["method"])
    recipe = resolve_recipe(method, case["recipe"])
    model = _prepare_model(method.create(recipe.variant or method.default_variant).to(dev), channels_last)
    return model, recipe


def ours_train(case, dev, P, K, frames, amp, channels_last, compile_, steps, warmup, gen):
    from gaitbench.bench import train_step_fn

    model, recipe = our_model(case, dev, channels_last)
    runner = torch.compile(model) if compile_ else model
    step = train_step_fn(model, runner, recipe, P, K, frames, dev, amp, gen)
    peak_reset(dev)
    t0 = time.perf_counter()
    step()
    _sync(dev)
    first = time.perf_counter() - t0
    t = timed(step, dev, steps, warmup)
    return {**t, "seq_per_s": P * K / t["median_s"], "first_step_s": first, "peak_memory_gib": peak_gib(dev),
            "params": parameter_count(model)}


def ours_infer(case, dev, batch, frames, amp, channels_last, steps, warmup, gen):
    model = our_model(case, dev, channels_last)[0].eval()
    x = (torch.rand(batch, frames, 64, 44, generator=gen) > 0.5).float().to(dev)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(x, lengths=lengths if batch > 1 else None)
        out["embeddings"].float().cpu().numpy()

    t = timed(step, dev, steps, warmup)
    return {**t, "seq_per_s": batch / t["median_s"]}


def eval_case(ref_eval, name, dev, small, rng):
    """Both evaluators on one set of random embeddings laid out as the protocol's test set."""
    from gaitbench.evaluation.engine import evaluate
    from gaitbench import get_protocol

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from eval_gpu import casiab_labels, oumvlp_labels

    if name == "oumvlp":
        subj, typ, vw = oumvlp_labels(60 if small else 5154, rng)
        parts, dataset = 16, "OUMVLP"
    else:
        subj, typ, vw = casiab_labels(10 if small else 50)
        parts, dataset = 62, "CASIA-B"
    emb = rng.standard_normal((len(subj), 256, parts), dtype=np.float32)
    protocol = get_protocol(name)
    evaluate(protocol, emb[:200], subj[:200], typ[:200], vw[:200], device=str(dev))  # warm-up
    t = time.perf_counter()
    ours = evaluate(protocol, emb, subj, typ, vw, device=str(dev))
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    theirs = ref_eval.evaluate_indoor_dataset({"embeddings": emb, "labels": subj, "types": typ, "views": vw},
                                              dataset, metric="euc")
    ref_s = time.perf_counter() - t
    return {"sequences": len(subj), "shape": [256, parts], "gaitbench_s": ours_s, "reference_s": ref_s,
            "speedup": ref_s / ours_s, "gaitbench_metrics": ours.metrics,
            "reference_metrics": {k.split("/")[-1]: float(v) for k, v in theirs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--opengait", required=True, help="OpenGait's source folder (holding modeling/)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--amp", default="bf16", choices=["none", "bf16", "fp16"], help="gaitbench's precision")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also gaitbench with torch.compile")
    ap.add_argument("--infer-batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--eval", action="store_true", help="also the evaluators at OU-MVLP and CASIA-B size")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--small", action="store_true", help="tiny shapes, to check the script on a CPU")
    ap.add_argument("--batch", default=None, help="training P,K instead of each recipe's (e.g. 2,8 on a CPU)")
    ap.add_argument("--frames", type=int, default=None, help="training clip length (default 30)")
    ap.add_argument("--test-frames", type=int, default=None, help="inference sequence length (default 80)")
    args = ap.parse_args()

    dev = torch.device(args.device)
    ref = load_reference(args.opengait)
    init_single_process_group(dev)
    fp16 = dev.type == "cuda"  # the reference's enable_float16; its scaler needs CUDA
    frames, test_frames = (8, 12) if args.small else (30, 80)
    frames, test_frames = args.frames or frames, args.test_frames or test_frames
    out = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
           "gaitbench_amp": args.amp, "reference_amp": "fp16+scaler" if fp16 else "none",
           "channels_last": args.channels_last, "small": args.small, "cases": {}}
    gen = torch.Generator().manual_seed(0)
    for name in [c for c in args.cases.split(",") if c] if not args.no_train else []:
        case = CASES[name]
        P, K = (2, 4) if args.small else (case["P"], case["K"])
        if args.batch:
            P, K = (int(v) for v in args.batch.split(","))
        res: dict = {"batch": [P, K], "frames": frames}
        ref_runs = {}
        for autotune in ((False, True) if dev.type == "cuda" else (False,)):
            torch.backends.cudnn.benchmark = autotune
            torch.backends.cudnn.deterministic = not autotune
            ref_runs["autotune" if autotune else "deterministic"] = reference_train(
                ref, case, dev, P, K, frames, fp16, args.steps, args.warmup, gen)
        res["reference_train"] = ref_runs
        best_ref = max(r["seq_per_s"] for r in ref_runs.values())
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = dev.type == "cuda", False
        res["gaitbench_train"] = ours_train(case, dev, P, K, frames, args.amp, args.channels_last, False,
                                            args.steps, args.warmup, gen)
        res["train_ratio"] = res["gaitbench_train"]["seq_per_s"] / best_ref
        if args.compile:
            res["gaitbench_train_compiled"] = ours_train(case, dev, P, K, frames, args.amp, args.channels_last, True,
                                                         args.steps, args.warmup, gen)
            res["train_ratio_compiled"] = res["gaitbench_train_compiled"]["seq_per_s"] / best_ref
        torch.backends.cudnn.benchmark = dev.type == "cuda"
        res["reference_infer_1"] = reference_infer(ref, case, dev, 1, test_frames, fp16, args.steps, args.warmup, gen)
        res["reference_infer_16"] = reference_infer(ref, case, dev, 16 if not args.small else 2, test_frames, fp16,
                                                    args.steps, args.warmup, gen)
        res["gaitbench_infer_1"] = ours_infer(case, dev, 1, test_frames, args.amp, args.channels_last,
                                              args.steps, args.warmup, gen)
        batch = 4 if args.small else args.infer_batch
        res[f"gaitbench_infer_{batch}"] = ours_infer(case, dev, batch, test_frames, args.amp, args.channels_last,
                                                     args.steps, args.warmup, gen)
        res["infer_ratio_vs_reference_eval"] = (res[f"gaitbench_infer_{batch}"]["seq_per_s"]
                                                / res["reference_infer_1"]["seq_per_s"])
        out["cases"][name] = res
        print(json.dumps({name: {"train_ratio": res["train_ratio"],
                                 "infer_ratio": res["infer_ratio_vs_reference_eval"]}}), file=sys.stderr, flush=True)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if args.eval:
        if dev.type != "cuda":  # the reference evaluator calls .cuda() unconditionally
            torch.Tensor.cuda = lambda self, *a, **k: self
        import evaluation.evaluator as ref_eval

        ref_eval.get_msg_mgr = sys.modules["utils"].get_msg_mgr
        rng = np.random.default_rng(0)
        out["eval"] = {name: eval_case(ref_eval, name, dev, args.small, rng) for name in ("casiab", "oumvlp")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
