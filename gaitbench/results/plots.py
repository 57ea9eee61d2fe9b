"""Figures for run records: view-matrix heatmaps, per-view and CMC curves, training curves and
accuracy-vs-cost scatters.

Every function builds a :class:`matplotlib.figure.Figure` attached to an Agg canvas directly,
never through ``pyplot``: no global figure registry, no backend switch, so it is safe in threads
and on machines without a display. Each returns the figure and, given ``out`` (one path or
several), also saves it; the format follows the suffix (``.png`` or ``.svg``).
"""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .record import RunLike, as_run

__all__ = [
    "view_matrix_heatmaps",
    "per_view_curves",
    "cmc_curve",
    "cmc_data",
    "roc_curves",
    "training_curves",
    "accuracy_vs_cost",
    "probe_sets",
    "run_title",
    "save_figure",
    "figure_to_svg",
    "figure_to_png_base64",
]

OutPaths = Union[str, Path, Sequence[Union[str, Path]], None]
SUFFIXES = (".png", ".svg")
# Beyond this many views per side the cell numbers no longer fit; the colours still tell the story.
MAX_ANNOTATED_VIEWS = 24
# No metadata in SVGs: no date (same figure, same file) and no external URIs in the document.
_SVG_METADATA = {"Format": None, "Type": None, "Creator": None, "Date": None}
_CMAP = "viridis"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def _text(value: Any) -> str:
    """A record string as literal figure text (a '$' would otherwise start mathtext)."""
    return str(value).replace("$", r"\$")


def run_title(run: RunLike, what: str) -> str:
    """``"<what> - method [variant] - protocol vX"``, marked SYNTHETIC DATA when it is."""
    run = as_run(run)
    label = run.method + (f" [{run.variant}]" if run.variant else "")
    protocol = run.protocol + (f" v{run.protocol_version}" if run.protocol_version else "")
    return f"{what} - {label} - {protocol}" + (" - SYNTHETIC DATA" if run.synthetic else "")


def _as_float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def probe_sets(run: RunLike, key: str = "matrix") -> list[str]:
    """Names of the run's probe sets (NM, BG, CL...) whose table carries ``key``."""
    return [name for name, table in as_run(run).tables.probe_sets.items() if key in table.to_json()]


def save_figure(fig: Figure, out: OutPaths, dpi: int = 150) -> list[Path]:
    """Save ``fig`` to each path in ``out``; the suffix (.png or .svg) picks the format."""
    if out is None:
        return []
    paths = [Path(out)] if isinstance(out, (str, Path)) else [Path(p) for p in out]
    for path in paths:
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: cannot save a figure as {path.suffix or 'a file without suffix'!r}; "
                             f"use one of {', '.join(SUFFIXES)}")
    from ..io import atomic_write

    for path in paths:  # each file whole or absent: drawn into a temporary, renamed when complete
        if path.suffix.lower() == ".svg":
            atomic_write(path, lambda f: fig.savefig(f, format="svg", metadata=_SVG_METADATA))
        else:
            atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return paths


def figure_to_svg(fig: Figure) -> str:
    """The figure as an SVG document (text, no metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata=_SVG_METADATA)
    return buf.getvalue().decode("utf-8")


def figure_to_png_base64(fig: Figure, dpi: int = 110) -> str:
    """The figure as a base64-encoded PNG (for ``data:image/png;base64,...``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def view_matrix_heatmaps(run: RunLike, out: OutPaths = None) -> Figure:
    """One annotated probe-view x gallery-view rank-1 heatmap per probe set, sharing one colour scale."""
    run = as_run(run)
    sets = probe_sets(run, "matrix")
    if not sets:
        raise ValueError("no view matrices in result['tables'] (needs probe sets with 'views' and 'matrix')")
    matrices = []
    for name in sets:
        table = run.tables.probe_sets[name]
        matrix = np.array([[_as_float(v) for v in row] for row in table.matrix], dtype=float)
        views = [str(v) for v in table.views or []]
        if matrix.ndim != 2 or matrix.shape != (len(views), len(views)):
            raise ValueError(f"tables[{name!r}]: matrix of shape {matrix.shape} does not match "
                             f"{len(views)} views")
        matrices.append((name, views, matrix))
    finite = np.concatenate([m[np.isfinite(m)] for _, _, m in matrices])
    # One scale for all sets so that colours compare across NM/BG/CL.
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)

    n = len(matrices)
    side = max(3.6, 0.36 * max(len(v) for _, v, _ in matrices))
    fig = _new_figure(side * n + 1.2, side + 1.0)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, (name, views, matrix) in zip(axes, matrices):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=_CMAP, norm=norm, aspect="equal")
        ticks = range(len(views))
        ax.set_xticks(ticks, [_text(v) for v in views], rotation=90, fontsize=7)
        ax.set_yticks(ticks, [_text(v) for v in views], fontsize=7)
        ax.set_xlabel("gallery view")
        ax.set_ylabel("probe view")
        ax.set_title(_text(name))
        if len(views) <= MAX_ANNOTATED_VIEWS:
            _annotate_cells(ax, matrix, norm)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="rank-1 (%)")
    fig.suptitle(_text(run_title(run, "Rank-1 by probe and gallery view")))
    save_figure(fig, out)
    return fig


