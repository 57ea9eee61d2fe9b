"""Recipes: a method's training and inference hyper-parameters for one protocol, as data.

A recipe is a TOML file shipped by the method plugin (``recipes/<name>.toml``) or given by path;
``--set section.key=value`` overrides any field. Unknown keys are errors with "did you mean".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import apply_overrides, from_mapping, read_toml
from ..data.augment import AugmentConfig
from ..errors import ConfigError


def _at_least(where: str, **values) -> None:
    """``name=(value, least)``: each value a finite number >= least, else a :class:`ConfigError`
    naming the key (torch would stop with its own error, or train on nonsense)."""
    for name, (value, least) in values.items():
        if not math.isfinite(value) or value < least:
            raise ConfigError(f"{where}.{name}: expected a number >= {least}, got {value}")


@dataclass
class SamplerConfig:
    P: int = 8  # subjects per batch
    K: int = 16  # sequences per subject
    frames: int = 30  # frames per training clip
    order: str = "unordered"  # "unordered" (random frames) or "ordered" (a contiguous window)
    skip: int = 0  # ordered clips: extra window length from which `frames` are kept in order
    min_frames: int = 15  # shorter sequences are left out of training (counted in the log)

    def validate(self, where: str):
        if self.P < 1 or self.K < 2:
            raise ConfigError(f"{where}: P must be >= 1 and K >= 2 (a triplet needs a positive)")
        if self.frames < 1:
            raise ConfigError(f"{where}.frames: must be >= 1")
        if self.order not in {"unordered", "ordered"}:
            raise ConfigError(f"{where}.order: expected 'unordered' or 'ordered', got {self.order!r}")


@dataclass
class OptimizerConfig:
    name: str = "adam"  # any optimizer timm's create_optimizer_v2 knows: adam, adamw, sgd, ...
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9  # used by SGD only
    # SGD only: Nesterov momentum. The reference configs' "SGD, momentum 0.9" is torch's classical
    # momentum (timm's "sgd" alone would be Nesterov), so false unless a recipe says otherwise.
    nesterov: bool = False

    def validate(self, where: str):
        _at_least(where, lr=(self.lr, 0.0), weight_decay=(self.weight_decay, 0.0), momentum=(self.momentum, 0.0))
        if self.momentum >= 1:
            raise ConfigError(f"{where}.momentum: expected a number in [0, 1), got {self.momentum}")
        if self.nesterov and self.name.lower() not in ("sgd", "nesterov", "momentum"):
            raise ConfigError(f"{where}.nesterov: only SGD has Nesterov momentum (optimizer {self.name!r})")


@dataclass
class ScheduleConfig:
    """timm's multi-step schedule, stepped every iteration (milestones count iterations)."""

    milestones: list[int] = field(default_factory=list)  # iterations at which lr *= gamma
    gamma: float = 0.1
    warmup: int = 0  # linear warm-up iterations from warmup_lr to lr
    warmup_lr: float = 0.0

    def validate(self, where: str):
        _at_least(where, warmup=(self.warmup, 0), warmup_lr=(self.warmup_lr, 0.0))
        if not self.gamma > 0 or self.gamma == float("inf"):
            raise ConfigError(f"{where}.gamma: expected a positive number, got {self.gamma}")
        if any(m < 0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"{where}.milestones: expected iterations >= 0 in increasing order, got {self.milestones}")


@dataclass
class TripletConfig:
    weight: float = 1.0
    margin: float = 0.2

    def validate(self, where: str):
        _at_least(where, weight=(self.weight, 0.0), margin=(self.margin, 0.0))


@dataclass
class CrossEntropyConfig:
    weight: float = 0.0  # 0 = not used (methods without a classifier head)
    scale: float = 1.0  # logits are multiplied by this before the softmax
    label_smoothing: float = 0.0

    def validate(self, where: str):
        _at_least(where, weight=(self.weight, 0.0), label_smoothing=(self.label_smoothing, 0.0))
        if self.label_smoothing > 1 or not self.scale > 0:
            raise ConfigError(f"{where}: label_smoothing must lie in [0, 1] and scale be positive, got "
                              f"{self.label_smoothing} and {self.scale}")


@dataclass
class LossConfig:
    triplet: TripletConfig = field(default_factory=TripletConfig)
    cross_entropy: CrossEntropyConfig = field(default_factory=CrossEntropyConfig)


