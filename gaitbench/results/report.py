"""A run directory -> one self-contained HTML report.

The page carries everything inline (CSS, figures as SVG or base64 PNG) and loads nothing: it can
be mailed, archived or opened offline, and a Content-Security-Policy forbids any fetch. Parts the
record lacks (no training log, no view tables) are left out with a short note.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import GaitbenchError
from .record import RunLike, RunRecord, as_run, read_run
from ..io import write_text_atomic

__all__ = ["write_report", "render_report", "read_train_log"]

IMAGE_FORMATS = ("svg", "png")
# Recipe sections shown up front; the whole recipe is in a collapsible block below them.
KEY_RECIPE_SECTIONS = ("sampler", "optimizer", "schedule", "loss", "train")

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1280px; margin: 0 auto; padding: 1.5em 2em 3em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; }
.subtitle { color: #555; margin-top: 0; }
.banner { background: #fff3cd; border: 2px solid #d39e00; color: #6b4e00; font-weight: 700;
          font-size: 1.1em; padding: 0.7em 1em; margin: 1em 0; border-radius: 4px; }
.note { color: #666; font-style: italic; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f5; }
td.key, th.key { text-align: left; }
td.text { text-align: left; white-space: pre-wrap; word-break: break-word; }
td.mean, th.mean { font-weight: 700; background: #eef4ff; }
figure { margin: 1em 0 2em; }
figure svg, figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
details { margin: 0.5em 0 1em; }
summary { cursor: pointer; color: #333; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; }
.ranklist { display: flex; flex-wrap: wrap; gap: 0.4em; align-items: flex-start; margin: 0.4em 0 1em; }
.ranklist figure { margin: 0; padding: 0.25em; border: 3px solid #ccc; border-radius: 4px; text-align: center;
                   font-size: 0.75em; min-width: 4.5em; }
.ranklist figure.probe { border-color: #4a6fa5; background: #eef4ff; }
.ranklist figure.hit { border-color: #2e8b3a; }
.ranklist figure.miss { border-color: #c0392b; }
.ranklist img { display: block; margin: 0 auto 0.2em; height: 64px; width: auto; image-rendering: pixelated;
                background: #000; }
:root { color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  body { background: #161618; color: #e6e6e8; }
  h2 { border-bottom-color: #3a3a3e; }
  .subtitle, figcaption, summary { color: #b0b0b6; }
  .note { color: #a0a0a6; }
  th, td { border-color: #3f3f44; }
  th { background: #26262a; }
  td.mean, th.mean { background: #1f2a3d; }
  .banner { background: #3d3000; border-color: #d39e00; color: #ffd966; }
  figure svg, figure img { background: #fff; }
  a { color: #8ab4f8; }
  .ranklist figure.probe { background: #1f2a3d; }
}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """A record value as display text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list)) for v in value):
            return ", ".join(_fmt(v) for v in value) if value else "(none)"
        return json.dumps(value, default=str)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _num(value: Any, digits: int = 2) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-" if value is None else str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "-"


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as ``("optimizer.lr", 0.001)`` pairs, in their order."""
    if not isinstance(data, dict) or not data:
        return [(prefix, data)] if prefix else []
    pairs = []
    for key, value in data.items():
        pairs.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return pairs


def _table(headers: list[str] | None, rows: Iterable[list[tuple[str, str]]], cls: str = "",
           mean_last: bool = False) -> str:
    """An HTML table; headers are plain text, each cell is ``(css class, already-escaped html)``.
    The first column holds keys; ``mean_last`` marks the last column as the mean."""
    out = [f'<div class="scroll"><table class="{_e(cls)}">']
    if headers:
        classes = ["key"] + [""] * (len(headers) - 1)
        if mean_last and len(headers) > 1:
            classes[-1] = "mean"
        out.append("<thead><tr>" + "".join(f'<th class="{c}">{_e(h)}</th>' for c, h in zip(classes, headers))
                   + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="{c}">{h}</td>' for c, h in row) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _kv_table(pairs: Iterable[tuple[str, Any]], cls: str = "facts") -> str:
    return _table(None, ([("key", _e(k)), ("text", _e(_fmt(v)))] for k, v in pairs), cls)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def read_train_log(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Records of a ``train_log.jsonl`` and notes on what could not be read (missing file, bad lines)."""
    path = Path(path)
    if not path.is_file():
        return [], [f"No {path.name} in the run directory: training curves omitted."]
    records, bad = [], 0
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path.name} is not readable ({exc}): training curves omitted."]
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    notes = [f"{bad} unreadable line(s) in {path.name} skipped."] if bad else []
    if not records:
        notes.append(f"{path.name} has no records: training curves omitted.")
    return records, notes


