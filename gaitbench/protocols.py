"""Protocols: versioned declarative files that say how a dataset is split and evaluated.

A protocol file (TOML) has a name, a version, the dataset layout it expects, the train/test split
and an ``[evaluation]`` section whose ``kind`` selects the evaluator:

- ``view_matrix``: the single-view-gallery cross-view rank-1 matrix (CASIA-B, OU-MVLP);
- ``retrieval``: ranked retrieval against one gallery, rank-k / mAP / mINP (GREW, Gait3D, and
  the cross-view-gallery protocol of CASIA-B);
- ``identification``: unlabelled probes, each assigned the subject of its nearest gallery
  sequence, written as a submission file and scored against a truth file when there is one (the
  HID competitions on CASIA-E).

The split lists subject ids: ``"075"`` (one id), ``"001-074"`` (an inclusive range; the width of
the numbers is kept, so ids stay zero-padded strings), ``"00001-10305/2"`` (a range with a step)
or a shell-style pattern such as ``"*train"``. Alternatively ``partition = "dataset"`` says the
split comes from an OpenGait-style partition JSON: the one given with ``--partition``, else the
dataset's own ``partition.json``. Nothing about views, probe types or divisors lives in code.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import from_mapping, read_toml
from .errors import ConfigError, DataError

_RANGE = re.compile(r"^(\d+)-(\d+)(?:/(\d+))?$")
_GLOB = set("*?[")
METRICS = ("euc", "cos", "flat_euc")


@dataclass
class Split:
    """Subject ids for training and testing (see the module docstring for the id syntax).

    ``probe_set``: sequences ``"<subject>-<type>-<view>"`` that are the probes (Gait3D's PROBE_SET);
    ``partition``: ``""`` (the ids above) or ``"dataset"`` (an OpenGait partition file decides)."""

    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    partition: str = ""
    probe_set: list[str] = field(default_factory=list)
    source: str = ""  # where the split came from (the protocol file or a partition file)

    def validate(self, where: str):
        if self.partition not in ("", "dataset"):
            raise ConfigError(f"{where}.partition: expected \"\" or \"dataset\", got {self.partition!r}")
        if not self.partition and not (self.train and self.test):
            raise ConfigError(f"{where}: give train and test ids, or partition = \"dataset\"")
        for name in ("train", "test"):
            for item in getattr(self, name):
                _expand(item, f"{where}.{name}")

    @property
    def needs_partition(self) -> bool:
        return self.partition == "dataset" and not (self.train and self.test)

    def ids(self, which: str, available=None) -> set[str]:
        """The ids of ``which`` ("train" or "test"); patterns are matched against ``available``."""
        out: set[str] = set()
        avail = None if available is None else sorted(set(map(str, available)))
        for item in getattr(self, which):
            if _GLOB & set(item):
                if avail is None:
                    raise ValueError(f"the {which} split uses the pattern {item!r}: pass the available ids")
                out.update(fnmatch.filter(avail, item))
            else:
                out.update(_expand(item, which))
        return out


def _expand(item: str, where: str) -> list[str]:
    if _GLOB & set(item):
        return []
    m = _RANGE.match(item)
    if not m:
        return [item]
    lo, hi, step = m.group(1), m.group(2), int(m.group(3) or 1)
    if int(lo) > int(hi) or step < 1:
        raise ConfigError(f"{where}: empty id range {item!r}")
    width = len(lo)
    return [str(i).zfill(width) for i in range(int(lo), int(hi) + 1, step)]


def _check_metric(metric: str, where: str):
    if metric not in METRICS:
        raise ConfigError(f"{where}.metric: expected one of {', '.join(METRICS)}, got {metric!r}")


def _check_sets(probe_sets: dict, where: str):
    for name, types in probe_sets.items():
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"{where}.probe_sets.{name}: expected a non-empty list of type names")


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
    prefix_metrics: bool = True  # "NM/rank1"; false: "rank1" (a protocol with one probe set)

    def validate(self, where: str):
        if self.kind != "view_matrix":
            raise ConfigError(f"{where}.kind: expected 'view_matrix', got {self.kind!r}")
        if len(self.views) < 2:
            raise ConfigError(f"{where}.views: at least two views are needed")
        if not self.gallery_types:
            raise ConfigError(f"{where}.gallery_types: must not be empty")
        if not self.probe_sets:
            raise ConfigError(f"{where}.probe_sets: must not be empty")
        _check_sets(self.probe_sets, where)
        _check_metric(self.metric, where)
        if self.missing_gallery not in {"miss", "exclude", "both"}:
            raise ConfigError(f"{where}.missing_gallery: expected miss, exclude or both, got {self.missing_gallery!r}")
        if not self.prefix_metrics and len(self.probe_sets) != 1:
            raise ConfigError(f"{where}.prefix_metrics = false needs exactly one probe set")

    @property
    def probe_types(self) -> set[str]:
        return {t for types in self.probe_sets.values() for t in types}


@dataclass
class SubmissionConfig:
    """An official-style submission file for an unlabelled probe set (GREW): one row per probe,
    its id (the probe's ``view`` label) and the ``top`` nearest gallery identities."""

    probe_subject: str = "probe"
    probe_types: list[str] = field(default_factory=list)  # empty: every type of probe_subject
    gallery_types: list[str] = field(default_factory=list)
    top: int = 20
    id_column: str = "videoId"
    # true: each identity at most once per row (its nearest sequence counts); false: the reference's
    # ranking of gallery sequences, where an identity with two gallery sequences can appear twice
    unique_ids: bool = True

    def validate(self, where: str):
        if self.top < 1:
            raise ConfigError(f"{where}.top: must be >= 1")
        if not self.gallery_types:
            raise ConfigError(f"{where}.gallery_types: must not be empty")


@dataclass
class RetrievalEvaluation:
    """Ranked retrieval of each probe against one gallery.

    Probes are the test sequences of each probe set's types (``probe_sets``), or the partition's
    PROBE_SET (``probe_from_partition``); the gallery is the test sequences of ``gallery_types``, or,
    when that is empty, every test sequence that is not a probe. ``exclude`` removes gallery items
    per probe; ``average`` says whether metrics are means over probes or over probe views (then each
    view's value is rounded to ``round_values`` decimals first, as the cross-view reference does).
    """

    kind: str
    metric: str = "euc"
    probe_sets: dict[str, Any] = field(default_factory=dict)
    probe_from_partition: bool = False
    gallery_types: list[str] = field(default_factory=list)
    exclude: str = "none"  # or "same_subject_same_view"
    ranks: list[int] = field(default_factory=lambda: [1])
    map: bool = False
    minp: bool = False
    # rank-k of a probe with no gallery item of its subject: "miss" (counted, fails) or "exclude".
    # mAP and mINP always leave such probes out (AP is undefined without a positive).
    missing_gallery: str = "miss"
    average: str = "probes"  # or "probe_views"
    views: list[str] = field(default_factory=list)  # average = "probe_views": the expected views
    round_values: int | None = None
    cmc_max_rank: int = 50
    prefix_metrics: bool = True
    submission: SubmissionConfig | None = None

    def validate(self, where: str):
        if self.kind != "retrieval":
            raise ConfigError(f"{where}.kind: expected 'retrieval', got {self.kind!r}")
        _check_metric(self.metric, where)
        if self.probe_from_partition == bool(self.probe_sets):
            raise ConfigError(f"{where}: give either probe_sets or probe_from_partition = true")
        _check_sets(self.probe_sets, where)
        if self.exclude not in {"none", "same_subject_same_view"}:
            raise ConfigError(f"{where}.exclude: expected none or same_subject_same_view, got {self.exclude!r}")
        if not self.ranks or any(r < 1 for r in self.ranks) or max(self.ranks) > self.cmc_max_rank:
            raise ConfigError(f"{where}.ranks: expected ranks between 1 and cmc_max_rank ({self.cmc_max_rank})")
        if self.missing_gallery not in {"miss", "exclude"}:
            raise ConfigError(f"{where}.missing_gallery: expected miss or exclude, got {self.missing_gallery!r}")
        if self.average not in {"probes", "probe_views"}:
            raise ConfigError(f"{where}.average: expected probes or probe_views, got {self.average!r}")
        if self.average == "probe_views" and not self.views:
            raise ConfigError(f"{where}.views: average = \"probe_views\" needs the protocol's view list")
        if not self.prefix_metrics and len(self.probe_sets) > 1:
            raise ConfigError(f"{where}.prefix_metrics = false needs exactly one probe set")

    @property
    def set_names(self) -> list[str]:
        return list(self.probe_sets) if self.probe_sets else ["probe"]


@dataclass
class IdentificationEvaluation:
    """Unlabelled probes identified against a labelled gallery (the HID competitions on CASIA-E).

    The probes are the test sequences of subject ``probe_subject``; their video ids are their
    ``video_label`` labels (``"type"`` in OpenGait's HID tree ``probe/<videoID>/default``). The
    gallery is every other test sequence (or those of ``gallery_types``). Each probe is assigned
    the subject of its nearest gallery sequence (after any post-processing stage), which is what
    the submission file ``<id_column>,<label_column>`` holds. The data carry no identities for the
    probes: with a truth file (the same two columns) ``rank1`` is the share of probes assigned
    their true subject, the competitions' score; without one there are no metrics."""

    kind: str
    metric: str = "euc"
    probe_subject: str = "probe"
    video_label: str = "type"
    gallery_types: list[str] = field(default_factory=list)
    id_column: str = "videoID"
    label_column: str = "label"

    def validate(self, where: str):
        if self.kind != "identification":
            raise ConfigError(f"{where}.kind: expected 'identification', got {self.kind!r}")
        _check_metric(self.metric, where)
        if self.video_label not in ("type", "view"):
            raise ConfigError(f"{where}.video_label: expected 'type' or 'view', got {self.video_label!r}")
        if not self.probe_subject:
            raise ConfigError(f"{where}.probe_subject: must not be empty")


EVALUATIONS = {"view_matrix": ViewMatrixEvaluation, "retrieval": RetrievalEvaluation,
               "identification": IdentificationEvaluation}


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
        return replace(self, split=load_partition(path))

    def with_evaluation(self, **changes) -> "Protocol":
        """This protocol with evaluation options changed (``--set metric=cos``), validated again."""
        from dataclasses import asdict

        ev = self.evaluation
        data = {**asdict(ev), **changes}
        if data.get("submission") is None:
            data.pop("submission", None)
        return replace(self, evaluation=from_mapping(type(ev), data, f"{self.describe()} [evaluation]"))

    def describe(self) -> str:
        return f"{self.name} v{self.version}"


def load_partition(path: str | Path) -> Split:
    """``{"TRAIN_SET": [...], "TEST_SET": [...], "PROBE_SET": [...]}`` as OpenGait's dataset tools
    write them (PROBE_SET only for Gait3D)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(f"partition file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"partition file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("TRAIN_SET"), list) or not isinstance(data.get("TEST_SET"), list):
        raise DataError(f"partition file {path}: expected an object with lists TRAIN_SET and TEST_SET")
    probe = data.get("PROBE_SET", [])
    if not isinstance(probe, list):
        raise DataError(f"partition file {path}: PROBE_SET must be a list of \"<id>-<type>-<view>\" strings")
    return Split(train=[str(i) for i in data["TRAIN_SET"]], test=[str(i) for i in data["TEST_SET"]],
                 partition="dataset", probe_set=[str(i) for i in probe], source=str(path))


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
    split = replace(rest.split, source=str(source))
    if getattr(evaluation, "probe_from_partition", False) and split.partition != "dataset":
        raise ConfigError(f"{where}: probe_from_partition needs [split] partition = \"dataset\"")
    return Protocol(
        name=rest.name, version=rest.version, description=rest.description, dataset=rest.dataset,
        split=split, evaluation=evaluation, reference=rest.reference, source=str(source),
    )


@dataclass
class _ProtocolHead:
    name: str
    version: str
    description: str
    dataset: str
    split: Split = field(default_factory=Split)
    reference: str = ""


def resolve_protocol(name_or_path: str, protocols) -> Protocol:
    """A protocol from ``protocols`` (the registry of registered protocols) by name, or a protocol
    file by path."""
    from .registry import resolve_name_or_path

    return resolve_name_or_path(name_or_path, protocols, load_protocol, "protocol")


def resolve_split(protocol: Protocol, store=None, partition: str | Path | None = None,
                  recorded_probe_set=None, recorded_from: str = "") -> Protocol:
    """The protocol with its split settled, in this order:

    1. ``--partition`` (``partition``) wins;
    2. a protocol that takes its split from a partition file uses the dataset's own
       ``partition.json``; a reduced synthetic dataset's own partition replaces the protocol's
       fixed ids too (a 12-subject synthetic CASIA-B has no subjects 075-124);
    3. without a dataset (evaluating saved embeddings), the PROBE_SET recorded with the embeddings
       (``recorded_probe_set``, from ``recorded_from``) where the evaluation needs one; protocols
       whose evaluation does not use the partition evaluate the embeddings as they are.
    """
    if partition:
        return protocol.with_partition(partition)
    from .data.store import PARTITION_FILE

    own = Path(store.root) / PARTITION_FILE if store is not None else None
    has_own = own is not None and own.is_file()
    if has_own and (protocol.split.needs_partition or getattr(store, "synthetic", False)):
        return protocol.with_partition(own)
    if protocol.split.needs_partition:
        probe_from_partition = getattr(protocol.evaluation, "probe_from_partition", False)
        if recorded_probe_set is not None and len(recorded_probe_set):
            return replace(protocol, split=Split(partition="dataset", probe_set=[str(x) for x in recorded_probe_set],
                                                 source=f"{recorded_from} (recorded PROBE_SET)"))
        if store is None and not probe_from_partition:
            return protocol  # evaluation alone: the split only chose which sequences were embedded
        raise DataError(f"protocol {protocol.describe()} takes its split from a partition file: pass --partition "
                        f"PATH (OpenGait's {protocol.dataset} JSON with TRAIN_SET, TEST_SET"
                        f"{', PROBE_SET' if probe_from_partition else ''})")
    return protocol
