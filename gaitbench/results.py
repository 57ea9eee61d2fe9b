"""Run records (``result.json``) and the tables printed for a protocol."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tabulate import tabulate


def report_table(report, tablefmt: str = "github") -> str:
    """The report as the papers print it. View-matrix protocols: rank-1 per probe view (mean over
    the gallery views) for every probe set, plus the mean (the CASIA-B table layout). Retrieval
    protocols averaged over probe views: one row per probe set and metric. Otherwise one row per
    probe set with its metrics."""
    tables = report.tables
    sets = [k for k in tables if isinstance(tables[k], dict) and "per_probe_view" in tables[k]]
    if sets and "views" in tables[sets[0]]:
        views = list(tables[sets[0]]["views"])
        rows = []
        for name in sets:
            per_view = tables[name]["per_probe_view"]
            mean = report.metrics.get(f"{name}/rank1", report.metrics.get("rank1") if len(sets) == 1 else None)
            rows.append([name] + [per_view.get(v) for v in views] + [mean])
            valid = tables[name].get("valid")
            if valid:  # probes without a gallery of their subject left out (OU-MVLP's second convention)
                vmean = report.metrics.get(f"{name}/rank1_valid",
                                           report.metrics.get("rank1_valid") if len(sets) == 1 else None)
                rows.append([f"{name} (valid)"] + [valid["per_probe_view"].get(v) for v in views] + [vmean])
        return tabulate(rows, headers=["probe"] + views + ["mean"], tablefmt=tablefmt, floatfmt=".2f")
    if sets:
        views = list(tables[sets[0]]["per_probe_view"])
        rows = []
        for name in sets:
            per_view = tables[name]["per_probe_view"]
            for metric, mean in tables[name]["values"].items():
                rows.append([name, metric] + [per_view[v].get(metric) for v in views] + [mean])
        return tabulate(rows, headers=["probe", "metric"] + views + ["mean"], tablefmt=tablefmt, floatfmt=".2f")
    sets = [k for k in tables if isinstance(tables[k], dict) and "values" in tables[k]]
    if not sets:
        return ""
    if "num_gallery_subjects" in tables[sets[0]]:  # identification (HID): scored only with a truth file
        t = tables[sets[0]]
        rank1 = report.metrics.get("rank1", "no truth file: predictions only")
        return tabulate([[sets[0], rank1, t["num_probes"], t["num_gallery"], t["num_gallery_subjects"]]],
                        headers=["probes", "rank1", "n", "gallery sequences", "gallery subjects"],
                        tablefmt=tablefmt, floatfmt=".2f")
    names = list(tables[sets[0]]["values"])
    rows = [[name] + [tables[name]["values"].get(m) for m in names] + [tables[name]["num_probes"]] for name in sets]
    return tabulate(rows, headers=["probes"] + names + ["n"], tablefmt=tablefmt, floatfmt=".2f")


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable), "utf-8")
    os.replace(tmp, path)
    return path


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file written by gaitbench; a clear error when it is missing or broken."""
    from .errors import GaitbenchError

    path = Path(path)
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise GaitbenchError(f"{path} not found") from None
    except (OSError, ValueError) as exc:
        raise GaitbenchError(f"{path} is not readable JSON: {exc}") from None


def describe_metrics(protocol) -> str:
    """A short title for the printed table: what the numbers are."""
    ev = protocol.evaluation
    if ev.kind == "view_matrix":
        return "rank-1 (%), " + ("identical view excluded" if ev.exclude_identical_view else "all view pairs")
    if ev.kind == "identification":
        return "rank-1 (%): each probe's nearest gallery subject against the truth file"
    names = [f"rank-{k}" for k in ev.ranks] + (["mAP"] if ev.map else []) + (["mINP"] if ev.minp else [])
    return ", ".join(names) + " (%)"
