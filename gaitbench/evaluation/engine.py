"""Evaluate embeddings under a protocol: the one path used by ``run`` and ``evaluate``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError


@dataclass
class Report:
    """What an evaluation produced: metrics in percent, tables, and seconds per stage."""

    protocol: str
    protocol_version: str
    metrics: dict[str, float]
    tables: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    num_sequences: int = 0


def evaluate(protocol, embeddings: np.ndarray, subjects, types, views, *, device: str = "cpu",
             metric: str | None = None) -> Report:
    """Evaluate test-set ``embeddings`` ``[N, C, P]`` (or ``[N, D]``) with their labels."""
    subjects, types, views = (np.asarray(a).astype(str) for a in (subjects, types, views))
    n = len(embeddings)
    if not (len(subjects) == len(types) == len(views) == n):
        raise DataError(f"embeddings ({n}) and labels (subjects {len(subjects)}, types {len(types)}, "
                        f"views {len(views)}) differ in length")
    ev = protocol.evaluation
    started = time.perf_counter()
    if ev.kind == "view_matrix":
        from .view_matrix import evaluate_view_matrix

        try:
            result = evaluate_view_matrix(
                embeddings, subjects, types, views,
                probe_sets=ev.probe_sets, gallery_types=ev.gallery_types, view_list=ev.views,
                metric=metric or ev.metric, exclude_identical_view=ev.exclude_identical_view,
                round_cells=ev.round_cells, device=device, report_valid=ev.missing_gallery in {"exclude", "both"},
            )
        except ValueError as exc:
            raise DataError(f"cannot evaluate under protocol {protocol.describe()}: {exc}") from None
        metrics = dict(result.metrics)
        if ev.missing_gallery == "exclude":  # the "valid" convention becomes the headline number
            metrics = {k.replace("/rank1_valid", "/rank1"): v for k, v in metrics.items() if k.endswith("_valid")}
        tables = result.tables
    else:  # pragma: no cover - protocols are validated on load
        raise DataError(f"protocol {protocol.describe()}: unsupported evaluation kind {ev.kind!r}")
    return Report(protocol.name, protocol.version, metrics, tables,
                  {"metrics_s": round(time.perf_counter() - started, 4)}, num_sequences=n)
