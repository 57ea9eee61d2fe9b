"""Choosing post-processing stages and evaluation options from the command line and recipes.

``--stage NAME`` (repeatable, applied in order) picks registered stages; ``--set
stages.NAME.PARAM=VALUE`` sets their parameters; ``--set metric=cos`` (and the protocol's other
evaluation options) changes the evaluation; ``--set verification=true`` adds the open-set figures. Everything unknown is an error with "did you mean".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import parse_value
from ..contracts import Pipeline
from ..errors import ConfigError, did_you_mean

# evaluation options a user may change per run; everything else is the protocol's definition
EVALUATION_OPTIONS = ("metric", "missing_gallery", "round_cells", "round_values", "exclude_identical_view")


def resolve_stages(names: Sequence[str], params: Mapping[str, Any], registry) -> list[tuple[Any, dict]]:
    """``[(Stage, resolved params)]`` for the stage ``names`` in order, from ``registry`` (the
    stages plugins registered); ``params`` maps a stage name to its parameter overrides.
    Parameters for a stage that is not asked for are an error (they would silently do nothing)."""
    if not names and not params:
        return []
    from .stages import resolve_params

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
    return [(registry.get(name), resolve_params(registry.get(name), dict(params.get(name, {})))) for name in names]


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
        elif key == "verification":
            flag = parse_value(value)
            if not isinstance(flag, bool):
                raise ConfigError(f"--set {item!r}: verification takes true or false")
            evaluation[key] = flag
        elif key in EVALUATION_OPTIONS:
            evaluation[key] = None if value.lower() in ("none", "null") else parse_value(value)
        else:
            raise ConfigError(f"--set {item!r}: " + did_you_mean(key, list(EVALUATION_OPTIONS) + ["verification",
                                                                                                 "stages.NAME.PARAM"],
                                                                  "evaluation option"))
    return evaluation, stages


def load_pipeline(name_or_path: str, pipelines) -> Pipeline:
    """A pipeline file by path, or by name from ``pipelines`` (the registry of the pipeline files
    methods ship)."""
    from ..config import from_mapping, read_toml
    from ..registry import looks_like_path, resolve_name_or_path

    def load(path: Path) -> Pipeline:
        data = dict(read_toml(path))
        origin = "file" if looks_like_path(name_or_path) else pipelines.plugin_of(name_or_path)
        data["source"] = f"{path} ({origin})"
        return from_mapping(Pipeline, data, f"pipeline {path}")

    return load(resolve_name_or_path(name_or_path, pipelines, Path, "pipeline"))


@dataclass
class EvaluationPlan:
    """How saved embeddings are evaluated: the stages with their parameters, how several files
    are fused, the evaluation options changed with ``--set``, and the pipeline they came from."""

    stages: list[tuple[Any, dict]]
    fuse: str | None = None
    normalize: bool = False
    changes: dict[str, Any] = field(default_factory=dict)
    pipeline: Pipeline | None = None
    verification: bool = False  # --set verification=true: TAR@FAR, EER and ROC too


def plan_evaluation(files: Sequence[str], *, stages: Sequence[str] = (), overrides: Sequence[str] = (),
                    fuse: str | None = None, normalize: bool = False, pipeline: str | None = None,
                    plugins) -> EvaluationPlan:
    """Merge a pipeline (its fusion, stages and parameters) with the command line's ``--stage``,
    ``--set`` and ``--fuse``, and check that the combination makes sense for ``files``: the
    command line's stage parameters win over the pipeline's, its stages run after the
    pipeline's."""
    changes, params = split_overrides(overrides)
    verification = bool(changes.pop("verification", False))
    names, pipe = list(stages), None
    if pipeline:
        pipe = load_pipeline(pipeline, plugins.pipelines())
        if pipe.inputs and len(files) != len(pipe.inputs):
            raise ConfigError(f"pipeline {pipe.name} takes {len(pipe.inputs)} embeddings files, in this order: "
                              f"{', '.join(pipe.inputs)}; got {len(files)}")
        fuse, normalize = fuse or pipe.fuse or None, normalize or pipe.normalize
        merged = {k: dict(v) for k, v in pipe.params.items()}
        for name, values in params.items():  # --set stages.X.Y overrides the pipeline's
            merged.setdefault(name, {}).update(values)
        names, params = list(pipe.stages) + [s for s in names if s not in pipe.stages], merged
    if len(files) > 1 and not fuse:
        raise ConfigError(f"{len(files)} embeddings files given: choose how to combine them with "
                          "--fuse concat or --fuse mean-distance")
    if fuse and len(files) < 2:
        raise ConfigError("--fuse needs at least two --embeddings files")
    if normalize and fuse != "concat":
        raise ConfigError("--normalize applies to --fuse concat")
    return EvaluationPlan(resolve_stages(names, params, plugins.stages()), fuse, normalize, changes, pipe,
                          verification)
