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
from typing import Any

import numpy as np
import pandas as pd

from ..errors import GaitbenchError
from .leaderboard_page import leading_number as _leading_number
from .record import BenchRecord, RunRecord, as_record, as_run

FORMATS = ("markdown", "latex", "csv", "html", "json")


@dataclass
class Table:
    """One leaderboard table: ``frame`` is what is printed; ``rows`` the same rows with their
    private fields (``_runs``: the run records pooled in a row); ``data`` is ``"synthetic"``,
    ``"real"`` or ``"published"`` (a table of papers' numbers only); ``metrics`` the metric columns."""

    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    key: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    data: str = "real"
    metrics: list[str] = field(default_factory=list)

    def best(self) -> dict[str, set[int]]:
        """Per metric column, the indices of the run rows holding its best value (the highest; the
        lowest for error rates such as EER). Papers' rows are not ranked against runs."""
        out: dict[str, set[int]] = {}
        for m in self.metrics:
            values = {i: _leading_number(r.get(m)) for i, r in enumerate(self.rows) if r.get("source") == "run"}
            values = {i: v for i, v in values.items() if v is not None}
            if not values:
                continue
            target = (min if lower_is_better(m) else max)(values.values())
            out[m] = {i for i, v in values.items() if v == target}
        return out


def lower_is_better(metric: str) -> bool:
    """Error rates (EER) improve downwards; ranks, mAP, mINP and TAR upwards."""
    return metric.split("/")[-1].upper().startswith("EER")


def _metric_order(records: list[RunRecord]) -> list[str]:
    order: list[str] = []
    for r in records:
        for k in r.metrics:
            if k not in order:
                order.append(k)
    return order


