"""One training loop for every method. Methods adapt it through recipes and hooks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from ..data.sampling import TripletSampler
from .losses import triplet_loss
from .recipe import Recipe


def build_optimizer(model: torch.nn.Module, recipe: Recipe):
    """timm's optimizer factory; weight decay on every parameter, as the reference configs do."""
    from timm.optim import create_optimizer_v2

    opt = recipe.optimizer
    kwargs: dict[str, Any] = {}
    if opt.name.lower() in {"sgd", "momentum", "nesterov"}:
        kwargs["momentum"] = opt.momentum
    return create_optimizer_v2(model, opt=opt.name, lr=opt.lr, weight_decay=opt.weight_decay,
                               filter_bias_and_bn=False, **kwargs)


class Trainer:
    """Trains ``model`` on batches from ``sampler`` following ``recipe``.

    Hooks see the trainer (``trainer.model``, ``trainer.recipe``, ``trainer.step``) and a
    read-only ``logs`` mapping after every step.
    """

    def __init__(self, model: torch.nn.Module, recipe: Recipe, sampler: TripletSampler, *, device: str = "cpu",
                 plugins=None, out_dir: str | Path | None = None, progress: bool = True):
        self.model, self.recipe, self.sampler = model, recipe, sampler
        self.device = torch.device(device)
        self.plugins = plugins
        self.out_dir = Path(out_dir) if out_dir else None
        self.progress = progress
        self.optimizer = build_optimizer(model, recipe)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(recipe.schedule.milestones), gamma=recipe.schedule.gamma)
        self.step = 0
        self.history: list[dict[str, float]] = []

    def _log_file(self):
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8")

    def train(self, iterations: int) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        if self.plugins:
            self.plugins.train_start(self)
        self.model.train()
        loss_cfg = self.recipe.loss.triplet
        log_every = max(1, self.recipe.train.log_every)
        log = self._log_file()
        bar = tqdm(total=iterations, desc="training", unit="it", disable=not self.progress, dynamic_ncols=True)
        started = time.perf_counter()
        try:
            while self.step < iterations:
                batch = self.sampler.next_batch()
                sils = torch.from_numpy(batch.sils).to(self.device, non_blocking=True)
                labels = torch.from_numpy(batch.labels).to(self.device, non_blocking=True)
                out = self.model(sils)
                loss, parts = triplet_loss(out["embeddings"], labels, margin=loss_cfg.margin)
                loss = loss * loss_cfg.weight
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                logs = {"loss": loss.detach(), **parts}
                if self.step % log_every == 0 or self.step == iterations or self.step == 1:
                    # Converting to floats synchronises with the device: only at log steps.
                    record = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                              **{k: float(v) for k, v in logs.items()},
                              "elapsed_s": round(time.perf_counter() - started, 3)}
                    self.history.append(record)
                    if log:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    bar.set_postfix(loss=f"{record['loss']:.4f}", nz=f"{record['loss_num']:.0f}")
                if self.plugins:
                    self.plugins.train_step_end(self, self.step, MappingProxyType(logs))
                bar.update(1)
        finally:
            bar.close()
            if log:
                log.close()
        if self.plugins:
            self.plugins.train_end(self)
        return self.history


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
