"""One training loop for every method. Methods adapt it through recipes, the hooks and what they
register (parameter groups, a regulariser), never by copying the loop."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import numpy as np
import torch

from ..errors import GaitbenchError
from ..io import write_text_atomic
from ..nn import host_to_device
from .checkpoint import load_state_strict, save_checkpoint
from .distributed import SINGLE, Dist, gather_with_grad
from .losses import part_cross_entropy, triplet_index, triplet_loss
from .recipe import Recipe

CHECKPOINT_DIR = "checkpoints"


OUTPUT_CONTRACT = "a dict with 'embeddings' [N, C, P] (floats) and, optionally, 'logits' [N, classes, P]"


def check_model_output(out: Any, batch_size: int, who: str) -> None:
    """Refuse, in one sentence naming ``who`` (the method and its plugin), a forward output that
    breaks the contract: :data:`OUTPUT_CONTRACT` with N = ``batch_size``. Run once, at the first
    forward: a wrong output would otherwise fail deep in the loss or the embedding step."""
    from ..errors import PluginError

    def shown(x) -> str:
        if isinstance(x, torch.Tensor):
            return f"a {x.dtype} tensor of shape {list(x.shape)}"
        return f"a {type(x).__name__}" + (f" with keys {sorted(map(str, x))}" if isinstance(x, dict) else "")

    problem = None
    if not isinstance(out, dict):
        problem = f"returned {shown(out)}"
    else:
        emb, logits = out.get("embeddings"), out.get("logits")
        if not isinstance(emb, torch.Tensor):
            problem = f"returned {shown(out)}" if emb is None else f"returned 'embeddings' as {shown(emb)}"
        elif emb.ndim != 3 or emb.shape[0] != batch_size or not emb.is_floating_point():
            problem = f"returned 'embeddings' as {shown(emb)}"
        elif logits is not None and (not isinstance(logits, torch.Tensor) or logits.ndim != 3
                                     or logits.shape[0] != batch_size or not logits.is_floating_point()):
            problem = f"returned 'logits' as {shown(logits)}"
    if problem:
        raise PluginError(f"{who}: the model's forward {problem} for a batch of {batch_size} sequences; expected "
                          f"{OUTPUT_CONTRACT}, N = {batch_size} (see docs/writing-plugins.md)")


class TrainingDiverged(GaitbenchError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(GaitbenchError):
    """SIGINT or SIGTERM arrived; a checkpoint of the current step was written."""


def resolve_precision(amp: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast on CUDA and fp32 on CPU."""
    if amp == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if amp == "none":
        return "fp32"
    if amp == "fp16" and device.type != "cuda":
        raise GaitbenchError("train.amp=fp16 needs CUDA (its gradient scaler is a CUDA feature); use bf16 or none")
    return amp


def build_optimizer(model: torch.nn.Module, recipe: Recipe, param_groups=None):
    """timm's optimizer factory; weight decay on every parameter, as the reference configs do."""
    from timm.optim import create_optimizer_v2

    opt = recipe.optimizer
    name = opt.name.lower()
    _check_optimizer_name(name)
    kwargs: dict[str, Any] = {}
    if name in {"sgd", "momentum", "nesterov"}:
        kwargs["momentum"] = opt.momentum
        # timm's "sgd" is Nesterov SGD; the reference configs' SGD is torch's classical momentum
        # ("momentum" in timm) unless a recipe asks for Nesterov
        name = "nesterov" if opt.nesterov or name == "nesterov" else "momentum"
    target = param_groups if param_groups is not None else model
    return create_optimizer_v2(target, opt=name, lr=opt.lr, weight_decay=opt.weight_decay,
                               filter_bias_and_bn=False, **kwargs)


def _check_optimizer_name(name: str) -> None:
    from timm.optim import list_optimizers

    import difflib

    from ..errors import ConfigError

    known = list_optimizers()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        raise ConfigError(f"optimizer.name: unknown optimizer {name!r}" + (f"; did you mean {', '.join(close)}?" if close
                          else "") + f" (any of timm's {len(known)} optimizers: adam, adamw, sgd, ...; "
                          "timm.optim.list_optimizers() lists them)")


def build_scheduler(optimizer, recipe: Recipe):
    """timm's multi-step schedule in iterations: lr = base * gamma^(milestones passed), after an
    optional linear warm-up. ``step_update(num_updates=i)`` sets the lr for update ``i + 1``."""
    from timm.scheduler import MultiStepLRScheduler

    s = recipe.schedule
    # timm counts a milestone as passed at t + 1; the reference (torch MultiStepLR stepped after
    # every update) drops the lr once `m` updates are done. Shifting by one keeps the reference's.
    return MultiStepLRScheduler(optimizer, decay_t=[m + 1 for m in s.milestones], decay_rate=s.gamma,
                                warmup_t=s.warmup, warmup_lr_init=s.warmup_lr, t_in_epochs=False)


