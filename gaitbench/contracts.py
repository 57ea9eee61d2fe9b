"""The contract types plugins register, as plain data: :class:`Method`, :class:`Stage`,
:class:`ThroughputCase` and :class:`Pipeline`.

This module is the bottom of the layering: it imports nothing of gaitbench's except the error
types, and no third-party package, so ``import gaitbench`` and listing what plugins registered
stay cheap (no torch). Callables may be given as lazy ``"package.module:attr"`` references,
imported on first use (:func:`load_object`), so a plugin never writes a wrapper to defer an
import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError, PluginError, did_you_mean

__all__ = ["Method", "Pipeline", "Stage", "ThroughputCase", "is_lazy", "load_object"]


def is_lazy(value: Any) -> bool:
    """True for a ``"package.module:attr"`` reference."""
    return isinstance(value, str) and value.count(":") == 1 and all(value.split(":"))


def load_object(reference: str) -> Any:
    """The object a ``"package.module:attr"`` reference names (``attr`` may be dotted); a reference
    that does not import is a :class:`PluginError` naming it."""
    module_name, _, attr = reference.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"cannot load {reference!r}: {type(exc).__name__}: {exc}") from None
    return obj


def _callable(value: Callable[..., Any] | str) -> Callable[..., Any]:
    return load_object(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------- throughput cases


@dataclass(frozen=True)
class ThroughputCase:
    """A shape at which a method's speed is measured (``gaitbench bench``, the throughput tests).

    ``kind``: ``train`` (forward + loss + backward + optimizer step on ``P x K`` clips of
    ``frames``) or ``inference`` (``batch`` whole sequences of ``frames`` per forward).
    ``method`` is filled in by the :class:`Method` that carries the case. :meth:`tiny` gives the
    shapes of the CPU smoke run of the same case."""

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
    method: str = ""

    def __post_init__(self):
        if self.kind not in ("train", "inference"):
            raise ValueError(f"throughput case {self.id}: kind must be 'train' or 'inference', got {self.kind!r}")

    @property
    def id(self) -> str:
        return f"{self.method}/{self.name}"

    @classmethod
    def standard(cls, prefix: str, variant: str, *, P: int, K: int, frames: int = 30, recipe: str | None = None,
                 test_frames: int = 80) -> tuple["ThroughputCase", ...]:
        """The usual three cases of one network: a training step at the recipe's batch, and
        inference of one and of 16 packed ``test_frames``-frame sequences per forward."""
        return (
            cls(f"{prefix}-train", "train", variant, frames=frames, P=P, K=K, recipe=recipe or prefix,
                description=f"{variant} network, {P} x {K} clips of {frames} frames"),
            cls(f"{prefix}-infer-1x{test_frames}", "inference", variant, frames=test_frames, batch=1,
                description=f"{variant} network, one {test_frames}-frame sequence per forward"),
            cls(f"{prefix}-infer-16x{test_frames}", "inference", variant, frames=test_frames, batch=16,
                description=f"{variant} network, 16 packed {test_frames}-frame sequences per forward"),
        )

    def tiny(self) -> "ThroughputCase":
        return replace(self, frames=min(self.frames, 6), batch=min(self.batch, 2), P=2, K=2, amp="none")


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """A gait recognition method, registered through ``register_methods``.

    - ``build_model(**kwargs)`` (a callable, or a ``"module:attr"`` reference to one, e.g. the
      model class) returns a ``torch.nn.Module`` whose ``forward(sils, lengths=None)`` maps
      ``[N, T, H, W]`` silhouettes in [0, 1] to ``{"embeddings": [N, C, P]}`` (plus ``"logits":
      [N, classes, P]`` for methods with a classifier head).
    - ``variants`` maps a variant name to the keyword arguments ``build_model`` receives for it;
      ``default_variant`` is used when none is asked for. A variant may declare its own
      ``input_size``; ``input_size`` here is the method's default (height, width).
    - ``recipes`` is a folder of recipe files (``<name>.toml``): the papers' settings per protocol
      and ``quick.toml`` for CPU runs on synthetic data. ``pipelines`` maps pipeline names to
      pipeline files (evaluation over several methods' embeddings, e.g. GaitMask's HID 2021 entry).
    - ``throughput_cases``: the shapes its speed is measured at (``gaitbench bench``).
    - ``paper``: the publication, shown by ``gaitbench methods``.
    - Training customisation, called by the one trainer: ``param_groups(model, recipe)`` (optimizer
      parameter groups), ``regularizer(trainer, outputs)`` (an extra scalar loss), and
      ``class_count_arg``, the ``build_model`` argument that sets the classifier's class count (a
      run passes the number of training subjects unless the recipe's ``[model]`` sets it).
    """

    name: str
    description: str
    paper: str
    build_model: Callable[..., Any] | str
    variants: Mapping[str, Mapping[str, Any]]
    default_variant: str
    recipes: Path
    input_size: tuple[int, int] = (64, 44)
    param_groups: Callable[..., Any] | None = None
    class_count_arg: str | None = None
    regularizer: Callable[..., Any] | None = None
    throughput_cases: Sequence[ThroughputCase] = ()
    pipelines: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"method name {self.name!r} must be a non-empty identifier")
        if self.default_variant not in self.variants:
            raise ConfigError(f"method {self.name!r}: default_variant {self.default_variant!r} is not one of its "
                              f"variants {sorted(self.variants)}")
        cases = []
        for case in self.throughput_cases:
            if case.method not in ("", self.name):
                raise ConfigError(f"method {self.name!r} carries throughput case {case.id!r} of another method")
            if case.variant not in self.variants:
                raise ConfigError(f"method {self.name!r}: throughput case {case.name!r} uses unknown variant "
                                  f"{case.variant!r}")
            cases.append(replace(case, method=self.name))
        object.__setattr__(self, "throughput_cases", tuple(cases))
        object.__setattr__(self, "pipelines", {k: Path(v) for k, v in dict(self.pipelines).items()})

    def variant_kwargs(self, variant: str | None) -> dict[str, Any]:
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise ConfigError(did_you_mean(variant, self.variants, f"variant of method {self.name!r}"))
        return dict(self.variants[variant])

    def variant_input_size(self, variant: str | None) -> tuple[int, int]:
        """The silhouette (height, width) ``variant`` takes: its own ``input_size``, else the method's."""
        size = self.variant_kwargs(variant).get("input_size", self.input_size)
        return int(size[0]), int(size[1])

    def create(self, variant: str | None = None, **overrides):
        """Build the model of ``variant``; overrides left as None never replace variant defaults."""
        kwargs = self.variant_kwargs(variant)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return _callable(self.build_model)(**kwargs)

    def recipe_names(self) -> list[str]:
        return sorted(p.stem for p in Path(self.recipes).glob("*.toml"))

    def recipe_path(self, name: str) -> Path:
        path = Path(self.recipes) / f"{name}.toml"
        if not path.is_file():
            raise ConfigError(did_you_mean(name, self.recipe_names(), f"recipe of method {self.name!r}"))
        return path


