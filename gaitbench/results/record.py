"""The run record (``result.json``) as types: what a run writes and what leaderboards, reports,
plots and ``compare`` read.

``RunRecord.from_json`` accepts every record gaitbench has written (files without
``schema_version`` are schema 1, the format the field was introduced with); unknown keys are kept
and written back, so ``from_json(d).to_json() == d`` for a record of this schema. Readers use the
typed fields and the few derived properties here (labels, comparability), never ``.get`` chains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

from ..errors import GaitbenchError

__all__ = ["SCHEMA_VERSION", "BenchRecord", "DatasetInfo", "EvaluationSettings", "ProbeSetTable", "RunLike", "RunRecord",
           "SplitInfo", "StageRecord", "Tables", "Versions", "as_record", "as_run", "load_records", "read_record", "read_run"]

SCHEMA_VERSION = 1


def _pop(data: dict, key: str, default: Any = None) -> Any:
    return data.pop(key, default)


def _ordered(pairs: list[tuple[str, Any]], extra: Mapping[str, Any], keep_none: tuple[str, ...] = ()) -> dict:
    """``pairs`` (None values kept only for the keys in ``keep_none`` or when present in the
    original) followed by ``extra``."""
    out = {k: v for k, v in pairs if v is not None or k in keep_none}
    out.update(extra)
    return out


# --------------------------------------------------------------------------- parts


@dataclass
class DatasetInfo:
    """What the run's data was: ``synthetic`` says whether any number may be compared with papers."""

    name: str = "?"
    synthetic: bool = False
    fingerprint: str = "?"
    extra: dict[str, Any] = field(default_factory=dict)  # root, sequences, subjects, store, generator...

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "DatasetInfo":
        d = dict(data or {})
        return cls(name=str(_pop(d, "name", "?")), synthetic=bool(_pop(d, "synthetic", False)),
                   fingerprint=str(_pop(d, "fingerprint", "?")), extra=d)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "synthetic": self.synthetic, "fingerprint": self.fingerprint, **self.extra}

    def get(self, key: str, default: Any = None) -> Any:
        """A further field the data layer recorded (``subjects``, ``generator``...)."""
        return self.extra.get(key, default)


@dataclass
class SplitInfo:
    """The protocol split the run used: subject-id rules, or the partition file it came from."""

    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    partition: str | None = None
    probe_set: int | None = None  # size of the partition's PROBE_SET (Gait3D), if any

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "SplitInfo":
        d = dict(data or {})
        return cls(train=list(d.get("train") or []), test=list(d.get("test") or []), partition=d.get("partition"),
                   probe_set=d.get("probe_set"))

    def to_json(self) -> dict[str, Any]:
        return {"train": self.train, "test": self.test, "partition": self.partition, "probe_set": self.probe_set}

    @property
    def label(self) -> str:
        if self.partition:
            return f"partition {Path(self.partition).name}"
        return f"train {','.join(self.train or ['?'])} / test {','.join(self.test or ['?'])}"

    def key(self) -> str:
        return json.dumps({"train": self.train or None, "test": self.test or None, "partition": self.partition},
                          sort_keys=True)


@dataclass
class ProbeSetTable:
    """One probe set's evaluation. View-matrix protocols (CASIA-B, OU-MVLP) fill ``views``,
    ``per_probe_view`` (view -> rank-1), ``matrix`` and, for OU-MVLP, ``valid``; retrieval and
    identification protocols fill ``values`` (metric -> value) and, averaged over probe views,
    ``per_probe_view`` (view -> {metric: value})."""

    name: str
    num_probes: int | None = None
    num_gallery: int | None = None
    values: dict[str, float] | None = None
    views: list[str] | None = None
    per_probe_view: dict[str, Any] | None = None
    matrix: list | None = None
    valid: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list, repr=False)

    FIELDS = ("num_probes", "num_gallery", "values", "views", "per_probe_view", "matrix", "valid")

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> "ProbeSetTable":
        d = dict(data)
        known = {k: d.pop(k) for k in cls.FIELDS if k in d}
        return cls(name=name, **known, extra=d, _order=list(data))

    def to_json(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}
        values.update(self.extra)
        order = [k for k in self._order if k in values] + [k for k in values if k not in self._order]
        return {k: values[k] for k in order}

    @property
    def is_view_matrix(self) -> bool:
        """Rank-1 per probe view over single-view galleries (CASIA-B / OU-MVLP layout)."""
        return self.views is not None and self.per_probe_view is not None and self.matrix is not None


