"""Protocols: versioned declarative files that say how a dataset is split and evaluated.

A protocol file (TOML) has a name, a version, the dataset layout it expects, the train/test split
(subject id ranges, or a partition JSON given by the user) and an ``[evaluation]`` section whose
``kind`` selects the evaluator. Nothing about views, probe types or divisors lives in code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import from_mapping, read_toml
from .errors import ConfigError, DataError


@dataclass
class Split:
    """Subject ids for training and testing: ``"001-074"`` is an inclusive range (the width of
    the numbers is kept, so ids stay zero-padded strings), anything else an id."""

    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def validate(self, where: str):
        for name in ("train", "test"):
            for item in getattr(self, name):
                _expand(item, f"{where}.{name}")

    def ids(self, which: str) -> set[str]:
        return {i for item in getattr(self, which) for i in _expand(item, which)}


def _expand(item: str, where: str) -> list[str]:
    if "-" in item and all(part.isdigit() for part in item.split("-", 1)):
        lo, hi = item.split("-", 1)
        if int(lo) > int(hi):
            raise ConfigError(f"{where}: empty id range {item!r}")
        width = len(lo)
        return [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    return [item]


@dataclass
class ViewMatrixEvaluation:
    """The single-view-gallery cross-view protocol (CASIA-B, OU-MVLP): one rank-1 matrix of probe
    view x gallery view per probe set, averaged as the reference evaluator does."""

    kind: str
    views: list[str]
    gallery_types: list[str]
    probe_sets: dict[str, Any]
    metric: str = "euc"
    exclude_identical_view: bool = True
    # "miss": a probe whose subject has no gallery at a view counts as a miss (the reference);
    # "exclude": such probes leave the cell's denominator; "both": report both conventions.
    missing_gallery: str = "miss"
    round_cells: int | None = 2  # the reference rounds each cell to 2 decimals before averaging

    def validate(self, where: str):
        if self.kind != "view_matrix":
            raise ConfigError(f"{where}.kind: expected 'view_matrix', got {self.kind!r}")
        if len(self.views) < 2:
            raise ConfigError(f"{where}.views: at least two views are needed")
        if not self.gallery_types:
            raise ConfigError(f"{where}.gallery_types: must not be empty")
        if not self.probe_sets:
            raise ConfigError(f"{where}.probe_sets: must not be empty")
        for name, types in self.probe_sets.items():
            if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
                raise ConfigError(f"{where}.probe_sets.{name}: expected a non-empty list of type names")
        if self.metric not in {"euc", "cos", "flat_euc"}:
            raise ConfigError(f"{where}.metric: expected euc, cos or flat_euc, got {self.metric!r}")
        if self.missing_gallery not in {"miss", "exclude", "both"}:
            raise ConfigError(f"{where}.missing_gallery: expected miss, exclude or both, got {self.missing_gallery!r}")

    @property
    def probe_types(self) -> set[str]:
        return {t for types in self.probe_sets.values() for t in types}


EVALUATIONS = {"view_matrix": ViewMatrixEvaluation}


@dataclass
class Protocol:
    name: str
    version: str
    description: str
    dataset: str
    split: Split
    evaluation: Any
    reference: str = ""
    source: str = ""

    def with_partition(self, path: str | Path) -> "Protocol":
        """This protocol with the split read from an OpenGait-style partition JSON."""
        return _replace_split(self, load_partition(path))

    def describe(self) -> str:
        return f"{self.name} v{self.version}"


def _replace_split(proto: Protocol, split: Split) -> Protocol:
    from dataclasses import replace

    return replace(proto, split=split)


def load_partition(path: str | Path) -> Split:
    """``{"TRAIN_SET": [...], "TEST_SET": [...]}`` as written by OpenGait's dataset tools."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(f"partition file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"partition file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("TRAIN_SET"), list) or not isinstance(data.get("TEST_SET"), list):
        raise DataError(f"partition file {path}: expected an object with lists TRAIN_SET and TEST_SET")
    return Split(train=[str(i) for i in data["TRAIN_SET"]], test=[str(i) for i in data["TEST_SET"]])


def load_protocol(source) -> Protocol:
    """Load and validate a protocol file (a path or a Traversable)."""
    data = read_toml(source)
    where = f"{source}"
    for key in ("evaluation",):
        if key not in data or not isinstance(data[key], dict):
            raise ConfigError(f"{where}: missing section [{key}]")
    kind = data["evaluation"].get("kind")
    if kind not in EVALUATIONS:
        raise ConfigError(f"{where}: [evaluation] kind {kind!r} is not one of {sorted(EVALUATIONS)}")
    data = dict(data)
    evaluation = from_mapping(EVALUATIONS[kind], data.pop("evaluation"), f"{where} [evaluation]")
    rest = from_mapping(_ProtocolHead, data, where)
    return Protocol(
        name=rest.name, version=rest.version, description=rest.description, dataset=rest.dataset,
        split=rest.split, evaluation=evaluation, reference=rest.reference, source=str(source),
    )


@dataclass
class _ProtocolHead:
    name: str
    version: str
    description: str
    dataset: str
    split: Split = field(default_factory=Split)
    reference: str = ""


def resolve_protocol(name_or_path: str, plugins=None) -> Protocol:
    """A registered protocol by name, or a protocol file by path."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"protocol file not found: {path}")
        return load_protocol(path)
    from .errors import did_you_mean
    from .plugins import get_plugins

    protocols = (plugins or get_plugins()).protocols()
    if name_or_path not in protocols:
        raise ConfigError(did_you_mean(name_or_path, protocols, "protocol"))
    return protocols[name_or_path].obj