# --------------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """A post-processing stage registered through ``register_stages``.

    ``apply(data, **params)`` (a callable or a ``"module:function"`` reference) receives a
    :class:`gaitbench.evaluation.stages.StageInput` and the resolved parameters (``defaults``
    merged with a preset and the user's keys; ``preset`` itself is not passed) and returns a new
    ``StageInput``: a *feature* stage (query expansion) returns new probe / gallery features and
    ``distance=None``; a *distance* stage (re-ranking) keeps the features and returns a new
    ``distance``. ``transductive`` says whether it uses other probes' features (results then
    depend on the whole probe set and reports label them so). ``sides`` documents which
    embeddings a feature stage changes: "probe", "gallery" or "both". ``presets`` maps preset names
    to parameter sets; the default preset is ``defaults["preset"]``.
    """

    name: str
    description: str
    apply: Callable[..., Any] | str
    transductive: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    sides: str = ""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __call__(self, data, **params):
        """Run the stage (imports a lazy ``apply`` on first use)."""
        return _callable(self.apply)(data, **params)


# --------------------------------------------------------------------------- pipelines

FUSIONS = ("", "concat", "mean-distance")


@dataclass
class Pipeline:
    """A named evaluation recipe over one or more embeddings files: how they are fused and which
    stages run with which parameters (e.g. GaitMask's HID 2021 entry). Methods ship them as TOML
    files (``Method.pipelines``)."""

    name: str
    description: str = ""
    inputs: list[str] = field(default_factory=list)  # what each --embeddings file must be, in order
    fuse: str = ""  # "", "concat" or "mean-distance"
    normalize: bool = False
    stages: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # {stage: {parameter: value}}
    source: str = ""

    def validate(self, where: str):
        if self.fuse not in FUSIONS:
            raise ConfigError(f"{where}.fuse: expected concat, mean-distance or empty, got {self.fuse!r}")
        if len(self.inputs) > 1 and not self.fuse:
            raise ConfigError(f"{where}: {len(self.inputs)} inputs need fuse = \"concat\" or \"mean-distance\"")