@dataclass
class EvaluationSettings:
    """The evaluation options the report was computed with (metric, rounding, exclusions...)."""

    metric: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvaluationSettings":
        d = dict(data)
        return cls(metric=d.get("metric"), options=d)

    def to_json(self) -> dict[str, Any]:
        return dict(self.options)

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass
class Tables:
    """The report's tables: one :class:`ProbeSetTable` per probe set, the evaluation settings, and
    protocol-level extras (``ignored_views``...)."""

    probe_sets: dict[str, ProbeSetTable] = field(default_factory=dict)
    settings: EvaluationSettings | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Tables":
        probe_sets, settings, extra = {}, None, {}
        for key, value in (data or {}).items():
            if key == "settings" and isinstance(value, Mapping):
                settings = EvaluationSettings.from_json(value)
            elif isinstance(value, Mapping) and "num_probes" in value:
                probe_sets[key] = ProbeSetTable.from_json(key, value)
            else:
                extra[key] = value
        return cls(probe_sets, settings, extra, list(data or {}))

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {**self.extra, **{k: t.to_json() for k, t in self.probe_sets.items()}}
        if self.settings is not None:
            values["settings"] = self.settings.to_json()
        order = [k for k in self._order if k in values] + [k for k in values if k not in self._order]
        return {k: values[k] for k in order}

    def view_matrices(self) -> Iterator[ProbeSetTable]:
        return (t for t in self.probe_sets.values() if t.is_view_matrix)


