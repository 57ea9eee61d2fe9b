"""Plots and the HTML run report: figure structure, saved files, report content, and the report as
a real headless Chromium renders it."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import time

import pandas as pd
import pytest

import matplotlib  # noqa: E402,F401  (a hard dependency: a missing one must fail, not skip)

from gaitbench.results import plots  # noqa: E402
from gaitbench.errors import GaitbenchError  # noqa: E402
from gaitbench.results.report import render_report, write_report  # noqa: E402

VIEWS = ["000", "054", "090", "126", "180"]
SETS = {"NM": 0.0, "BG": 6.0, "CL": 14.0}  # probe set -> how much lower than NM
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _matrix(drop: float) -> list[list[float]]:
    # Like CASIA-B: best on the diagonal and between mirror views, worst across 90 degrees.
    return [[round(max(0.0, 100.0 - drop - 0.35 * abs(int(p) - int(g))), 2) for g in VIEWS] for p in VIEWS]


def _table(drop: float) -> dict:
    matrix = _matrix(drop)
    # Per probe view: mean over the other gallery views (identical view excluded).
    per_view = {v: round(sum(x for j, x in enumerate(row) if j != i) / (len(VIEWS) - 1), 2)
                for i, (v, row) in enumerate(zip(VIEWS, matrix))}
    return {"views": VIEWS, "probe_types": ["nm-05", "nm-06"], "matrix": matrix, "per_probe_view": per_view,
            "num_probes": {v: 20 for v in VIEWS}, "num_gallery": {v: 40 for v in VIEWS}}


def make_result(synthetic: bool = True) -> dict:
    tables = {name: _table(drop) for name, drop in SETS.items()}
    metrics = {f"{name}/rank1": round(sum(t["per_probe_view"].values()) / len(VIEWS), 4)
               for name, t in tables.items()}
    tables.update({"ignored_views": [], "settings": {"metric": "euc", "gallery_types": ["nm-01", "nm-02"],
                                                      "view_list": VIEWS, "exclude_identical_view": True}})
    return {
        "method": "gaitset", "variant": "quick", "recipe": "quick", "protocol": "casiab", "protocol_version": "1.0.0",
        "split": {"train": ["001-006"], "test": ["007-012"], "partition": None},
        "dataset": {"name": "casiab", "synthetic": synthetic, "fingerprint": "0123456789abcdef",
                    "sequences": 1320, "subjects": 12, "store": "gaitbench-packed"},
        "config": {"name": "quick", "description": "GaitSet-quick, CPU", "variant": "quick", "model": {},
                   "sampler": {"P": 8, "K": 8, "frames": 12, "order": "unordered"},
                   "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 0.0},
                   "schedule": {"milestones": [45], "gamma": 0.1},
                   "loss": {"triplet": {"weight": 1.0, "margin": 0.2}},
                   "train": {"iterations": 60, "log_every": 10}},
        "seed": 0, "iterations": 60, "device": "cpu", "precision": "fp32", "parameters": 158216,
        "metrics": metrics, "tables": tables,
        "timings": {"data_s": 1.5, "train_s": 10.25, "embed_s": 0.5, "evaluate_s": 0.1, "total_s": 12.35},
        "versions": {"gaitbench": "0.1.0", "torch": "2.5.0", "python": "3.11.7",
                     "plugin": {"name": "gaitset", "distribution": "gaitbench", "version": "0.1.0"}},
        "stages": [],
        "training": {"final": {"step": 60, "lr": 0.0001, "loss": 0.17}},
    }


def make_log() -> list[dict]:
    return [{"step": s, "lr": 0.001 if s < 45 else 0.0001, "loss": 0.2 - s / 1000, "hard_loss": 0.5 + s / 200,
             "loss_num": 1000.0 - 10 * s, "mean_dist": s / 50, "elapsed_s": s * 0.2}
            for s in (1, 10, 20, 30, 40, 50, 60)]


def write_run(path, result: dict, log: list[dict] | None = None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "result.json").write_text(json.dumps(result, indent=2), "utf-8")
    if log is not None:
        (path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log), "utf-8")
    return path


@pytest.fixture
def result():
    return make_result()


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "run", make_result(), make_log())


def _with_cmc(result: dict) -> dict:
    result = copy.deepcopy(result)
    result["tables"]["cmc"] = {"ranks": list(range(1, 11)), "values": [80.0 + 2 * i for i in range(10)]}
    return result


# --- plots ---------------------------------------------------------------------------------------

def test_view_matrix_heatmaps_one_image_per_probe_set(result):
    fig = plots.view_matrix_heatmaps(result)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == len(SETS)
    assert len(fig.axes) == len(SETS) + 1  # plus the shared colourbar
    assert [ax.get_title() for ax in images] == list(SETS)
    for ax in images:
        assert len(ax.texts) == len(VIEWS) ** 2  # every cell annotated
        assert [t.get_text() for t in ax.get_xticklabels()] == VIEWS
    assert "SYNTHETIC DATA" in fig.get_suptitle()
    assert "gaitset [quick]" in fig.get_suptitle() and "casiab v1.0.0" in fig.get_suptitle()


def test_heatmap_title_not_synthetic_for_real_data():
    fig = plots.view_matrix_heatmaps(make_result(synthetic=False))
    assert "SYNTHETIC" not in fig.get_suptitle()


def test_heatmaps_reject_a_record_without_matrices(result):
    result["tables"] = {"settings": {}}
    with pytest.raises(ValueError, match="no view matrices"):
        plots.view_matrix_heatmaps(result)


def test_per_view_curves_one_line_per_probe_set(result):
    fig = plots.per_view_curves(result)
    assert len(fig.axes) == 1
    lines = fig.axes[0].get_lines()
    assert len(lines) == len(SETS)
    assert list(lines[0].get_ydata()) == [result["tables"]["NM"]["per_probe_view"][v] for v in VIEWS]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("NM (mean ")


def test_cmc_curve_needs_cmc_data(result):
    with pytest.raises(ValueError, match="no CMC curve"):
        plots.cmc_curve(result)
    fig = plots.cmc_curve(_with_cmc(result))
    assert len(fig.axes) == 1
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == list(range(1, 11)) and line.get_ydata()[-1] == 98.0


def test_cmc_curve_rejects_mismatched_lengths(result):
    result = _with_cmc(result)
    result["tables"]["cmc"]["values"] = [90.0]
    with pytest.raises(ValueError, match="1 values for 10 ranks"):
        plots.cmc_curve(result)


def test_training_curves_two_panels():
    fig = plots.training_curves(make_log())
    assert len(fig.axes) == 2
    loss_ax, lr_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["loss", "hard_loss"]
    assert len(lr_ax.get_lines()) == 1 and lr_ax.get_yscale() == "log"  # lr drops a decade
    with pytest.raises(ValueError, match="no training log records"):
        plots.training_curves([])


def test_accuracy_vs_cost_reads_formatted_leaderboard_cells():
    df = pd.DataFrame({"method": ["gaitset [quick]", "gaitgl", "paper row"],
                       "params": ["158,216", "3,100,000", ""],
                       "NM/rank1": ["90.79 ± 0.40", "95.10", "96.00"]})
    fig = plots.accuracy_vs_cost(df, x="params", y="NM/rank1", label="method")
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    (points,) = ax.collections
    assert points.get_offsets().tolist() == [[158216.0, 90.79], [3100000.0, 95.1]]  # row without params left out
    assert [t.get_text() for t in ax.texts] == ["gaitset [quick]", "gaitgl"]
    with pytest.raises(ValueError, match="no column"):
        plots.accuracy_vs_cost(df, x="gflops", y="NM/rank1", label="method")


def test_saving_png_and_svg(result, tmp_path):
    png, svg = tmp_path / "out" / "heat.png", tmp_path / "out" / "heat.svg"
    plots.view_matrix_heatmaps(result, out=[png, svg])
    assert png.read_bytes().startswith(PNG_MAGIC)
    text = svg.read_text("utf-8").lstrip()
    assert text.startswith("<?xml") or text.startswith("<svg")
    assert "<svg" in text
    plots.training_curves(make_log(), out=str(tmp_path / "train.png"))
    assert (tmp_path / "train.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="cannot save a figure"):
        plots.per_view_curves(result, out=tmp_path / "curves.jpg")


def test_figure_to_text_helpers(result):
    fig = plots.per_view_curves(result)
    svg = plots.figure_to_svg(fig)
    assert "<svg" in svg and "</svg>" in svg and "<metadata>" not in svg
    assert base64.b64decode(plots.figure_to_png_base64(fig)).startswith(PNG_MAGIC)


# --- report --------------------------------------------------------------------------------------

def _external_refs(page: str) -> list[str]:
    """http(s) URLs outside xmlns declarations (those are names, never fetched)."""
    return re.findall(r"https?://[^\s\"'<>]*", re.sub(r"""xmlns(?::\w+)?=["'][^"']*["']""", "", page))


def test_report_content(run_dir, result):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text("utf-8")
    for name, value in result["metrics"].items():
        assert name in page and f"{value:.2f}" in page
    assert 'class="per-view"' in page
    per_view_row = re.search(r"<tr><td class=\"key\">NM</td>(.*?)</tr>", page).group(1)
    assert [f"{result['tables']['NM']['per_probe_view'][v]:.2f}" for v in VIEWS] == \
        re.findall(r'<td class="">([\d.]+)</td>', per_view_row)
    assert "SYNTHETIC DATA &mdash; not comparable with published numbers" in page
    assert page.count("<svg") >= 3  # heatmaps, per-view curves, training curves
    assert "0123456789abcdef" in page and "158,216" in page and "fp32" in page and "optimizer.lr" in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)
    assert _external_refs(page) == []


def test_report_for_real_data_has_no_synthetic_banner(tmp_path):
    run = write_run(tmp_path / "real", make_result(synthetic=False), make_log())
    page = write_report(run, tmp_path / "elsewhere" / "r.html").read_text("utf-8")
    assert "SYNTHETIC" not in page and "banner" not in page.split("</style>", 1)[1]
    assert not (run / "report.html").exists()


def test_report_png_figures(run_dir):
    page = write_report(run_dir, image_format="png").read_text("utf-8")
    assert page.count('src="data:image/png;base64,') == 3 and "<svg" not in page


def test_report_includes_cmc_when_present(tmp_path, result):
    page = write_report(write_run(tmp_path / "cmc", _with_cmc(result))).read_text("utf-8")
    assert "Cumulative match characteristic" in page


def test_report_missing_pieces_become_notes(tmp_path, result):
    result["tables"] = {}
    run = write_run(tmp_path / "bare", result)  # no train log, no tables
    page = write_report(run).read_text("utf-8")
    assert "No train_log.jsonl in the run directory" in page
    assert "no per-view tables" in page and "<svg" not in page
    assert 'class="metrics"' in page  # metrics still there
    # A malformed table costs one figure (and its table), not the report.
    broken = make_result()
    broken["tables"]["NM"]["matrix"] = [[1.0, 2.0]]
    page = render_report(broken, make_log())
    assert "Figure omitted (ValueError" in page and page.count("<svg") == 2
    (run / "train_log.jsonl").write_text('{"step": 1, "lr": 0.1, "loss": 1.0}\nnot json\n', "utf-8")
    assert "1 unreadable line(s)" in write_report(run).read_text("utf-8")


def test_report_escapes_record_strings(tmp_path, result):
    result["method"] = "<script>alert(1)</script>"
    result["variant"] = 'a"b&$x$'
    page = write_report(write_run(tmp_path / "esc", result, make_log())).read_text("utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&quot;b&amp;$x$" in page


def test_report_without_result_json(tmp_path):
    with pytest.raises(GaitbenchError, match="no result.json"):
        write_report(tmp_path)


# --- headless browser ----------------------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL_TIMEOUT_S = 300


def _find_or_install_chromium() -> tuple[str | None, str]:
    """A Chromium binary, installing the Debian package when running as root with apt-get."""
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name), ""
    if not shutil.which("apt-get"):
        return None, "no Chromium on PATH and no apt-get to install it"
    if os.geteuid() != 0:
        return None, "no Chromium on PATH, and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    # The package lists may be stale or absent: update and retry once when the first install fails.
    for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "chromium"]):
        left = deadline - time.monotonic()
        if left <= 0:
            return None, f"installing Chromium took over {INSTALL_TIMEOUT_S} s"
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            return None, f"installing Chromium took over {INSTALL_TIMEOUT_S} s"
        if command[1] == "install" and done.returncode == 0:
            break
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name), ""
    return None, f"Chromium could not be installed with apt-get: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The report of a synthetic run rendered once by headless Chromium: (page, dom, screenshot, stderr)."""
    browser, why = _find_or_install_chromium()
    if browser is None:
        pytest.skip(f"headless browser test needs Chromium: {why}")
    root = tmp_path_factory.mktemp("browser")
    page = write_report(write_run(root / "run", make_result(), make_log()))
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            # Console messages (uncaught errors, blocked loads) go to stderr only with logging on.
            "--enable-logging=stderr", f"--user-data-dir={root / 'profile'}"]
    url = page.resolve().as_uri()
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = root / "shot.png"
    screenshot = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1200,2000", url],
                                capture_output=True, text=True, timeout=120)
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    return page.read_text("utf-8"), dom.stdout, shot, dom.stderr + screenshot.stderr


def test_browser_renders_the_tables(rendered):
    _, dom, _, _ = rendered
    assert "<table" in dom and 'class="metrics"' in dom and 'class="per-view"' in dom
    for name, value in make_result()["metrics"].items():
        assert name in dom and f"{value:.2f}" in dom
    assert ">NM<" in dom and ">CL<" in dom
    assert "SYNTHETIC DATA — not comparable with published numbers" in dom
    assert dom.count("<svg") >= 3


def test_browser_screenshot_is_nontrivial(rendered):
    _, _, shot, _ = rendered
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


def test_browser_reports_no_script_errors_or_blocked_loads(rendered):
    _, _, _, stderr = rendered
    assert "Uncaught" not in stderr
    # Any console message here would be a script error or a load the page's CSP refused.
    assert [line for line in stderr.splitlines() if ":CONSOLE" in line] == []
