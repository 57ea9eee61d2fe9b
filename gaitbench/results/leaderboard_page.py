"""The leaderboard as one self-contained HTML page (``gaitbench leaderboard --format html``).

Like the run report (and with its style sheet), the page carries everything inline and loads
nothing: a Content-Security-Policy allows only its own inline style and script. The tables are
plain HTML, complete without the script; the script adds sorting by a click on a column header
and the filters by protocol, split and kind of data. Each table is one comparable group of runs
(:func:`gaitbench.results.leaderboard.build_tables`): synthetic and real data are never in one
table, synthetic tables carry a banner, published rows are set apart, each column's best run value
is marked, run rows link to their run's ``report.html`` and fold out their per-view table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from .report import _CSS, _e, _num, _table

if TYPE_CHECKING:
    from .leaderboard import Table

__all__ = ["render_page", "report_path"]

_PAGE_CSS = """
[hidden] { display: none !important; }
body { max-width: 1800px; }  /* leaderboards are wide */
.filters { display: flex; gap: 1.2em; flex-wrap: wrap; align-items: center; margin: 1em 0; }
.filters label { color: #555; }
.legend { color: #555; font-size: 0.9em; }
table.leaderboard thead th { position: sticky; top: 0; z-index: 1; white-space: nowrap; }
table.leaderboard td { white-space: nowrap; }
table.leaderboard td.wrap { white-space: normal; min-width: 16em; max-width: 28em; text-align: left; }
table.leaderboard th.sortable { cursor: pointer; user-select: none; }
table.leaderboard th.sortable::after { content: " \\2195"; color: #999; font-size: 0.85em; }
table.leaderboard th[aria-sort="ascending"]::after { content: " \\2191"; color: inherit; }
table.leaderboard th[aria-sort="descending"]::after { content: " \\2193"; color: inherit; }
table.leaderboard td.best { font-weight: 700; background: #e3f1e3; }
table.leaderboard tr.paper td { background: #f7f7f9; color: #555; font-style: italic; }
table.leaderboard td.na { color: #888; font-style: italic; text-align: left; }
table.leaderboard td.detail { text-align: left; padding: 0 0.6em; }
table.leaderboard td.detail details { margin: 0.2em 0; }
.badge { display: inline-block; border-radius: 3px; padding: 0 0.35em; font-size: 0.8em; font-style: normal;
         border: 1px solid #bbb; color: #555; }
section.board { margin-bottom: 2.5em; }
@media (prefers-color-scheme: dark) {
  .filters label, .legend { color: #b0b0b6; }
  table.leaderboard td.best { background: #1e3a22; }
  table.leaderboard tr.paper td { background: #1d1d21; color: #b0b0b6; }
  .badge { border-color: #555; color: #b0b0b6; }
}
"""

# Sorting and filtering; the page is complete without it (rows in leaderboard order, all shown).
_SCRIPT = """
(function () {
  function key(cell) {
    if (!cell) return null;
    var v = cell.getAttribute('data-sort');
    if (v === null || v === '') return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  document.querySelectorAll('table.leaderboard').forEach(function (table) {
    table.querySelectorAll('th.sortable').forEach(function (th) {
      th.addEventListener('click', function () {
        var col = Number(th.getAttribute('data-col'));
        var descending = th.getAttribute('aria-sort') !== 'descending';
        table.querySelectorAll('th.sortable').forEach(function (other) { other.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
        var groups = Array.prototype.slice.call(table.tBodies);
        groups.sort(function (a, b) {
          var x = key(a.rows[0].cells[col]), y = key(b.rows[0].cells[col]);
          if (x === null && y === null) return 0;
          if (x === null) return 1;   // empty cells last, either way
          if (y === null) return -1;
          var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
          return descending ? -c : c;
        });
        groups.forEach(function (g) { table.appendChild(g); });
      });
    });
  });
  var filters = document.getElementById('filters');
  if (filters) {
    filters.hidden = false;
    var apply = function () {
      var wanted = {};
      filters.querySelectorAll('select').forEach(function (s) { wanted[s.name] = s.value; });
      document.querySelectorAll('section.board').forEach(function (section) {
        var show = Object.keys(wanted).every(function (k) {
          return wanted[k] === '' || section.getAttribute('data-' + k) === wanted[k];
        });
        section.hidden = !show;
      });
    };
    filters.querySelectorAll('select').forEach(function (s) { s.addEventListener('change', apply); });
  }
})();
"""

_TEXT_COLUMNS = {"method", "recipe", "source", "stages", "precision", "split", "data", "seeds", "gpu", "reference",
                 "vs paper"}


def leading_number(cell: Any) -> float | None:
    """The number a cell starts with (``"90.12 ± 0.40"`` -> 90.12); None for empty cells."""
    text = str(cell if cell is not None else "").strip().split(" ")[0]
    try:
        value = float(text)
    except ValueError:
        return None
    return None if value != value else value  # NaN: no number


def report_path(record) -> Path | None:
    """The ``report.html`` beside a run record's ``result.json``, when it exists."""
    if not getattr(record, "source", ""):
        return None
    path = Path(record.source).parent / "report.html"
    return path if path.is_file() else None


def _href(path: Path, page_dir: Path) -> str:
    return quote(Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix())


def _sort_value(column: str, value: Any) -> str:
    if column in _TEXT_COLUMNS:
        return str(value)
    number = leading_number(str(value).replace(",", ""))
    return "" if number is None else repr(number)


def _reports_cell(row: dict[str, Any], page_dir: Path) -> tuple[str, str]:
    runs = row.get("_runs") or []
    if not runs:
        return "na", ""
    links = []
    for r in runs:
        label = f"seed {'?' if r.seed is None else r.seed}"
        path = report_path(r)
        if path is not None:
            links.append(f'<a class="report-link" href="{_e(_href(path, page_dir))}">{_e(label)}</a>')
        else:
            where = Path(r.source).parent if r.source else "RUN_DIR"
            links.append(f'<span title="no report.html: gaitbench report {_e(where)} (or leaderboard --reports)">'
                         f'{_e(label)}: no report</span>')
    return "text", " · ".join(links)


def _per_view_details(row: dict[str, Any]) -> str:
    """A foldable per-view table for a run row (the mean over its seeds), or '' when none."""
    runs = row.get("_runs") or []
    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    views: list[str] = []
    for r in runs:
        for name, table in r.tables.probe_sets.items():
            per_view = table.per_probe_view or {}
            for view, value in per_view.items():
                view = str(view)
                if view not in views:
                    views.append(view)
                items = value.items() if isinstance(value, dict) else [("rank1", value)]
                for metric, v in items:
                    if v is not None:
                        sums.setdefault((name, metric), {}).setdefault(view, []).append(float(v))
    if not sums:
        return ""
    rows = []
    for (name, metric), per_view in sums.items():
        label = name if metric == "rank1" and all(m == "rank1" for _, m in sums) else f"{name} {metric}"
        means = {v: float(np.mean(x)) for v, x in per_view.items()}
        overall = float(np.mean(list(means.values()))) if means else None
        rows.append([("key", _e(label))] + [("", _e(_num(means.get(v)))) for v in views]
                    + [("mean", _e(_num(overall)))])
    seeds = f" (mean over {len(runs)} seeds)" if len(runs) > 1 else ""
    table = _table(["probe"] + views + ["mean of views"], rows, "per-view", mean_last=True)
    return f"<details><summary>per probe view{_e(seeds)}</summary>{table}</details>"


def _board(table: Table, index: int, page_dir: Path) -> str:
    frame = table.frame.fillna("")
    columns = [str(c) for c in frame.columns]
    has_runs = any(r.get("source") == "run" for r in table.rows)
    best = table.best()
    head = []
    for i, c in enumerate(columns):
        cls = "key sortable" if c in _TEXT_COLUMNS else "sortable"
        head.append(f'<th class="{cls}" data-col="{i}" scope="col">{_e(c)}</th>')
    if has_runs:
        head.append('<th class="key" scope="col">reports</th>')
    width = len(head)
    bodies = []
    for i, row in enumerate(table.rows):
        source = str(row.get("source", ""))
        kind = "run" if source == "run" else "paper"
        cells = []
        for c in columns:
            value = frame.iloc[i][c] if i < len(frame) else ""
            text = "" if value is None else str(value)
            cls = []
            if c in _TEXT_COLUMNS:
                cls.append("key")
            if c in ("reference", "vs paper"):
                cls.append("wrap")
            if c == "vs paper" and text.startswith("n/a"):
                cls.append("na")
            if i in best.get(c, ()):
                cls.append("best")
            shown = _e(text)
            if c == "source" and kind == "paper":
                shown = f'<span class="badge">{_e(text)}</span>'
            cells.append(f'<td class="{" ".join(cls)}" data-sort="{_e(_sort_value(c, text))}">{shown}</td>')
        if has_runs:
            cls, html = _reports_cell(row, page_dir)
            cells.append(f'<td class="{cls}">{html}</td>')
        body = f'<tr class="{kind}">' + "".join(cells) + "</tr>"
        details = _per_view_details(row) if kind == "run" else ""
        if details:
            body += f'<tr class="detail-row"><td class="detail" colspan="{width}">{details}</td></tr>'
        bodies.append(f'<tbody class="{kind}">{body}</tbody>')
    protocol, split_label, data = _facets(table)
    banner = ('<div class="banner synthetic-banner">SYNTHETIC DATA &mdash; these runs show the pipeline works; '
              'their numbers are not comparable with published ones</div>' if table.data == "synthetic" else "")
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in table.notes)
    return (f'<section class="board" id="table-{index}" data-protocol="{_e(protocol)}" '
            f'data-split="{_e(split_label)}" data-data="{_e(data)}">'
            f"<h2>{_e(table.title)}</h2>{banner}"
            f'<div class="scroll"><table class="leaderboard"><thead><tr>{"".join(head)}</tr></thead>'
            f'{"".join(bodies)}</table></div>{notes}</section>')


def _facets(table: Table) -> tuple[str, str, str]:
    """What the filters select on: the table's protocol, split and kind of data."""
    split = table.key.get("split") or {}
    if split.get("partition"):
        label = f"partition {Path(split['partition']).name}"
    elif split:
        label = f"train {','.join(split.get('train') or ['?'])} / test {','.join(split.get('test') or ['?'])}"
    else:
        label = "papers' split"
    return str(table.key.get("protocol", "")), label, table.data


def _filters(tables: list[Table]) -> str:
    """The filter controls, hidden until the script shows them (without it every table is shown)."""
    def options(name: str, values) -> str:
        opts = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in dict.fromkeys(values) if v)
        return f'<label>{_e(name)} <select name="{_e(name)}"><option value="">all</option>{opts}</select></label>'

    facets = [_facets(t) for t in tables]
    return (f'<div class="filters" id="filters" hidden>{options("protocol", (f[0] for f in facets))}'
            f'{options("split", (f[1] for f in facets))}{options("data", (f[2] for f in facets))}</div>')


def render_page(tables: list[Table], page_dir: str | Path | None = None) -> str:
    """The page for ``tables`` as an HTML string; links to run reports are relative to
    ``page_dir`` (the folder the page is written to; default the current directory)."""
    from ..io import package_version

    page_dir = Path(page_dir) if page_dir is not None else Path.cwd()
    runs = sum(len(r.get("_runs") or []) for t in tables for r in t.rows)
    body = ["<h1>gaitbench leaderboard</h1>",
            f'<p class="subtitle">{len(tables)} table(s), {runs} run(s). Each table holds runs that may be '
            "ranked against each other: same protocol version, split and dataset.</p>"]
    if any(t.data == "synthetic" for t in tables):
        body.append('<div class="banner" id="synthetic-banner">Tables marked SYNTHETIC were computed on '
                    "gaitbench's synthetic data: not comparable with published numbers.</div>")
    body.append(_filters(tables))
    body.append('<p class="legend">Bold on green: the best run value of a column. Grey italic rows: published '
                "numbers (papers, or reproductions), with their source. Click a column header to sort; "
                "&ldquo;per probe view&rdquo; under a run row unfolds its per-view table.</p>")
    if not tables:
        body.append('<p class="note">No tables: no run records matched.</p>')
    body.extend(_board(t, i, page_dir) for i, t in enumerate(tables))
    body.append(f"<footer>gaitbench {_e(package_version())} leaderboard. Self-contained page: inline style and "
                "script, no external resources.</footer>")
    title = "gaitbench leaderboard" + (" (SYNTHETIC data included)" if any(t.data == "synthetic" for t in tables)
                                       else "")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta name=\"color-scheme\" content=\"light dark\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}{_PAGE_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n")