def _annotate_cells(ax, matrix: np.ndarray, norm: Normalize) -> None:
    cmap = ax.images[-1].get_cmap()
    size = 6 if matrix.shape[0] > 8 else 8
    for (i, j), value in np.ndenumerate(matrix):
        if not math.isfinite(value):
            continue
        r, g, b, _ = cmap(norm(value))
        # Dark text on light cells, light text on dark ones (relative luminance).
        colour = "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=size, color=colour)


def per_view_curves(run: RunLike, out: OutPaths = None) -> Figure:
    """Rank-1 per probe view (mean over gallery views), one line per probe set."""
    run = as_run(run)
    sets = probe_sets(run, "per_probe_view")
    if not sets:
        raise ValueError("no per-view results in result['tables'] (needs probe sets with 'per_probe_view')")
    tables = run.tables.probe_sets
    views: list[str] = []
    for name in sets:  # union of views, in first-seen order
        for view in tables[name].views or tables[name].per_probe_view:
            if str(view) not in views:
                views.append(str(view))
    fig = _new_figure(max(6.0, 0.5 * len(views) + 2.0), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(views))
    for name in sets:
        per_view = {str(k): v for k, v in tables[name].per_probe_view.items()}
        y = np.array([_as_float(per_view.get(v)) for v in views])
        mean = run.metrics.get(f"{name}/rank1")
        if mean is None and np.isfinite(y).any():
            mean = float(np.nanmean(y))
        label = _text(name) + (f" (mean {float(mean):.2f})" if mean is not None else "")
        ax.plot(x, y, marker="o", label=label)
    ax.set_xticks(x, [_text(v) for v in views], rotation=90 if len(views) > 16 else 0)
    ax.set_xlabel("probe view")
    ax.set_ylabel("rank-1 (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(_text(run_title(run, "Rank-1 per probe view")), fontsize=10)
    save_figure(fig, out)
    return fig


def cmc_data(run: RunLike) -> tuple[list[int], dict[str, list]] | None:
    """``(ranks, {curve name: values in %})``: each probe set's ``cmc`` list (what the evaluation
    writes), or a protocol-level ``tables["cmc"] = {"ranks": [...], "values": [...]}``; None
    when the record has no CMC."""
    run = as_run(run)
    cmc = run.tables.extra.get("cmc")
    if isinstance(cmc, dict) and "ranks" in cmc and "values" in cmc:
        values = cmc["values"] if isinstance(cmc["values"], dict) else {"CMC": cmc["values"]}
        return [int(r) for r in cmc["ranks"]], values
    curves = {name: t.extra["cmc"] for name, t in run.tables.probe_sets.items()
              if isinstance(t.extra.get("cmc"), list) and t.extra["cmc"]}
    if not curves:
        return None
    return list(range(1, max(len(v) for v in curves.values()) + 1)), curves


def cmc_curve(run: RunLike, out: OutPaths = None) -> Figure:
    """Cumulative match characteristic: one curve per probe set (their ``cmc`` lists), or from
    ``tables["cmc"] = {"ranks": [...], "values": [...]}`` (``values`` may map curve names to lists)."""
    run = as_run(run)
    data = cmc_data(run)
    if data is None:
        raise ValueError(f"run record for protocol {run.protocol!r} has no CMC curve: expected a probe set's "
                         "'cmc' list or tables['cmc'] = {'ranks': [...], 'values': [...]}")
    ranks, curves = data
    fig = _new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    for name, values in curves.items():
        if len(values) != len(ranks):
            raise ValueError(f"tables['cmc']: {len(values)} values for {len(ranks)} ranks ({name})")
        ax.plot(ranks, [_as_float(v) for v in values], marker="o" if len(ranks) <= 30 else None,
                label=_text(name))
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate (%)")
    ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(_text(run_title(run, "CMC")), fontsize=10)
    save_figure(fig, out)
    return fig


def roc_curves(run: RunLike, out: OutPaths = None) -> Figure:
    """Verification ROC, TAR against FAR (log axis), one curve per probe set with its EER, from the
    probe sets' ``verification`` tables (``--set verification=true``)."""
    run = as_run(run)
    tables = {name: t.extra["verification"] for name, t in run.tables.probe_sets.items()
              if isinstance(t.extra.get("verification"), dict)}
    if not tables:
        raise ValueError(f"run record for protocol {run.protocol!r} has no verification tables "
                         "(evaluate with --set verification=true)")
    fig = _new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    floor = None
    for name, t in tables.items():
        far = np.array([_as_float(v) for v in t["roc"]["far"]])
        tar = np.array([_as_float(v) for v in t["roc"]["tar"]])
        if len(far) != len(tar):
            raise ValueError(f"tables[{name!r}]['verification']['roc']: {len(far)} FAR and {len(tar)} TAR values")
        positive = far[far > 0]
        if positive.size:
            floor = positive.min() if floor is None else min(floor, positive.min())
        ax.plot(far, tar, drawstyle="steps-post", label=_text(f"{name} (EER {float(t['eer']):.2f}%)"))
    ax.set_xscale("symlog", linthresh=floor if floor else 1e-4)
    ax.set_xlim(left=0, right=100)
    ax.set_xlabel("false accept rate (%)")
    ax.set_ylabel("true accept rate (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(_text(run_title(run, "Verification ROC")), fontsize=10)
    save_figure(fig, out)
    return fig


def training_curves(log_records: Iterable[dict[str, Any]], out: OutPaths = None,
                    title: str = "Training") -> Figure:
    """Loss (and hard loss when logged) and learning rate vs step, in two stacked panels."""
    records = [r for r in log_records if isinstance(r, dict)]
    if not records:
        raise ValueError("no training log records to plot")
    steps = [_as_float(r.get("step", i)) for i, r in enumerate(records)]
    fig = _new_figure(7.0, 5.2)
    loss_ax, lr_ax = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    for key in ("loss", "hard_loss"):
        if any(r.get(key) is not None for r in records):
            loss_ax.plot(steps, [_as_float(r.get(key)) for r in records], label=key)
    loss_ax.set_ylabel("loss")
    loss_ax.grid(True, alpha=0.3)
    if loss_ax.lines:
        loss_ax.legend(loc="best", fontsize=8)
    lr = [_as_float(r.get("lr")) for r in records]
    lr_ax.plot(steps, lr, color="tab:green", drawstyle="steps-post")
    # Step schedules span decades: a log axis shows each drop as a visible step.
    positive = [v for v in lr if math.isfinite(v)]
    if positive and min(positive) > 0 and max(positive) / min(positive) >= 10:
        lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    lr_ax.grid(True, alpha=0.3)
    loss_ax.set_title(_text(title), fontsize=10)
    save_figure(fig, out)
    return fig


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _numeric(value: Any) -> float:
    """A number from a leaderboard cell: 158216, "158,216" or "90.12 ± 0.40" (the mean)."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    match = _NUMBER.search(str(value).replace(",", ""))
    return float(match.group()) if match else float("nan")


def accuracy_vs_cost(df, x: str, y: str, label: str = "method", out: OutPaths = None) -> Figure:
    """Scatter of leaderboard rows, ``x`` (cost: params, GFLOPs, throughput) vs ``y`` (a metric),
    each point labelled with its ``label`` column. Formatted cells ("1,234", "90.1 ± 0.4") are read
    as numbers; rows lacking either value are left out."""
    missing = [c for c in (x, y, label) if c not in df.columns]
    if missing:
        raise ValueError(f"leaderboard has no column(s) {', '.join(map(repr, missing))}; "
                         f"columns: {', '.join(map(str, df.columns))}")
    xs = np.array([_numeric(v) for v in df[x]])
    ys = np.array([_numeric(v) for v in df[y]])
    keep = np.isfinite(xs) & np.isfinite(ys)
    if not keep.any():
        raise ValueError(f"no leaderboard row has numeric values for both {x!r} and {y!r}")
    labels = [str(v) for v in df[label]]
    fig = _new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    ax.scatter(xs[keep], ys[keep])
    for xi, yi, text in zip(xs[keep], ys[keep], np.array(labels, dtype=object)[keep]):
        ax.annotate(_text(text), (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.margins(x=0.15, y=0.1)  # room for the point labels
    # Parameter counts and FLOPs of different methods span orders of magnitude.
    if (xs[keep] > 0).all() and xs[keep].max() / xs[keep].min() >= 50:
        ax.set_xscale("log")
    ax.set_xlabel(_text(x))
    ax.set_ylabel(_text(y))
    ax.grid(True, alpha=0.3)
    ax.set_title(_text(f"{y} vs {x}"))
    save_figure(fig, out)
    return fig
