"""Run records (``result.json``) and the tables printed for a protocol."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tabulate import tabulate


def view_matrix_table(report, tablefmt: str = "github") -> str:
    """Rank-1 per probe view (mean over the gallery views) for every probe set, plus the mean: the
    layout of the CASIA-B tables in papers."""
    sets = [k for k in report.tables if isinstance(report.tables[k], dict) and "per_probe_view" in report.tables[k]]
    if not sets:
        return ""
    views = list(report.tables[sets[0]]["views"])
    rows = []
    for name in sets:
        per_view = report.tables[name]["per_probe_view"]
        mean = report.metrics.get(f"{name}/rank1")
        rows.append([name] + [per_view.get(v) for v in views] + [mean])
    return tabulate(rows, headers=["probe"] + views + ["mean"], tablefmt=tablefmt, floatfmt=".2f")


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