def _compile_backend(name: str) -> str:
    """``train.compile`` checked against torch's registered backends (a typo fails here, before
    the first step, not as a stack trace from inside the compiler)."""
    import torch._dynamo

    from ..errors import ConfigError, did_you_mean

    backends = torch._dynamo.list_backends(exclude_tags=())
    if name not in backends:
        raise ConfigError("train.compile: " + did_you_mean(name, backends, "torch.compile backend"))
    return name


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch; optionally torch's deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])


class Trainer:
    """Trains ``model`` on batches from ``sampler`` following ``recipe``.

    Hooks see the trainer (``trainer.model``, ``trainer.recipe``, ``trainer.optimizer``,
    ``trainer.step``...) and a read-only ``logs`` mapping after every step.
    """

    def __init__(self, model: torch.nn.Module, recipe: Recipe, sampler, *, method=None, variant: str = "",
                 device: str = "cpu", plugins=None, out_dir: str | Path | None = None, progress: bool = True,
                 data_fingerprint: str = "", model_kwargs: dict | None = None, dist: Dist = SINGLE,
                 echo: Callable[[str], None] = print, protocol: str = ""):
        self.recipe, self.sampler, self.method, self.variant = recipe, sampler, method, variant
        self.protocol = protocol  # recorded in checkpoints: what a fine-tuning run starts from
        self.device = torch.device(device)
        self.plugins, self.progress, self.dist, self.echo = plugins, progress, dist, echo
        self.out_dir = Path(out_dir) if out_dir else None
        self.data_fingerprint = data_fingerprint
        self.model_kwargs = dict(model_kwargs or {})
        cfg = recipe.train
        if cfg.channels_last:
            from ..nn import to_channels_last

            model = to_channels_last(model)
        if self.device.type == "cuda":  # autotuning picks nondeterministic algorithms: not when asked
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and not torch.are_deterministic_algorithms_enabled()
        self.model = model  # the bare module (checkpoints, evaluation)
        self.train_model = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model, backend=_compile_backend(cfg.compile))
        groups = method.param_groups(model, recipe) if method is not None and method.param_groups else None
        self.optimizer = build_optimizer(model, recipe, groups)
        self.scheduler = build_scheduler(self.optimizer, recipe)
        self.precision = resolve_precision(recipe.train.amp, self.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.checkpoints: list[Path] = []
        self._first_bad = torch.zeros((), dtype=torch.long, device=self.device)
        self._collapsed_logs = 0
        self._stop_signal: int | None = None
        self._output_checked = False

    def _model_name(self) -> str:
        """``method gaitset [quick] (plugin gaitset)``, for messages about the model."""
        if self.method is None:
            return f"model {type(self.model).__name__}"
        plugin = ""
        if self.plugins is not None:
            try:
                plugin = f" (plugin {self.plugins.methods().plugin_of(self.method.name)})"
            except Exception:  # a message must not fail for want of the plugin's name
                plugin = ""
        return f"method {self.method.name} [{self.variant}]{plugin}"

    # -- state ------------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict[str, Any]:
        from ..config import to_dict

        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "sampler": self.sampler.state_dict(),
            "rng": _rng_state(),
            "precision": self.precision,
            "world_size": self.dist.world_size,
            "model_kwargs": self.model_kwargs,
            "recipe_resolved": to_dict(self.recipe),
            "protocol": self.protocol,
        }

    def save(self, name: str | None = None) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only); keeps the last K periodic ones."""
        if self.out_dir is None or not self.dist.is_main:
            return None
        from ..config import to_dict

        final = name == "final"
        path = self.out_dir / CHECKPOINT_DIR / (f"{name}.pt" if name else f"iter-{self.step:07d}.pt")
        save_checkpoint(path, self.model, method=self.method.name if self.method else "", variant=self.variant,
                        iteration=self.step, recipe=to_dict(self.recipe), data_fingerprint=self.data_fingerprint,
                        **self.checkpoint_payload())
        if not final:
            self.checkpoints = [p for p in self.checkpoints if p != path] + [path]
            while len(self.checkpoints) > self.recipe.train.keep_checkpoints:
                self.checkpoints.pop(0).unlink(missing_ok=True)
        return path

    def restore(self, payload: dict[str, Any], source: str) -> None:
        """Continue from a checkpoint written by :meth:`save` (of a compatible run)."""
        load_state_strict(self.model, payload["model"], source)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.sampler.load_state_dict(payload["sampler"])
        _set_rng_state(payload["rng"])
        self.step = int(payload["iteration"])
        self.scheduler.step_update(num_updates=self.step)
        if self.out_dir is not None:
            self.checkpoints = sorted((self.out_dir / CHECKPOINT_DIR).glob("iter-*.pt"))
            log = self.out_dir / "train_log.jsonl"
            if log.is_file() and self.dist.is_main:  # drop records of steps after the checkpoint
                kept = [l for l in log.read_text().splitlines() if l and json.loads(l)["step"] <= self.step]
                write_text_atomic(log, "".join(l + "\n" for l in kept))  # never half a log

    # -- one step ---------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _forward_loss(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.sampler.next_batch(self.dist.rank, self.dist.world_size)
        # uint8 travels to the device (pinned, asynchronous on CUDA); scaling there moves a quarter
        # of the bytes.
        sils = host_to_device(batch.sils, self.device).float().mul_(1.0 / 255.0)
        labels = host_to_device(batch.labels, self.device)
        # Which pairs are positives is decided here, from the host's labels: the loss then needs
        # nothing back from the device (no synchronisation inside the step).
        global_labels = batch.global_labels if self.dist.enabled else batch.labels
        index = triplet_index(global_labels, self.device)
        with self._autocast():
            out = self.train_model(sils)
        if not self._output_checked:
            check_model_output(out, len(sils), self._model_name())
            self._output_checked = True
        losses = self.recipe.loss
        # The triplet loss sees the global batch; DDP averages gradients over ranks, so scaling
        # by the world size gives the single-process gradient (as the reference does).
        emb = gather_with_grad(out["embeddings"].float(), self.dist)
        all_labels = gather_with_grad(labels, self.dist)
        triplet, logs = triplet_loss(emb, all_labels, margin=losses.triplet.margin, index=index)
        total = losses.triplet.weight * triplet
        backward = total * self.dist.world_size
        logs = {"loss_triplet": triplet.detach(), **logs}
        if losses.cross_entropy.weight > 0:
            if "logits" not in out:
                raise GaitbenchError("the recipe asks for loss.cross_entropy, but the model returns no 'logits'")
            ce, ce_logs = part_cross_entropy(out["logits"], labels, scale=losses.cross_entropy.scale,
                                             label_smoothing=losses.cross_entropy.label_smoothing)
            total = total + losses.cross_entropy.weight * ce
            backward = backward + losses.cross_entropy.weight * ce
            logs.update(loss_ce=ce.detach(), **ce_logs)
        if self.method is not None and self.method.regularizer is not None:
            extra = self.method.regularizer(self, out)
            total, backward = total + extra, backward + extra
            logs["regularizer"] = extra.detach()
        logs["loss"] = total.detach()
        logs["_backward"] = backward
        return logs

    def _check_finite(self, loss: torch.Tensor, step: int, force: bool) -> None:
        # No host synchronisation per step on GPU: the first bad step is recorded on the device
        # and read at log steps; on CPU reading it costs nothing, so every step is checked.
        bad = ~torch.isfinite(loss)
        self._first_bad = torch.where((self._first_bad == 0) & bad, torch.full_like(self._first_bad, step),
                                      self._first_bad)
        if force or self.device.type == "cpu":
            first = int(self._first_bad)
            if first:
                last = self.checkpoints[-1] if self.checkpoints else None
                raise TrainingDiverged(
                    f"the loss became NaN or infinite at iteration {first}; training stopped. Last good "
                    f"checkpoint: {last if last else 'none written yet'} (kept). Lower the learning rate or "
                    "check the data.")

    def train_step(self, check_now: bool = True) -> dict[str, torch.Tensor]:
        """One optimizer step (hooks included); returns this step's logs as tensors."""
        step = self.step + 1
        if self.plugins:
            self.plugins.train_step_start(self, step)
        logs = self._forward_loss(step)
        backward = logs.pop("_backward")
        self._check_finite(logs["loss"], step, force=check_now)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(backward).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            backward.backward()
            self.optimizer.step()
        self.step = step
        self.scheduler.step_update(num_updates=step)
        return logs

    def train(self, iterations: int) -> list[dict[str, float]]:
        from ..progress import progress

        cfg = self.recipe.train
        if self.plugins:
            self.plugins.train_start(self)
        self.train_model.train()
        log = self._open_log()
        tb = self._tensorboard()
        bar = progress(total=iterations, initial=self.step, desc="training", unit="it",
                       enabled=self.progress and self.dist.is_main)
        previous = self._install_signal_handlers()
        started = time.perf_counter()
        try:
            while self.step < iterations:
                if self._stop_signal is not None:
                    path = self.save()
                    name = signal.Signals(self._stop_signal).name
                    raise TrainingInterrupted(
                        f"{name} received: stopped after iteration {self.step}; checkpoint {path} written. "
                        "Continue with --resume.")
                step = self.step + 1
                is_log_step = step % cfg.log_every == 0 or step == iterations or step == 1
                logs = self.train_step(check_now=is_log_step)
                if is_log_step:
                    self._log(step, logs, started, log, tb, bar)
                if self.plugins:
                    self.plugins.train_step_end(self, step, MappingProxyType(logs))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < iterations:
                    self.save()
                bar.update(1)
        finally:
            bar.close()
            self._restore_signal_handlers(previous)
            if log:
                log.close()
            if tb:
                tb.close()
        if self.plugins:
            self.plugins.train_end(self)
        return self.history

    # -- logging ----------------------------------------------------------------------------
    def _open_log(self):
        if self.out_dir is None or not self.dist.is_main:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8")

    def _tensorboard(self):
        if not self.recipe.train.tensorboard or self.out_dir is None or not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.echo("warning: train.tensorboard is set but the tensorboard package is not installed; "
                      "logging to train_log.jsonl only")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def _log(self, step, logs, started, log, tb, bar) -> None:
        # Converting to floats synchronises with the device: only at log steps.
        record = {"step": step, "lr": self.optimizer.param_groups[0]["lr"],
                  **{k: float(v) for k, v in logs.items()}, "elapsed_s": round(time.perf_counter() - started, 3)}
        self.history.append(record)
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if tb:
            for k, v in record.items():
                if k != "step":
                    tb.add_scalar(f"train/{k}", v, step)
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        if record["mean_dist"] < 1e-4:
            self._collapsed_logs += 1
            if self._collapsed_logs == 3 and self.dist.is_main:
                self.echo(f"warning: embeddings are collapsing (mean pairwise distance {record['mean_dist']:.2e} "
                          f"at iteration {step}); check the learning rate and the loss")
        else:
            self._collapsed_logs = 0

    # -- signals ----------------------------------------------------------------------------
    def _install_signal_handlers(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def stop(signum, frame):
            if self._stop_signal is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum

        return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for s, handler in (previous or {}).items():
            signal.signal(s, handler)


def find_resume_checkpoint(out_dir: Path) -> Path:
    """The final checkpoint when training had finished (then only evaluation is left), else the
    latest periodic or interruption checkpoint."""
    final = Path(out_dir) / CHECKPOINT_DIR / "final.pt"
    if final.is_file():
        return final
    ckpts = sorted((Path(out_dir) / CHECKPOINT_DIR).glob("iter-*.pt"))
    if not ckpts:
        raise GaitbenchError(f"nothing to resume in {out_dir}: no {CHECKPOINT_DIR}/iter-*.pt checkpoint")
    return ckpts[-1]


def check_resumable(payload: dict[str, Any], *, method: str, variant: str, fingerprint: str, recipe: Recipe,
                    source: str) -> None:
    """Refuse a checkpoint of another method, variant, dataset or recipe, saying which."""
    from ..config import to_dict

    problems = []
    if payload.get("method") != method:
        problems.append(f"method {payload.get('method')!r} (this run: {method!r})")
    if payload.get("variant") != variant:
        problems.append(f"variant {payload.get('variant')!r} (this run: {variant!r})")
    if payload.get("data_fingerprint") != fingerprint:
        problems.append(f"data fingerprint {payload.get('data_fingerprint')!r} (this run: {fingerprint!r})")
    saved, now = dict(payload.get("recipe") or {}), to_dict(recipe)
    for d in (saved, now):
        d.get("train", {}).pop("iterations", None)  # training longer is what resuming is for
        for knob in ("compile", "channels_last", "cudnn_benchmark"):  # speed only, not what is trained
            d.get("train", {}).pop(knob, None)
        for knob in ("max_frames_per_batch", "max_sequences_per_batch"):
            d.get("eval", {}).pop(knob, None)
        d.pop("source", None)
    if saved != now:
        keys = sorted(_diff_keys(saved, now))
        problems.append(f"recipe differs in {', '.join(keys)}")
    if problems:
        raise GaitbenchError(f"cannot resume from {source}: it was written with " + "; ".join(problems))


def _diff_keys(a: dict, b: dict, prefix: str = "") -> set[str]:
    out = set()
    for k in set(a) | set(b):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out |= _diff_keys(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.add(f"{prefix}{k}")
    return out