@dataclass
class StageRecord:
    """A post-processing stage as it ran: name, resolved parameters, transductive or not, time."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    transductive: bool = False
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> "StageRecord":
        if not isinstance(data, Mapping):  # early records listed names only
            return cls(name=str(data))
        d = dict(data)
        return cls(name=str(_pop(d, "name", "?")), params=dict(_pop(d, "params", None) or {}),
                   transductive=bool(_pop(d, "transductive", False)), seconds=_pop(d, "seconds"), extra=d)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "transductive": self.transductive,
                "seconds": self.seconds, **self.extra}

    @property
    def label(self) -> str:
        """``rerank(k1=20,k2=6,...)``: the name with its parameters."""
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return self.name + (f"({args})" if args else "")


@dataclass
class Versions:
    gaitbench: str = "?"
    torch: str | None = None
    python: str | None = None
    plugin: dict[str, Any] | None = None  # name, distribution, version of the method's plugin

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Versions":
        d = dict(data or {})
        return cls(str(d.get("gaitbench", "?")), d.get("torch"), d.get("python"), d.get("plugin"))

    def to_json(self) -> dict[str, Any]:
        return {"gaitbench": self.gaitbench, "torch": self.torch, "python": self.python, "plugin": self.plugin}


# --------------------------------------------------------------------------- the record


@dataclass
class RunRecord:
    """One run: what was trained on what, how it was evaluated, and the numbers."""

    method: str
    protocol: str
    metrics: dict[str, float]
    variant: str = ""
    recipe: str = ""
    protocol_version: str = "?"
    split: SplitInfo = field(default_factory=SplitInfo)
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved recipe
    seed: int | None = None
    deterministic: bool = False
    iterations: int | None = None
    device: str | None = None
    world_size: int = 1
    global_batch: int | None = None
    precision: str | None = None
    parameters: int | None = None
    tables: Tables = field(default_factory=Tables)
    timings: dict[str, Any] = field(default_factory=dict)
    versions: Versions = field(default_factory=Versions)
    stages: list[StageRecord] = field(default_factory=list)
    data_problems: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    evaluated_checkpoint: str | None = None
    checkpoint: str | None = None
    submission: dict[str, Any] | None = None  # identification protocols: the file and the truth it was scored with
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys of later schemas or plugins, kept
    source: str = ""  # where the record was read from (not written)

    # -- JSON -----------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "") -> "RunRecord":
        where = source or "run record"
        if not isinstance(data, Mapping) or "protocol" not in data or "metrics" not in data or "method" not in data:
            raise GaitbenchError(f"{where}: not a gaitbench run record (needs 'method', 'protocol' and 'metrics')")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise GaitbenchError(f"{where}: run-record schema {version!r} is newer than this gaitbench reads "
                                 f"({SCHEMA_VERSION}); upgrade gaitbench")
        if not isinstance(data["metrics"], Mapping):
            raise GaitbenchError(f"{where}: 'metrics' must be an object of metric -> value")
        d = dict(data)
        d.pop("schema_version", None)
        scalars = {k: d.pop(k) for k in ("variant", "recipe", "protocol_version", "seed", "deterministic",
                                         "iterations", "device", "world_size", "global_batch", "precision",
                                         "parameters", "evaluated_checkpoint", "checkpoint", "submission",
                                         "config", "timings", "data_problems", "training") if k in d}
        return cls(
            method=str(d.pop("method")), protocol=str(d.pop("protocol")), metrics=dict(d.pop("metrics")),
            split=SplitInfo.from_json(d.pop("split", None)), dataset=DatasetInfo.from_json(d.pop("dataset", None)),
            tables=Tables.from_json(d.pop("tables", None)), versions=Versions.from_json(d.pop("versions", None)),
            stages=[StageRecord.from_json(s) for s in d.pop("stages", None) or []],
            **{k: (v if v is not None or k not in _NOT_NONE else _NOT_NONE[k]) for k, v in scalars.items()},
            schema_version=SCHEMA_VERSION, extra=d, source=source)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "method": self.method, "variant": self.variant, "recipe": self.recipe, "protocol": self.protocol,
            "protocol_version": self.protocol_version, "split": self.split.to_json(), "dataset": self.dataset.to_json(),
            "config": self.config, "seed": self.seed, "deterministic": self.deterministic,
            "iterations": self.iterations, "device": self.device, "world_size": self.world_size,
            "global_batch": self.global_batch, "precision": self.precision, "parameters": self.parameters,
            "metrics": self.metrics, "tables": self.tables.to_json(), "timings": self.timings,
            "versions": self.versions.to_json(), "stages": [s.to_json() for s in self.stages],
            "data_problems": self.data_problems, "training": self.training,
            "evaluated_checkpoint": self.evaluated_checkpoint, "checkpoint": self.checkpoint,
        }
        if self.submission is not None:
            out["submission"] = self.submission
        out.update(self.extra)
        return out

    # -- what readers derive --------------------------------------------------------------------
    @property
    def synthetic(self) -> bool:
        return self.dataset.synthetic

    @property
    def stages_label(self) -> str:
        """``rerank(k1=20,...)+aqe(n=5)``: every stage with its parameters."""
        return "+".join(s.label for s in self.stages)

    @property
    def label(self) -> str:
        """``method [variant] +stages``: the name of a leaderboard row."""
        label = self.method + (f" [{self.variant}]" if self.variant else "")
        return label + (f" +{self.stages_label}" if self.stages else "")

    @property
    def network(self) -> tuple[str, str, str]:
        """(method, variant, recipe): what a published row must match to be compared with."""
        return self.method, self.variant, self.recipe

    def config_hash(self) -> str:
        """Six hex digits identifying the resolved recipe and iteration count."""
        blob = json.dumps({"config": self.config or None, "iterations": self.iterations}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:6]

    def rank1_interval(self, metric: str) -> dict[str, Any] | None:
        """The bootstrap interval recorded for a rank-1 ``metric`` (``"NM/rank1"``, ``"rank1"``,
        ``"rank1_valid"``...): the probe set it names, or the only probe set with one; None for
        other metrics and for records written before intervals."""
        name, _, base = metric.rpartition("/")
        if base not in {"rank1", "rank1_valid"}:
            return None
        valid = base == "rank1_valid"

        def of(table: ProbeSetTable) -> dict[str, Any] | None:
            holder = (table.valid or {}) if valid else table.extra
            found = holder.get("rank1_interval")
            return found if isinstance(found, Mapping) else None

        if name:
            table = self.tables.probe_sets.get(name)
            return of(table) if table is not None else None
        found = [iv for t in self.tables.probe_sets.values() if (iv := of(t)) is not None]
        return found[0] if len(found) == 1 else None

    def comparability(self) -> tuple[str, str, str, str]:
        """Runs with equal keys may be ranked against each other: protocol and version, split, data."""
        return self.protocol, str(self.protocol_version), self.split.key(), self.dataset.fingerprint


RunLike = Union["RunRecord", Mapping[str, Any]]


def as_run(run: RunLike) -> "RunRecord":
    """``run`` as a :class:`RunRecord` (a ``result.json`` mapping is parsed)."""
    return run if isinstance(run, RunRecord) else RunRecord.from_json(run)


_NOT_NONE = {"deterministic": False, "world_size": 1, "config": {}, "timings": {}, "data_problems": {},
             "training": {}}


@dataclass
class BenchRecord:
    """A ``gaitbench bench`` record (``kind: "bench"``), read for efficiency columns."""

    method: str
    variant: str
    params: int | None
    gflops_per_sequence: float
    train_seq_s: float
    infer_seq_s: float
    device: str
    raw: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "") -> "BenchRecord":
        try:
            return cls(str(data["method"]), str(data["variant"]), data.get("params"),
                       float(data["gflops_per_sequence"]), float(data["train"]["seq_per_s"]),
                       float(data["inference"]["seq_per_s"]),
                       data.get("gpu") or f"CPU x{data.get('threads', '?')}", dict(data), source)
        except (KeyError, TypeError, ValueError) as exc:
            raise GaitbenchError(f"{source or 'bench record'}: incomplete bench record ({exc})") from None


def as_record(data: "RunRecord | BenchRecord | Mapping[str, Any]", source: str = "") -> "RunRecord | BenchRecord":
    """A run or bench record (a mapping is parsed as the one its ``kind`` says)."""
    if isinstance(data, (RunRecord, BenchRecord)):
        return data
    if isinstance(data, Mapping) and data.get("kind") == "bench":
        return BenchRecord.from_json(data, source)
    return RunRecord.from_json(data, source)


def read_record(path: str | Path) -> RunRecord | BenchRecord:
    """The record in a ``result.json`` (or bench JSON) file."""
    from ..io import read_json

    return as_record(read_json(path, "gaitbench run record"), str(path))


def load_records(paths) -> list[RunRecord | BenchRecord]:
    """Records from run directories (``result.json``, searched recursively) or record files."""
    records: list[RunRecord | BenchRecord] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = [path / "result.json"] if (path / "result.json").is_file() else sorted(path.rglob("result.json"))
            if not files:
                raise GaitbenchError(f"{path}: no result.json found in this directory or below")
        elif path.is_file():
            files = [path]
        else:
            raise GaitbenchError(f"{path}: no such run directory or record file")
        records.extend(read_record(f) for f in files)
    return records


def read_run(path: str | Path) -> RunRecord:
    """The run record of a run directory (its ``result.json``) or of a record file."""
    path = Path(path)
    file = path / "result.json" if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise GaitbenchError(f"{path}: no result.json (not a gaitbench run directory, or the run did not finish)")
    record = read_record(file)
    if not isinstance(record, RunRecord):
        raise GaitbenchError(f"{file}: a bench record, not a run record")
    return record