@dataclass
class TrainConfig:
    iterations: int = 1000
    log_every: int = 100
    checkpoint_every: int = 10000  # also at the end; 0 = only at the end
    keep_checkpoints: int = 3  # periodic checkpoints kept (the final one always is)
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), bf16, fp16 (with a gradient scaler), none
    tensorboard: bool = False  # also log to TensorBoard (when the tensorboard package is installed)
    # speed (results are the same up to float rounding):
    compile: str = ""  # a torch.compile backend for the training forward ("inductor", ...); "" = eager
    channels_last: bool = False  # weights in channels-last (3-D: channels_last_3d) memory format
    cudnn_benchmark: bool = True  # CUDA: autotune convolutions for the fixed clip shape (off when deterministic)

    def validate(self, where: str):
        if self.amp not in {"auto", "bf16", "fp16", "none"}:
            raise ConfigError(f"{where}.amp: expected auto, bf16, fp16 or none, got {self.amp!r}")
        if self.iterations < 0 or self.log_every < 1 or self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ConfigError(f"{where}: iterations >= 0, log_every >= 1, checkpoint_every >= 0 and "
                              "keep_checkpoints >= 1 are required")


@dataclass
class EvalConfig:
    # inference batch size is a frame budget, not a GPU count; 0 = the device's default
    # (steps.default_frame_budget: 4096 frames on CUDA, 128 on a CPU, where small batches stay in cache)
    max_frames_per_batch: int = 0
    max_sequences_per_batch: int = 64
    # post-processing stages run on the test distances, in order (none unless asked); their
    # parameters live in the recipe's [stages.<name>] tables
    stages: list[str] = field(default_factory=list)
    metric: str = ""  # the distance at evaluation; empty = the protocol's (the Gait3D configs use cos)
    verification: bool = False  # also TAR@FAR, EER and the ROC over genuine / impostor pairs

    def validate(self, where: str):
        if self.max_frames_per_batch < 0 or self.max_sequences_per_batch < 1:
            raise ConfigError(f"{where}: max_frames_per_batch must be >= 0 (0 = the device's default) and "
                              "max_sequences_per_batch >= 1")
        if self.metric not in ("", "euc", "cos", "flat_euc"):
            raise ConfigError(f"{where}.metric: expected euc, cos, flat_euc or empty (the protocol's), got {self.metric!r}")


@dataclass
class PretrainingConfig:
    """The run a recipe is meant to start from (``--init-from``), e.g. the HID reports' CASIA-E
    training starts from an OU-MVLP model: ``recipe`` of the same method under ``protocol``."""

    recipe: str = ""
    protocol: str = ""

    def validate(self, where: str):
        if bool(self.recipe) != bool(self.protocol):
            raise ConfigError(f"{where}: give both recipe and protocol of the pre-training run, or neither")


@dataclass
class Recipe:
    name: str
    description: str = ""
    variant: str = ""  # the method variant to build; empty = the method's default
    # protocols this is the paper recipe for (chosen by default on real data when no recipe is
    # named after the protocol), e.g. hid2020 for "hid"
    protocols: list[str] = field(default_factory=list)
    pretraining: PretrainingConfig = field(default_factory=PretrainingConfig)
    model: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for build_model
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    # training-time data augmentation of the sampled clips (gaitbench/data/augment.py)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stages: dict[str, Any] = field(default_factory=dict)  # {stage name: {parameter: value}}
    source: str = ""


def load_recipe(source: str | Path, overrides: list[str] = ()) -> Recipe:
    """Load a recipe file and apply ``--set`` overrides."""
    data = read_toml(source)
    data.setdefault("name", Path(str(source)).stem)
    if overrides:
        data = apply_overrides(data, list(overrides))
    data["source"] = str(source)
    return from_mapping(Recipe, data, f"recipe {source}")


def resolve_recipe(method, name_or_path: str, overrides: list[str] = (), protocol=None) -> Recipe:
    """A recipe of ``method`` by name (``quick``, ``casiab``...) or a recipe file by path.

    With ``protocol``, a name is first looked up as ``<name>-<protocol name>``, then
    ``<name>-<protocol dataset>``, then as itself: ``--recipe tpami --protocol oumvlp`` takes
    ``tpami-oumvlp``, ``--recipe tpami --protocol casiab`` takes ``tpami``."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        return load_recipe(path, overrides)
    if protocol is not None:
        names = set(method.recipe_names())
        for candidate in (f"{name_or_path}-{protocol.name}", f"{name_or_path}-{protocol.dataset}"):
            if candidate in names:
                return load_recipe(method.recipe_path(candidate), overrides)
    return load_recipe(method.recipe_path(name_or_path), overrides)


def recipes_for_protocol(method, protocol) -> list[str]:
    """Names of ``method``'s recipes that declare ``protocol`` (by name) in their ``protocols``."""
    found = []
    for name in method.recipe_names():
        data = read_toml(method.recipe_path(name))
        if protocol.name in (data.get("protocols") or []):
            found.append(name)
    return found