def _fmt(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def _efficiency(benches: list[BenchRecord]) -> dict[tuple[str, str], dict[str, Any]]:
    """Efficiency columns per (method, variant) from bench records (the fastest device listed)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for b in benches:
        key = (b.method, b.variant)
        entry = {"params": b.params, "gflops": f"{b.gflops_per_sequence:.2f}", "train_seq_s": f"{b.train_seq_s:.0f}",
                 "infer_seq_s": f"{b.infer_seq_s:.0f}", "gpu": b.device, "_speed": b.infer_seq_s}
        if key not in out or entry["_speed"] > out[key]["_speed"]:
            out[key] = entry
    return out


def build_tables(records: list, protocol: str | None = None, published=None) -> list[Table]:
    """One table per comparable group of records (:class:`RunRecord`, or ``result.json`` mappings;
    and ``published`` rows for its protocol); bench records among ``records`` give the efficiency
    columns."""
    records = [as_record(r) for r in records]
    efficiency = _efficiency([r for r in records if isinstance(r, BenchRecord)])
    runs = [r for r in records if isinstance(r, RunRecord) and (not protocol or r.protocol == protocol)]
    if protocol and not runs and published is None:
        raise GaitbenchError(f"no run records for protocol {protocol!r}")
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs:
        groups.setdefault(r.comparability(), []).append(r)
    tables = [_group_table(key, group, len(groups), efficiency, published)
              for key, group in sorted(groups.items(), key=lambda kv: kv[0])]
    if published is not None:
        # papers' numbers are on the real datasets: beside runs on real data, or in a table of their own
        with_real = {t.key["protocol"] for t in tables if t.data == "real"}
        wanted = [protocol] if protocol and not tables else []
        wanted += [t.key["protocol"] for t in tables if t.data == "synthetic"]
        for proto in dict.fromkeys(p for p in wanted if p not in with_real):
            rows = published_rows(published, proto, None)
            if rows:
                tables.append(Table(f"{proto} - published numbers (real datasets)", _frame(rows, drop_empty=False),
                                    ["Published numbers on the real dataset, each with its source; no run of "
                                     "this protocol on real data is in these records."],
                                    {"protocol": proto}, rows, "published", _metric_names(rows)))
    return tables


def _metric_names(rows: list[dict[str, Any]]) -> list[str]:
    fixed = {"method", "recipe", "source", "n", "reference"}
    return list(dict.fromkeys(k for r in rows for k in r if not k.startswith("_") and k not in fixed))


def _group_table(key: tuple, group: list[RunRecord], n_groups: int, efficiency, published) -> Table:
    """The table of one comparable group: a row per configuration (seeds pooled), best first."""
    proto, version, split, fingerprint = key
    metrics = _metric_order(group)
    out_rows = _run_rows(group, metrics, efficiency)
    synthetic = any(r["data"] == "synthetic" for r in out_rows)
    title = (f"{proto} v{version} - dataset {group[0].dataset.name} ({'SYNTHETIC' if synthetic else 'real'}), "
             f"fingerprint {fingerprint}")
    notes = []
    if synthetic:
        notes.append("Computed on gaitbench's SYNTHETIC data: shows the pipeline works; not comparable with papers.")
    if any(r.get("rank1 95% CI") for r in out_rows):
        notes.append("'rank1 95% CI' is the half-width of each rank-1's 95% bootstrap interval over probes (mean "
                     "over seeds), 'probes' what it rests on; 'within CI of best' names the rank-1 columns where "
                     "a row differs from the column's best row by less than that: the test set cannot tell them "
                     "apart.")
    if any(r["stages"] != "-" for r in out_rows):
        notes.append("Rows marked +stage use post-processing (e.g. re-ranking is transductive); "
                     "compare them with each other, not with plain rows.")
    if n_groups > 1:
        notes.append("Runs on other protocol versions, splits or datasets are in separate tables.")
    split_d = json.loads(split)
    if split_d.get("partition"):
        notes.append(f"Split from partition file {split_d['partition']}.")
    if published is not None:
        paper_rows = published_rows(published, proto, metrics)
        _add_paper_deltas(out_rows, paper_rows, metrics, _standard_split(proto))
        if synthetic:
            notes.append("'vs paper' is empty for runs on synthetic data: the papers' numbers are on the real "
                         "dataset (listed in their own table).")
        else:
            out_rows.extend(paper_rows)
            notes.append("Rows with source 'paper' are published numbers on the real dataset, each with its "
                         "source (gaitbench leaderboard --published --format json lists them); 'vs paper' is "
                         "a run on real data, without post-processing, trained for its recipe's full schedule "
                         "on the papers' split, minus the paper row of the same network and recipe (method "
                         "[variant] and recipe), never another's; otherwise the cell says why it is empty.")
    return Table(title, _frame(out_rows), notes, {"protocol": proto, "protocol_version": version, "split": split_d,
                                                  "fingerprint": fingerprint},
                 out_rows, "synthetic" if synthetic else "real", metrics)


def _run_rows(group: list[RunRecord], metrics: list[str], efficiency) -> list[dict[str, Any]]:
    """One row per method + variant + stages + recipe + configuration, mean +- std over its seeds."""
    configs: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in group:  # seeds of the same configuration share a row; other settings do not
        configs.setdefault((r.label, r.recipe, r.config_hash()), []).append(r)
    ambiguous = {(l, rc) for (l, rc, h) in configs if sum(1 for k in configs if k[:2] == (l, rc)) > 1}
    rows = []
    for (label, recipe, chash), runs in configs.items():
        first = runs[0]
        row: dict[str, Any] = {"method": label, "recipe": f"{recipe} (config {chash})" if (label, recipe) in ambiguous
                               else recipe, "source": "run", "n": len(runs), "_match": first.network,
                               "_runs": runs}
        for m in metrics:
            row[m] = _fmt([float(r.metrics[m]) for r in runs if r.metrics.get(m) is not None])
        row["_sort"] = float(np.mean([r.metrics.get(metrics[0], np.nan) for r in runs])) if metrics else 0
        widths = []
        for m in metrics:  # how sure each rank-1 is: the mean half-width of the runs' intervals
            found = [iv for r in runs if (iv := r.rank1_interval(m)) is not None]
            if found:
                row[f"_hw:{m}"] = float(np.mean([iv["half_width"] for iv in found]))
                widths.append(f"±{row[f'_hw:{m}']:.2f}")
        row["rank1 95% CI"] = " / ".join(widths)
        row["probes"] = _probe_counts(runs, metrics)
        row["params"] = f"{first.parameters:,}" if first.parameters else ""
        eff = efficiency.get((first.method, first.variant), {})
        if eff.get("params") and first.parameters and eff["params"] != first.parameters:
            eff = {}  # a bench of another network (same names, other size) says nothing about this one
        for col in ("gflops", "train_seq_s", "infer_seq_s", "gpu"):
            row[col] = eff.get(col, "")
        row["stages"] = first.stages_label or "-"
        row["precision"] = first.precision or ""
        row["split"] = first.split.label
        row["data"] = "synthetic" if first.synthetic else "real"
        row["seeds"] = ",".join(str("?" if r.seed is None else r.seed) for r in runs)
        rows.append(row)
    rows.sort(key=lambda r: -r["_sort"] if not np.isnan(r["_sort"]) else np.inf)
    _mark_ties(rows, metrics)
    return rows


def _probe_counts(runs: list[RunRecord], metrics: list[str]) -> str:
    """The probes each rank-1 rests on (from the first run's intervals), e.g. ``1,100 / 1,100``."""
    counts = [f"{iv['num_probes']:,}" for m in metrics if (iv := runs[0].rank1_interval(m)) is not None]
    return " / ".join(dict.fromkeys(counts)) if counts else ""


def _mark_ties(rows: list[dict[str, Any]], metrics: list[str]) -> None:
    """``within CI of best``: the rank-1 columns where a row's mean differs from the column's best
    by less than the larger of the two rows' interval half-widths, i.e. where the test set cannot
    tell the two apart."""
    for row in rows:
        row["within CI of best"] = ""
    for m in metrics:
        have = [r for r in rows if f"_hw:{m}" in r and _leading_number(r.get(m)) is not None]
        if len(have) < 2:
            continue
        best = max(have, key=lambda r: _leading_number(r[m]))
        for r in have:
            if r is best:
                continue
            gap = _leading_number(best[m]) - _leading_number(r[m])
            if gap < max(best[f"_hw:{m}"], r[f"_hw:{m}"]):
                r["within CI of best"] = ", ".join(filter(None, [r["within CI of best"], m]))


def _frame(rows: list[dict[str, Any]], drop_empty: bool = True) -> pd.DataFrame:
    """The rows as a table without the private ``_`` columns (and without all-empty columns)."""
    frame = pd.DataFrame(rows)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_")]).fillna("")
    if not drop_empty:
        return frame
    return frame[[c for c in frame.columns if not (frame[c].astype(str).isin(["", "nan", "None"])).all()]]


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


def _standard_split(protocol: str):
    """The split the papers use for ``protocol`` (the registered protocol file's), or None when the
    protocol is not a registered one."""
    from ..plugins import get_plugins
    from ..protocols import resolve_protocol

    try:
        return resolve_protocol(protocol, get_plugins().protocols()).split
    except Exception:  # noqa: BLE001 - a protocol this installation does not know: no papers' split
        return None


def _why_not_comparable(row: dict[str, Any], standard_split) -> str:
    """Why a run row may not be put against a paper's number ('' when it may)."""
    runs = row.get("_runs") or []
    if row.get("data") != "real":
        return "n/a: synthetic data"
    if row.get("stages", "-") != "-":
        return "n/a: post-processed (papers report plain retrieval)"
    method, variant, recipe = row["_match"]
    if variant == "quick" or recipe == "quick":
        return "n/a: reduced 'quick' network, not the paper's"
    if standard_split is None:
        return "n/a: protocol unknown here, so is the papers' split"
    for r in runs:
        if standard_split.needs_partition:
            continue  # the dataset's own partition file is the papers' split
        if r.split.partition or list(r.split.train) != list(standard_split.train) \
                or list(r.split.test) != list(standard_split.test):
            return f"n/a: split {r.split.label} is not the papers'"
    for r in runs:
        planned = (r.config.get("train") or {}).get("iterations") if isinstance(r.config, dict) else None
        started_from = (r.training or {}).get("initial_checkpoint") or (r.training or {}).get("resumed_from")
        if planned and r.iterations is not None and r.iterations < planned and not started_from:
            return f"n/a: trained {r.iterations:,} of the recipe's {planned:,} iterations"
    return ""


def _add_paper_deltas(run_rows, paper_rows, metrics, standard_split=None) -> None:
    """'vs paper' for every run row: the difference from the paper row of the same method, variant
    and recipe, for runs on the papers' real data, split and full schedule without post-processing;
    otherwise why the cell is empty (synthetic data, a quick network, re-ranking, another split...)."""
    for row in run_rows:
        why = _why_not_comparable(row, standard_split)
        if why:
            row["vs paper"] = why
            continue
        paper = next((p for p in paper_rows if p["_match"] == row["_match"] and p["source"] == "paper"), None)
        if paper is None:
            method, variant, recipe = row["_match"]
            row["vs paper"] = f"n/a: no paper row for {method} [{variant}] with recipe {recipe}"
            continue
        parts = []
        for m in metrics:
            if m in paper and row.get(m):
                mine = float(str(row[m]).split(" ")[0])
                parts.append(f"{m.split('/')[0] if '/' in m else m} {mine - float(paper[m]):+.1f}")
        row["vs paper"] = ", ".join(parts) if parts else "n/a: the paper reports none of these metrics"


def _with_best(table: Table, mark) -> pd.DataFrame:
    """The table's frame (as text) with each column's best run value passed through ``mark``."""
    frame = table.frame.astype(str).copy()
    for column, rows in table.best().items():
        if column in frame.columns:
            for i in rows:
                frame.iat[i, frame.columns.get_loc(column)] = mark(frame.iat[i, frame.columns.get_loc(column)])
    return frame


def render(tables: list[Table], fmt: str, *, page_dir=None) -> str:
    """The tables as markdown, LaTeX (booktabs), CSV, a self-contained HTML page or JSON. Markdown
    and LaTeX set each column's best run value in bold. ``page_dir``: where the HTML page will be
    (its links to run reports are relative to it; default the current directory)."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        from ..errors import did_you_mean

        raise GaitbenchError(did_you_mean(fmt, FORMATS, "format"))
    if fmt == "html":
        from .leaderboard_page import render_page

        return render_page(tables, page_dir=page_dir)
    if fmt == "json":
        return json.dumps([{"title": t.title, "notes": t.notes, "key": t.key,
                            "rows": t.frame.to_dict(orient="records")} for t in tables], indent=2, default=str)
    if fmt == "csv":
        frames = [t.frame.assign(table=t.title) for t in tables]
        return pd.concat(frames, ignore_index=True).to_csv(index=False) if frames else ""
    parts = []
    for t in tables:  # markdown or latex
        if fmt == "markdown":
            frame = _with_best(t, lambda v: f"**{v}**")
            parts.append(f"**{t.title}**\n\n" + tabulate(frame, headers="keys", tablefmt="github", showindex=False,
                                                        disable_numparse=True)
                         + "".join(f"\n\n_{n}_" for n in t.notes))
        elif fmt == "latex":
            # our own escaping (latex_raw), so that "±" becomes $\pm$ instead of an escaped dollar
            frame = _with_best(t, lambda v: "\x00" + v + "\x01").apply(lambda col: col.map(_latex_escape))
            frame = frame.apply(lambda col: col.str.replace("\x00", "\\textbf{", regex=False)
                                .str.replace("\x01", "}", regex=False))
            frame.columns = [_latex_escape(str(c)) for c in frame.columns]
            body = tabulate(frame, headers="keys", tablefmt="latex_raw", showindex=False, disable_numparse=True)
            for rule in ("\\toprule", "\\midrule", "\\bottomrule"):  # booktabs rules for the three \hline
                body = body.replace("\\hline", rule, 1)
            caption = _latex_escape(t.title + ". " + " ".join(t.notes))
            parts.append("\\begin{table}[t]\n\\centering\n\\small\n" + body + f"\n\\caption{{{caption}}}\n\\end{{table}}")
    return "\n\n".join(parts) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
          "−": "-"}


def _latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in one pass (so escapes are never escaped again)."""
    import re

    return re.sub("|".join(map(re.escape, _LATEX)), lambda m: _LATEX[m.group(0)], text)


def per_view_table(records: list, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rank-1 per probe view for every probe set and run (the papers' CASIA-B table layout), plus
    published per-view rows of the same protocol when given."""
    records = [as_run(r) for r in records]
    rows = []
    views: list[str] = []
    for r in records:
        for name, table in r.tables.probe_sets.items():
            if not table.is_view_matrix:
                continue
            views = views or list(table.views)
            row = {"probe": name, "method": r.label, "source": "run"}
            row.update({v: table.per_probe_view.get(v) for v in table.views})
            row["mean"] = r.metrics.get(f"{name}/rank1")
            rows.append(row)
    if published is not None and records:
        proto = records[0].protocol
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


def compare(a: RunRecord, b: RunRecord) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per-metric differences (B - A) and, where both have them, per-view differences."""
    a, b = as_run(a), as_run(b)
    metrics = [m for m in _metric_order([a, b]) if m in a.metrics and m in b.metrics]
    rows = [{"metric": m, "A": a.metrics[m], "B": b.metrics[m], "B - A": b.metrics[m] - a.metrics[m]}
            for m in metrics]
    per_view = []
    for name, ta in a.tables.probe_sets.items():
        tb = b.tables.probe_sets.get(name)
        if tb is not None and ta.is_view_matrix and tb.is_view_matrix:
            row = {"probe": name}
            for v in ta.views:
                if ta.per_probe_view.get(v) is not None and tb.per_probe_view.get(v) is not None:
                    row[v] = round(tb.per_probe_view[v] - ta.per_probe_view[v], 2)
            per_view.append(row)
    return pd.DataFrame(rows), (pd.DataFrame(per_view) if per_view else None)