def _guarded(build: Callable[[], str], what: str) -> str:
    """``build()``, or a note when the record is malformed: a bad part must not cost the whole report."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - any failure becomes a note on the page
        return _note(f"{what} omitted: the record is malformed here ({type(exc).__name__}: {exc}).")


def _figure_html(make: Callable[[], Any], caption: str, image_format: str) -> str:
    from . import plots

    # A malformed table must cost one figure, not the whole report.
    try:
        fig = make()
    except Exception as exc:  # noqa: BLE001 - any plotting failure becomes a note on the page
        return _note(f"Figure omitted ({type(exc).__name__}: {exc}). It would have shown: {caption}")
    if image_format == "png":
        body = f'<img alt="{_e(caption)}" src="data:image/png;base64,{plots.figure_to_png_base64(fig)}">'
    else:
        svg = plots.figure_to_svg(fig)
        # Inline SVG must start at the <svg> element: no XML declaration or DOCTYPE inside HTML.
        body = svg[svg.index("<svg"):]
        body = body.replace("<svg ", f'<svg role="img" aria-label="{_e(caption)}" ', 1)
    return f"<figure>{body}<figcaption>{_e(caption)}</figcaption></figure>"


def _per_view_section(run: RunRecord) -> str:
    from .plots import probe_sets

    tables = run.tables.probe_sets
    sets = probe_sets(run, "per_probe_view")
    if not sets:
        return _note("The record has no per-view tables (this protocol reports no view breakdown).")
    views: list[str] = []
    for name in sets:
        for view in tables[name].views or tables[name].per_probe_view:
            if str(view) not in views:
                views.append(str(view))
    rows = []
    for name in sets:
        per_view = {str(k): v for k, v in tables[name].per_probe_view.items()}
        mean = run.metrics.get(f"{name}/rank1")
        if mean is None:
            values = [float(v) for v in per_view.values() if v is not None]
            mean = sum(values) / len(values) if values else None
        rows.append([("key", _e(name))] + [("", _e(_num(per_view.get(v)))) for v in views]
                    + [("mean", _e(_num(mean)))])
    table = _table(["probe"] + views + ["mean"], rows, "per-view", mean_last=True)
    text = ("Rank-1 (%) per probe view, averaged over gallery views"
            + (" (identical views excluded)" if run.tables.settings and run.tables.settings.get("exclude_identical_view")
               else "")
            + "; mean as reported in the metrics.")
    ignored = run.tables.extra.get("ignored_views")
    if ignored:
        text += f" Ignored views: {_fmt(ignored)}."
    return f"<p>{_e(text)}</p>{table}"


def _matrices_details(run: RunRecord) -> str:
    from .plots import probe_sets

    parts = []
    for name in probe_sets(run, "matrix"):
        views = [str(v) for v in run.tables.probe_sets[name].views or []]
        matrix = run.tables.probe_sets[name].matrix
        rows = [[("key", _e(views[i] if i < len(views) else "?"))] + [("", _e(_num(v, 1))) for v in row]
                for i, row in enumerate(matrix)]
        parts.append(_table([f"{name}: probe \\ gallery"] + views, rows, "matrix"))
    if not parts:
        return ""
    return "<details><summary>View matrices as numbers</summary>" + "".join(parts) + "</details>"


def _facts_section(run: RunRecord) -> str:
    dataset, split, config = run.dataset, run.split, run.config
    parts = ["<h3>Dataset and split</h3>", _kv_table([
        ("dataset", dataset.name),
        ("synthetic", dataset.synthetic),
        ("fingerprint", dataset.fingerprint),
        ("subjects", dataset.get("subjects")),
        ("sequences", dataset.get("sequences")),
        ("store", dataset.get("store")),
        ("root", dataset.get("root")),
        ("split: train", split.train or None),
        ("split: test", split.test or None),
        ("split: partition", split.partition),
    ] + [(f"generator.{k}", v) for k, v in _flatten(dataset.get("generator") or {})])]
    parts.append("<h3>Run</h3>")
    parts.append(_kv_table([
        ("method", run.method), ("variant", run.variant or None), ("recipe", run.recipe or config.get("name")),
        ("seed", run.seed), ("iterations", run.iterations), ("precision", run.precision), ("device", run.device),
        ("parameters", run.parameters), ("checkpoint", run.checkpoint),
    ]))
    final = run.training.get("final")
    if isinstance(final, dict) and final:
        parts.append("<h3>Last training step</h3>" + _kv_table(final.items()))
    parts.append("<h3>Recipe</h3>")
    parts.append(_recipe_facts(config))
    if run.tables.settings is not None and run.tables.settings.options:
        parts.append("<h3>Evaluation settings</h3>" + _kv_table(_flatten(run.tables.settings.options)))
    if run.timings:
        parts.append("<h3>Timings</h3>" + _kv_table(
            (k, f"{_num(v, 1)} s" if k.endswith("_s") else v) for k, v in run.timings.items()))
    parts.append("<h3>Versions</h3>" + _kv_table(_flatten(run.versions.to_json())))
    parts.append("<h3>Post-processing stages</h3>")
    if run.stages:
        parts.append(_kv_table((s.name, {k: v for k, v in s.to_json().items() if k != "name"}) for s in run.stages))
    else:
        parts.append(_note("None: plain retrieval."))
    return "".join(parts)


def _recipe_facts(config: dict[str, Any]) -> str:
    if not config:
        return _note("The record carries no recipe.")
    parts = [f"<p>{_e(config['description'])}</p>"] if config.get("description") else []
    pairs = _flatten(config)
    key_pairs = [(k, v) for k, v in pairs if k.split(".", 1)[0] in KEY_RECIPE_SECTIONS]
    parts.append(_kv_table(key_pairs) if key_pairs else _note("No sampler/optimizer/schedule settings."))
    parts.append("<details><summary>Full recipe</summary>" + _kv_table(pairs) + "</details>")
    return "".join(parts)


def render_report(run: RunLike, log_records: list[dict[str, Any]] | None = None,
                  notes: Iterable[str] = (), image_format: str = "svg", ranklists: list | None = None,
                  thumbnails: dict[int, str] | None = None, ranklist_notes: Iterable[str] = ()) -> str:
    """The report page for one run record (and its training log records) as an HTML string.
    ``ranklists``: :class:`~gaitbench.evaluation.ranklist.Ranklist` s to show, with ``thumbnails``
    (embeddings row -> ``data:`` URI of a silhouette) where the dataset was at hand."""
    if image_format not in IMAGE_FORMATS:
        raise GaitbenchError(f"unknown image format {image_format!r}; use one of {', '.join(IMAGE_FORMATS)}")
    run = as_run(run)
    method = run.method + (f" [{run.variant}]" if run.variant else "")
    protocol = run.protocol + (f" v{run.protocol_version}" if run.protocol_version else "")
    body = [f"<h1>{_e(method)} &mdash; {_e(protocol)}</h1>",
            f'<p class="subtitle">dataset {_e(run.dataset.name)} (fingerprint {_e(run.dataset.fingerprint)}), '
            f'recipe {_e(run.recipe or "?")}, seed {_e("?" if run.seed is None else run.seed)}</p>']
    if run.synthetic:
        body.append('<div class="banner" id="synthetic-banner">SYNTHETIC DATA &mdash; not comparable with '
                    'published numbers</div>')

    body.append("<h2>Metrics</h2>")
    if run.metrics:
        body.append(_table(["metric", "value"], ([("key", _e(k)), ("", _e(_num(v)))] for k, v in run.metrics.items()),
                           "metrics"))
    else:
        body.append(_note("The record has no metrics."))
    body.append("<h2>Per probe view</h2>")
    body.append(_guarded(lambda: _per_view_section(run), "Per-view table"))
    body.append("<h2>Figures</h2>")
    body.extend(_figures(run, log_records, image_format))
    body.extend(_note(n) for n in notes)
    verification = _guarded(lambda: _verification_section(run, image_format), "Verification")
    if verification:
        body.append("<h2>Verification</h2>")
        body.append(verification)
    if ranklists is not None:
        body.append("<h2>Ranklists</h2>")
        body.append(_guarded(lambda: _ranklists_section(ranklists, thumbnails or {}), "Ranklists"))
        body.extend(_note(n) for n in ranklist_notes)
    body.append("<h2>Run facts</h2>")
    body.append(_guarded(lambda: _facts_section(run), "Run facts"))
    body.append(f"<footer>gaitbench {_e(run.versions.gaitbench)} run report. Self-contained page: "
                f"no scripts, no external resources (images inline).</footer>")

    title = f"gaitbench report: {method} - {protocol}" + (" (SYNTHETIC)" if run.synthetic else "")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            # Belt and braces for "loads nothing": the browser refuses any fetch or script.
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _figures(run: RunRecord, log_records, image_format: str) -> list[str]:
    """The evaluation figures the record supports, then the training curves."""
    from . import plots

    out = []
    matrices, per_view = plots.probe_sets(run, "matrix"), plots.probe_sets(run, "per_probe_view")
    if matrices:
        out.append(_figure_html(lambda: plots.view_matrix_heatmaps(run),
                                "Rank-1 (%) for each probe view (rows) against each gallery view (columns).",
                                image_format))
        out.append(_guarded(lambda: _matrices_details(run), "View matrices"))
    if per_view:
        out.append(_figure_html(lambda: plots.per_view_curves(run),
                                "Rank-1 (%) per probe view, one line per probe set.", image_format))
    cmc = plots.cmc_data(run)
    if cmc is not None:
        out.append(_figure_html(lambda: plots.cmc_curve(run),
                                "Cumulative match characteristic: the share of probes (%) with a gallery sequence "
                                "of their subject within the first k, per probe set.", image_format))
    if not matrices and not per_view and cmc is None:
        out.append(_note("No evaluation tables in the record: no evaluation figures."))
    if log_records:
        title = plots.run_title(run, "Training")
        out.append(_figure_html(lambda: plots.training_curves(log_records, title=title),
                                "Training loss and learning rate per logged step.", image_format))
    return out


def _verification_section(run: RunRecord, image_format: str) -> str:
    """TAR at each FAR and EER per probe set, and the ROC; '' when the run was evaluated without
    verification."""
    from . import plots

    tables = {name: t.extra["verification"] for name, t in run.tables.probe_sets.items()
              if isinstance(t.extra.get("verification"), dict)}
    if not tables:
        return ""
    fars = list(next(iter(tables.values()))["tar_at_far"])
    rows = []
    for name, t in tables.items():
        rows.append([("key", _e(name)), ("", _e(f"{t['genuine_pairs']:,}")), ("", _e(f"{t['impostor_pairs']:,}"))]
                    + [("", _e(_num(t["tar_at_far"].get(f)))) for f in fars] + [("mean", _e(_num(t["eer"])))])
    settings = run.tables.settings.get("verification") if run.tables.settings is not None else None
    pairs = (settings or {}).get("pairs", "probe x gallery")
    text = (f"Pairs: {pairs}; genuine = same subject. A pair is accepted when its distance is at or below the "
            "threshold. TAR (%) at each false accept rate, and the equal error rate (%); a blank TAR needs "
            "more impostor pairs than there are.")
    notes = [n for t in tables.values() for n in t.get("notes", [])]
    return (f"<p>{_e(text)}</p>"
            + _table(["probe set", "genuine pairs", "impostor pairs"] + fars + ["EER"], rows, "verification",
                     mean_last=True)
            + "".join(_note(n) for n in dict.fromkeys(notes))
            + _figure_html(lambda: plots.roc_curves(run), "ROC: true accept rate against false accept rate, "
                           "per probe set.", image_format))


def _ranklists_section(lists, thumbnails: dict[int, str]) -> str:
    if not lists:
        return _note("No probes to list.")
    parts = ['<p>Each probe (blue) and its nearest gallery sequences, closest first: green marks a sequence of '
             "the probe's subject (a hit), red one of another subject.</p>"]
    for rl in lists:
        def cell(index, label, cls, caption):
            img = thumbnails.get(index)
            pic = f'<img alt="{_e(label)}" src="{img}">' if img else ""
            return f'<figure class="{cls}">{pic}<figcaption>{caption}</figcaption></figure>'

        probe_label = f"{rl.subject}/{rl.type}/{rl.view}"
        first = ("no hit in the gallery" if rl.first_hit is None and any(e.hit is not None for e in rl.entries)
                 else f"first hit at rank {rl.first_hit}" if rl.first_hit is not None else "subject unknown")
        cells = [cell(rl.index, probe_label, "probe", f"<b>probe</b><br>{_e(probe_label)}<br>{_e(first)}")]
        for k, e in enumerate(rl.entries, 1):
            label = f"{e.subject}/{e.type}/{e.view}"
            cls = "" if e.hit is None else ("hit" if e.hit else "miss")
            mark = "" if e.hit is None else (" &#10003;" if e.hit else " &#10007;")
            cells.append(cell(e.index, label, cls, f"#{k}{mark}<br>{_e(label)}<br>d {e.distance:.3g}"))
        parts.append(f"<h3>{_e(rl.probe_set)}: probe {_e(probe_label)}</h3>"
                     f'<div class="ranklist">{"".join(cells)}</div>')
    return "".join(parts)


def _thumbnail(frames) -> str:
    """The middle silhouette of a sequence as a ``data:image/png`` URI."""
    import base64
    import io

    import numpy as np
    from matplotlib.image import imsave

    frame = np.asarray(frames[len(frames) // 2], dtype=np.uint8)
    buf = io.BytesIO()
    imsave(buf, frame, cmap="gray", vmin=0, vmax=255, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def run_ranklists(run: RunRecord, run_dir: Path, protocol, top: int, probes: int = 6,
                  device: str = "cpu") -> tuple[list, dict[int, str], list[str]]:
    """The ranklists of a run from its ``embeddings.npz`` under ``protocol`` (plain distances, the
    distance the run evaluated with), silhouette thumbnails when the run's dataset is at hand (same
    fingerprint), and notes on what is shown instead."""
    from ..evaluation.embeddings import read_embeddings
    from ..evaluation.ranklist import ranklists
    from ..protocols import resolve_split

    path = run_dir / "embeddings.npz"
    if not path.is_file():
        raise GaitbenchError(f"{run_dir}: no embeddings.npz, which ranklists are computed from (runs write it; "
                             f"`gaitbench embed ... --out {path}` writes one for a checkpoint)")
    data = read_embeddings(path)
    protocol = resolve_split(protocol, None, None, recorded_probe_set=data.get("probe_set"), recorded_from=str(path))
    metric = str(data["metric"]) if "metric" in data else None
    lists = ranklists(protocol, data["embeddings"], data["subjects"], data["types"], data["views"], top=top,
                      probes=probes, metric=metric, device=device)
    notes = []
    if run.stages:
        notes.append("Ranklists rank plain distances: the run's post-processing stages "
                     f"({run.stages_label}) are not replayed here.")
    thumbnails: dict[int, str] = {}
    root = run.dataset.get("root")
    store = None
    if root:
        try:
            from ..data.store import open_store

            store = open_store(root)
        except Exception as exc:  # noqa: BLE001 - no dataset at hand: labels instead of silhouettes
            notes.append(f"Silhouettes not shown: the run's dataset is not at hand ({exc}); labels instead.")
        if store is not None and store.fingerprint != run.dataset.fingerprint:
            notes.append(f"Silhouettes not shown: the data at {root} is not the run's (fingerprint {store.fingerprint}, "
                         f"the run's {run.dataset.fingerprint}); labels instead.")
            store = None
    else:
        notes.append("Silhouettes not shown: the record names no dataset root; labels instead.")
    if store is not None:
        index = store.index
        rows = {(s, t, v): i for i, (s, t, v) in enumerate(zip(index["subject"], index["type"], index["view"]))}
        wanted = {rl.index for rl in lists} | {e.index for rl in lists for e in rl.entries}
        for i in wanted:
            row = rows.get((str(data["subjects"][i]), str(data["types"][i]), str(data["views"][i])))
            if row is not None:
                thumbnails[i] = _thumbnail(store.frames(row))
    return lists, thumbnails, notes


def write_report(run_dir: str | Path, out: str | Path | None = None, *, image_format: str = "svg",
                 ranklists: int = 0, protocol=None, probes: int = 6) -> Path:
    """Write the HTML report of the run in ``run_dir`` (default ``run_dir/report.html``); returns its path.
    ``run_dir`` may also be the ``result.json`` itself. ``ranklists``: with ``protocol`` (the run's,
    resolved), the top-``ranklists`` gallery of ``probes`` probes from the run's embeddings."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    lists = thumbnails = None
    rl_notes: list[str] = []
    if ranklists:
        if protocol is None:
            raise GaitbenchError("ranklists need the run's protocol")
        lists, thumbnails, rl_notes = run_ranklists(run, run_dir, protocol, ranklists, probes)
    log_records, notes = read_train_log(run_dir / "train_log.jsonl")
    page = render_report(run, log_records, notes, image_format=image_format, ranklists=lists,
                         thumbnails=thumbnails, ranklist_notes=rl_notes)
    out = Path(out) if out is not None else run_dir / "report.html"
    return write_text_atomic(out, page)  # a reader never sees half a report
