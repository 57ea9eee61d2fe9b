"""Leaderboards: many run records -> the tables papers print, honestly.

Rows are grouped by what makes numbers comparable — protocol and version, split and dataset
fingerprint — and every group is its own table: runs on different data are never ranked against
each other. Within a table there is one row per method + variant + recipe + post-processing
stages, with mean +- std over seeds. Columns are the metrics the records carry (in the order the
protocol reports them), efficiency figures and flags. Published numbers can be added as rows
marked "paper".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import GaitbenchError

FORMATS = ("markdown", "latex", "csv", "html", "json")


@dataclass
class Table:
    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    key: dict[str, Any] = field(default_factory=dict)


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Run records from run directories (``result.json``, searched recursively) or JSON files."""
    records = []
    for path in map(Path, paths):
        if path.is_dir():
            files = [path / "result.json"] if (path / "result.json").is_file() else sorted(path.rglob("result.json"))
            if not files:
                raise GaitbenchError(f"{path}: no result.json found in this directory or below")
        elif path.is_file():
            files = [path]
        else:
            raise GaitbenchError(f"{path}: no such run directory or record file")
        for file in files:
            try:
                record = json.loads(file.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise GaitbenchError(f"{file}: not a readable run record ({exc})") from None
            if not isinstance(record, dict) or not (record.get("kind") == "bench"
                                                    or ("metrics" in record and "protocol" in record)):
                raise GaitbenchError(f"{file}: not a gaitbench run record (needs 'protocol' and 'metrics') "
                                     "or bench record")
            record["_source"] = str(file)
            records.append(record)
    return records


def _stages_label(record) -> str:
    """``rerank(k1=20,k2=6,lambda=0.3,...)+aqe(n=5)``: every stage with its parameters."""
    parts = []
    for s in record.get("stages") or []:
        if isinstance(s, dict):
            params = s.get("params") or {}
            parts.append(s.get("name", "?") + (f"({','.join(f'{k}={v}' for k, v in params.items())})" if params else ""))
        else:
            parts.append(str(s))
    return "+".join(parts)


def _row_label(record) -> str:
    label = record["method"]
    if record.get("variant"):
        label += f" [{record['variant']}]"
    stages = _stages_label(record)
    return label + (f" +{stages}" if stages else "")


def _split_label(record) -> str:
    split = record.get("split") or {}
    if split.get("partition"):
        return f"partition {Path(split['partition']).name}"
    return f"train {','.join(split.get('train') or ['?'])} / test {','.join(split.get('test') or ['?'])}"


def _config_hash(record) -> str:
    import hashlib

    blob = json.dumps({"config": record.get("config"), "iterations": record.get("iterations")}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


def _comparability(record) -> tuple:
    split = record.get("split") or {}
    dataset = record.get("dataset") or {}
    return (record["protocol"], str(record.get("protocol_version", "?")),
            json.dumps({"train": split.get("train"), "test": split.get("test"), "partition": split.get("partition")},
                       sort_keys=True),
            dataset.get("fingerprint", "?"))


def _metric_order(records) -> list[str]:
    order: list[str] = []
    for r in records:
        for k in r["metrics"]:
            if k not in order:
                order.append(k)
    return order


def _fmt(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _efficiency(benches: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Efficiency columns per (method, variant) from bench records (the fastest device listed)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for b in benches:
        key = (b["method"], b["variant"])
        entry = {"params": b.get("params"), "gflops": f"{b['gflops_per_sequence']:.2f}", "train_seq_s": f"{b['train']['seq_per_s']:.0f}",
                 "infer_seq_s": f"{b['inference']['seq_per_s']:.0f}",
                 "gpu": b.get("gpu") or f"CPU x{b.get('threads', '?')}", "_speed": b["inference"]["seq_per_s"]}
        if key not in out or entry["_speed"] > out[key]["_speed"]:
            out[key] = entry
    return out


def build_tables(records: list[dict[str, Any]], protocol: str | None = None, published=None) -> list[Table]:
    """One table per comparable group of records (and ``published`` rows for its protocol);
    bench records among ``records`` give the efficiency columns."""
    efficiency = _efficiency([r for r in records if r.get("kind") == "bench"])
    records = [r for r in records if r.get("kind") != "bench"]
    if protocol:
        records = [r for r in records if r["protocol"] == protocol]
        if not records and published is None:
            raise GaitbenchError(f"no run records for protocol {protocol!r}")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(_comparability(r), []).append(r)
    tables = []
    for key, group in sorted(groups.items(), key=lambda kv: kv[0]):
        proto, version, split, fingerprint = key
        metrics = _metric_order(group)
        rows = {}
        for r in group:  # seeds of the same configuration share a row; other settings do not
            label = (_row_label(r), r.get("recipe", ""), _config_hash(r))
            rows.setdefault(label, []).append(r)
        ambiguous = {(l, rc) for (l, rc, h) in rows if sum(1 for k in rows if k[:2] == (l, rc)) > 1}
        out_rows = []
        for (label, recipe, chash), runs in rows.items():
            if (label, recipe) in ambiguous:
                recipe = f"{recipe} (config {chash})"
            first = runs[0]
            row: dict[str, Any] = {"method": label, "recipe": recipe, "source": "run", "n": len(runs),
                                   "_match": (first["method"], first.get("variant", ""), first.get("recipe", ""))}
            for m in metrics:
                row[m] = _fmt([float(r["metrics"][m]) for r in runs if r["metrics"].get(m) is not None])
            row["_sort"] = float(np.mean([r["metrics"].get(metrics[0], np.nan) for r in runs])) if metrics else 0
            row["params"] = f"{first['parameters']:,}" if first.get("parameters") else ""
            eff = efficiency.get((first["method"], first.get("variant", "")), {})
            if eff.get("params") and first.get("parameters") and eff["params"] != first["parameters"]:
                eff = {}  # a bench of another network (same names, other size) says nothing about this one
            for col in ("gflops", "train_seq_s", "infer_seq_s", "gpu"):
                row[col] = eff.get(col, "")
            row["stages"] = _stages_label(first) or "-"
            row["precision"] = first.get("precision", "")
            row["split"] = _split_label(first)
            row["data"] = "synthetic" if (first.get("dataset") or {}).get("synthetic") else "real"
            row["seeds"] = ",".join(str(r.get("seed", "?")) for r in runs)
            out_rows.append(row)
        out_rows.sort(key=lambda r: -r["_sort"] if not np.isnan(r["_sort"]) else np.inf)
        notes = []
        synthetic = any(r["data"] == "synthetic" for r in out_rows)
        dataset_name = (group[0].get("dataset") or {}).get("name", "?")
        title = (f"{proto} v{version} - dataset {dataset_name} ({'SYNTHETIC' if synthetic else 'real'}), "
                 f"fingerprint {fingerprint}")
        if synthetic:
            notes.append("Computed on gaitbench's SYNTHETIC data: shows the pipeline works; not comparable with papers.")
        if any(r["stages"] != "-" for r in out_rows):
            notes.append("Rows marked +stage use post-processing (e.g. re-ranking is transductive); "
                         "compare them with each other, not with plain rows.")
        if len(groups) > 1:
            notes.append("Runs on other protocol versions, splits or datasets are in separate tables.")
        split_d = json.loads(split)
        if split_d.get("partition"):
            notes.append(f"Split from partition file {split_d['partition']}.")
        if published is not None:
            paper_rows = published_rows(published, proto, metrics)
            if paper_rows:
                _add_paper_deltas(out_rows, paper_rows, metrics)
                out_rows.extend(paper_rows)
                notes.append("Rows with source 'paper' are published numbers on the real dataset, each with its "
                             "source (gaitbench leaderboard --published --format json lists them); 'vs paper' is "
                             "a run on real data, without post-processing, minus the paper row of the same "
                             "network and recipe (method [variant] and recipe), never another's.")
        frame = pd.DataFrame(out_rows)
        frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_")]).fillna("")
        frame = frame[[c for c in frame.columns if not (frame[c].astype(str).isin(["", "nan", "None"])).all()]]
        tables.append(Table(title, frame, notes, {"protocol": proto, "protocol_version": version,
                                                    "split": split_d, "fingerprint": fingerprint}))
    if protocol and not tables and published is not None:
        rows = published_rows(published, protocol, None)
        if rows:
            frame = pd.DataFrame(rows)
            tables.append(Table(f"{protocol} - published numbers",
                                frame.drop(columns=[c for c in frame.columns if c.startswith("_")])))
    return tables


def load_published() -> pd.DataFrame:
    """The published numbers shipped with gaitbench (see ``gaitbench/resources``)."""
    from importlib import resources

    with resources.files("gaitbench.resources").joinpath("published_results.csv").open("r", encoding="utf-8") as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


def _paper_metric(row) -> str:
    cond = row["condition"]
    return f"{cond}/{row['metric']}" if cond else row["metric"]


def published_rows(published: pd.DataFrame, protocol: str, metrics: list[str] | None) -> list[dict[str, Any]]:
    """Mean (not per-view) published numbers for ``protocol``, one row per method, variant, recipe
    and source. ``variant`` and ``recipe`` are gaitbench's names for the network and the training
    settings the number was obtained with (TPAMI GaitGL numbers: ``tpami*``; ICCV-era numbers and
    OpenGait's reproductions: the OpenGait network)."""
    sel = published[(published["protocol"] == protocol) & (published["view"].isin(["mean", ""]))
                    & ~published["variant"].str.startswith("ablation")]
    rows = []
    for (method, variant, recipe, source, kind), g in sel.groupby(["method", "variant", "recipe", "source", "source_kind"],
                                                                  sort=False):
        row: dict[str, Any] = {"method": method + (f" [{variant}]" if variant else ""), "recipe": recipe,
                               "source": "paper" if kind == "paper" else "reproduction", "n": "",
                               "reference": source, "_sort": np.nan, "_match": (method, variant, recipe)}
        for _, p in g.iterrows():
            name = _paper_metric(p)
            if metrics is None or name in metrics:
                row[name] = f"{float(p['value']):.2f}"
        if metrics is not None and not any(m in row for m in metrics):
            continue
        rows.append(row)
    return _merge_same_numbers(rows, "reference")


def _merge_same_numbers(rows: list[dict[str, Any]], ref_key: str) -> list[dict[str, Any]]:
    """Two papers printing the same numbers for a method give one row naming both sources."""
    merged: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(sorted((k, str(v)) for k, v in row.items() if k not in {ref_key, "_sort"}))
        if key in merged:
            merged[key][ref_key] += f"; {row[ref_key]}"
        else:
            merged[key] = dict(row)
    return list(merged.values())


def _add_paper_deltas(run_rows, paper_rows, metrics) -> None:
    """'vs paper' for runs on real data without post-processing, against the paper row of the same
    method, variant and recipe (a quick network or another paper's network is never compared)."""
    for row in run_rows:
        if row.get("data") != "real" or row.get("stages", "-") != "-":
            continue
        paper = next((p for p in paper_rows if p["_match"] == row["_match"] and p["source"] == "paper"), None)
        if paper is None:
            continue
        parts = []
        for m in metrics:
            if m in paper and row.get(m):
                mine = float(str(row[m]).split(" ")[0])
                parts.append(f"{m.split('/')[0] if '/' in m else m} {mine - float(paper[m]):+.1f}")
        row["vs paper"] = ", ".join(parts)


def render(tables: list[Table], fmt: str) -> str:
    """The tables as markdown, LaTeX (booktabs), CSV, HTML or JSON."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        from .errors import did_you_mean

        raise GaitbenchError(did_you_mean(fmt, FORMATS, "format"))
    if fmt == "json":
        return json.dumps([{"title": t.title, "notes": t.notes, "key": t.key,
                            "rows": t.frame.to_dict(orient="records")} for t in tables], indent=2, default=str)
    if fmt == "csv":
        frames = [t.frame.assign(table=t.title) for t in tables]
        return pd.concat(frames, ignore_index=True).to_csv(index=False) if frames else ""
    parts = []
    for t in tables:
        if fmt == "markdown":
            parts.append(f"**{t.title}**\n\n" + tabulate(t.frame, headers="keys", tablefmt="github", showindex=False,
                                                        disable_numparse=True)
                         + "".join(f"\n\n_{n}_" for n in t.notes))
        elif fmt == "latex":
            # our own escaping (latex_raw), so that "±" becomes $\pm$ instead of an escaped dollar
            frame = t.frame.astype(str).apply(lambda col: col.map(_latex_escape))
            frame.columns = [_latex_escape(str(c)) for c in frame.columns]
            body = tabulate(frame, headers="keys", tablefmt="latex_raw", showindex=False, disable_numparse=True)
            for rule in ("\\toprule", "\\midrule", "\\bottomrule"):  # booktabs rules for the three \hline
                body = body.replace("\\hline", rule, 1)
            caption = _latex_escape(t.title + ". " + " ".join(t.notes))
            parts.append("\\begin{table}[t]\n\\centering\n\\small\n" + body + f"\n\\caption{{{caption}}}\n\\end{{table}}")
        else:  # html
            import html

            notes = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in t.notes)
            parts.append(f"<h3>{html.escape(t.title)}</h3>\n" + t.frame.to_html(index=False, escape=True) + notes)
    return "\n\n".join(parts) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
          "−": "-"}


def _latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in one pass (so escapes are never escaped again)."""
    import re

    return re.sub("|".join(map(re.escape, _LATEX)), lambda m: _LATEX[m.group(0)], text)


def per_view_table(records: list[dict[str, Any]], published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rank-1 per probe view for every probe set and run (the papers' CASIA-B table layout), plus
    published per-view rows of the same protocol when given."""
    rows = []
    views: list[str] = []
    for r in records:
        for name, table in r.get("tables", {}).items():
            if not isinstance(table, dict) or "per_probe_view" not in table:
                continue
            views = views or list(table["views"])
            row = {"probe": name, "method": _row_label(r), "source": "run"}
            row.update({v: table["per_probe_view"].get(v) for v in table["views"]})
            row["mean"] = r["metrics"].get(f"{name}/rank1")
            rows.append(row)
    if published is not None and records:
        proto = records[0]["protocol"]
        sel = published[(published["protocol"] == proto) & (published["condition"] != "")
                        & ~published["variant"].str.startswith("ablation")]
        paper_rows: list[dict[str, Any]] = []
        for (method, variant, cond, source, kind), g in sel.groupby(
                ["method", "variant", "condition", "source", "source_kind"], sort=False):
            if kind != "paper" or set(g["view"]) <= {"mean"}:
                continue
            row = {"probe": cond, "method": method + (f" [{variant}]" if variant else ""), "source": "paper",
                   "reference": source}
            for _, p in g.iterrows():
                row[p["view"]] = float(p["value"])
            paper_rows.append(row)
        rows.extend(_merge_same_numbers(paper_rows, "reference"))
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise GaitbenchError("no per-view tables in these records (the protocol reports none)")
    cols = ["probe", "method", "source"] + [v for v in views if v in frame.columns] + ["mean"]
    if "reference" in frame.columns:
        cols.append("reference")
        frame["reference"] = frame["reference"].fillna("")
    return frame.reindex(columns=cols).sort_values(["probe", "source"], kind="stable", key=_probe_order)


def _probe_order(series):
    order = {"NM": 0, "BG": 1, "CL": 2, "run": 0, "paper": 1}
    return series.map(lambda v: order.get(v, 9))


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per-metric differences (B - A) and, where both have them, per-view differences."""
    metrics = [m for m in _metric_order([a, b]) if m in a["metrics"] and m in b["metrics"]]
    rows = [{"metric": m, "A": a["metrics"][m], "B": b["metrics"][m], "B - A": b["metrics"][m] - a["metrics"][m]}
            for m in metrics]
    per_view = []
    for name, ta in a.get("tables", {}).items():
        tb = b.get("tables", {}).get(name)
        if isinstance(ta, dict) and isinstance(tb, dict) and "per_probe_view" in ta and "per_probe_view" in tb:
            row = {"probe": name}
            for v in ta["views"]:
                if ta["per_probe_view"].get(v) is not None and tb["per_probe_view"].get(v) is not None:
                    row[v] = round(tb["per_probe_view"][v] - ta["per_probe_view"][v], 2)
            per_view.append(row)
    return pd.DataFrame(rows), (pd.DataFrame(per_view) if per_view else None)
