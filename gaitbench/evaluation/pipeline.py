"""Choosing post-processing stages and evaluation options from the command line and recipes.

``--stage NAME`` (repeatable, applied in order) picks registered stages; ``--set
stages.NAME.PARAM=VALUE`` sets their parameters; ``--set metric=cos`` (and the protocol's other
evaluation options) changes the evaluation. Everything unknown is an error with "did you mean".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..config import parse_value
from ..errors import ConfigError, did_you_mean

# evaluation options a user may change per run; everything else is the protocol's definition
EVALUATION_OPTIONS = ("metric", "missing_gallery", "round_cells", "round_values", "exclude_identical_view")


def resolve_stages(names: Sequence[str], params: Mapping[str, Any], plugins) -> list[tuple[Any, dict]]:
    """``[(Stage, resolved params)]`` for the stage ``names`` in order; ``params`` maps a stage
    name to its parameter overrides. Parameters for a stage that is not asked for are an error
    (they would silently do nothing)."""
    if not names and not params:
        return []
    from .stages import resolve_params

    registry = plugins.stages()
    for name in names:
        if name not in registry:
            raise ConfigError(did_you_mean(name, registry, "stage") + " (see `gaitbench stages`)")
    for name, value in params.items():
        if name not in names:
            hint = f"add --stage {name}" if name in registry else did_you_mean(name, registry, "stage")
            raise ConfigError(f"parameters given for stage {name!r}, which does not run: {hint}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"stages.{name}: expected parameters as stages.{name}.KEY=VALUE, got {value!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"a stage is asked for twice: {list(names)}")
    return [(registry[name].obj, resolve_params(registry[name].obj, dict(params.get(name, {})))) for name in names]


def split_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set`` items of ``evaluate``: ``(evaluation option changes, {stage: {param: value}})``."""
    evaluation: dict[str, Any] = {}
    stages: dict[str, dict[str, Any]] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. metric=cos or stages.rerank.k1=20")
        key, value = (s.strip() for s in item.split("=", 1))
        parts = key.split(".")
        if parts[0] == "stages":
            if len(parts) != 3 or not all(parts):
                raise ConfigError(f"--set {item!r}: stage parameters are stages.NAME.PARAM=VALUE")
            stages.setdefault(parts[1], {})[parts[2]] = parse_value(value)
        elif key in EVALUATION_OPTIONS:
            evaluation[key] = None if value.lower() in ("none", "null") else parse_value(value)
        else:
            raise ConfigError(f"--set {item!r}: " + did_you_mean(key, list(EVALUATION_OPTIONS) + ["stages.NAME.PARAM"],
                                                                  "evaluation option"))
    return evaluation, stages


@dataclass
class Pipeline:
    """A named evaluation recipe over one or more embeddings files: how they are fused and which
    stages run with which parameters (e.g. GaitMask's HID 2021 entry). Method plugins ship them as
    TOML files listed in ``Method.extra["pipelines"]`` (``{name: path}``)."""

    name: str
    description: str = ""
    inputs: list[str] = field(default_factory=list)  # what each --embeddings file must be, in order
    fuse: str = ""  # "", "concat" or "mean-distance"
    normalize: bool = False
    stages: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # {stage: {parameter: value}}
    source: str = ""

    def validate(self, where: str):
        if self.fuse not in ("", "concat", "mean-distance"):
            raise ConfigError(f"{where}.fuse: expected concat, mean-distance or empty, got {self.fuse!r}")
        if len(self.inputs) > 1 and not self.fuse:
            raise ConfigError(f"{where}: {len(self.inputs)} inputs need fuse = \"concat\" or \"mean-distance\"")


def load_pipeline(name_or_path: str, plugins) -> Pipeline:
    """A pipeline file by path, or by name from the registered methods' ``extra["pipelines"]``."""
    from pathlib import Path

    from ..config import from_mapping, read_toml

    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path, origin = Path(name_or_path), "file"
        if not path.is_file():
            raise ConfigError(f"pipeline file not found: {path}")
    else:
        known = {}
        for method_name, reg in plugins.methods().items():
            for pname, ppath in (reg.obj.extra or {}).get("pipelines", {}).items():
                known[pname] = (Path(ppath), method_name)
        if name_or_path not in known:
            raise ConfigError(did_you_mean(name_or_path, known, "pipeline"))
        path, origin = known[name_or_path]
    data = dict(read_toml(path))
    data["source"] = f"{path} ({origin})"
    return from_mapping(Pipeline, data, f"pipeline {path}")
