"""The leaderboard page (``gaitbench leaderboard --format html``) as headless Chromium shows it:
no console errors, no request but the page itself, sorting by a click on a column header, the
synthetic banner, filters, links to run reports that exist; a screenshot is kept as an artefact
(under pytest's tmp path, and copied to ``$GAITBENCH_ARTEFACTS`` when set)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

from .conftest import run_cli
from .test_report import make_result, write_run

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    found = next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)
    return found or shutil.which("chromium") or shutil.which("chromium-browser")


def _run(seed: int, shift: float, synthetic: bool = True, **changes) -> dict:
    r = make_result(synthetic=synthetic)
    r["seed"] = seed
    r["metrics"] = {k: round(v + shift, 4) for k, v in r["metrics"].items()}
    r.update(copy.deepcopy(changes))
    if not synthetic:
        r["dataset"]["fingerprint"] = "fedcba9876543210"
    return r


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    """Four runs (three synthetic: two methods, one of them without a report; one real) and the
    page ``gaitbench leaderboard --published --format html --out`` writes for them."""
    root = tmp_path_factory.mktemp("board")
    runs = root / "runs"
    write_run(runs / "set-a", _run(0, 0.0))
    write_run(runs / "set b", _run(1, -3.0, method="gaitpart"))  # a space in the folder name: links are quoted
    write_run(runs / "set-c", _run(2, 4.0, method="gaitgl"))
    write_run(runs / "real", _run(0, 0.0, synthetic=False))
    (root / "site").mkdir()
    proc = run_cli("leaderboard", str(runs / "set-a"), str(runs / "set b"), str(runs / "real"), "--reports",
                   "--format", "html", "--published", "--out", str(root / "site" / "board.html"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("wrote ") == 3 and (runs / "set b" / "report.html").is_file()
    # set-c is added after the reports were written: its row says it has none
    proc = run_cli("leaderboard", str(runs), "--format", "html", "--published", "--out", str(root / "site" / "board.html"))
    assert proc.returncode == 0, proc.stderr
    assert not (runs / "set-c" / "report.html").exists()
    return root / "site" / "board.html"


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("the leaderboard page test needs Chromium (/usr/bin/chromium): apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, path: Path, javascript: bool = True):
    """The page in a fresh context whose every request is recorded; any but the page itself is refused."""
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1400, "height": 1000})
    requests, problems = [], []
    url = path.resolve().as_uri()

    def route(r):
        requests.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(url)
    page.wait_for_load_state("load")
    return context, page, requests, problems


def _column(page, table: int, header: str) -> list[str]:
    return page.evaluate("""([t, header]) => {
        const table = document.querySelectorAll('table.leaderboard')[t];
        const col = [...table.tHead.rows[0].cells].findIndex(c => c.textContent === header);
        return [...table.tBodies].map(b => b.rows[0].cells[col].textContent);
    }""", [table, header])


def test_page_loads_nothing_and_logs_no_errors(browser, page_file, tmp_path):
    context, page, requests, problems = _open(browser, page_file)
    try:
        assert requests == [page_file.resolve().as_uri()]
        assert problems == []
        assert page.title().startswith("gaitbench leaderboard")
        shot = tmp_path / "leaderboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
        if os.environ.get("GAITBENCH_ARTEFACTS"):
            out = Path(os.environ["GAITBENCH_ARTEFACTS"])
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, out / "leaderboard.png")
    finally:
        context.close()


def test_clicking_a_header_sorts_the_rows(browser, page_file):
    context, page, _, problems = _open(browser, page_file)
    try:
        before = _column(page, 0, "method")
        assert before == ["gaitgl [quick]", "gaitset [quick]", "gaitpart [quick]"]  # best NM first
        header = page.locator("table.leaderboard").first.locator("th", has_text="CL/rank1")
        header.click()
        values = [float(v.split(" ")[0]) for v in _column(page, 0, "CL/rank1")]
        assert values == sorted(values, reverse=True) and header.get_attribute("aria-sort") == "descending"
        page.locator("table.leaderboard").first.locator("th", has_text="method").click()
        assert _column(page, 0, "method") == sorted(before, reverse=True)
        page.locator("table.leaderboard").first.locator("th", has_text="method").click()
        after = _column(page, 0, "method")
        assert after == sorted(before)
        # each run's per-view fold moves with its row
        table = page.locator("table.leaderboard").first
        first = table.locator("tbody").first
        assert first.locator(":scope > tr").count() == 2 and "per probe view" in first.locator("summary").inner_text()
        assert problems == []
    finally:
        context.close()


def test_synthetic_banner_and_sections_never_mixed(browser, page_file):
    context, page, _, _ = _open(browser, page_file)
    try:
        sections = page.locator("section.board")
        kinds = [sections.nth(i).get_attribute("data-data") for i in range(sections.count())]
        assert kinds == ["synthetic", "real"]
        synthetic = sections.nth(0)
        assert synthetic.locator(".synthetic-banner").is_visible()
        assert "SYNTHETIC DATA" in synthetic.locator(".synthetic-banner").inner_text()
        assert sections.nth(1).locator(".synthetic-banner").count() == 0
        # published rows only beside the real run, never in the synthetic table
        assert synthetic.locator("tr.paper").count() == 0 and sections.nth(1).locator("tr.paper").count() > 3
        cells = synthetic.locator("td.na")
        assert cells.count() == 3 and all(t == "n/a: synthetic data" for t in cells.all_inner_texts())
        # the filter by kind of data hides the other sections
        page.select_option("#filters select[name=data]", "real")
        assert not synthetic.is_visible() and sections.nth(1).is_visible()
        page.select_option("#filters select[name=data]", "")
        assert synthetic.is_visible()
    finally:
        context.close()


def test_links_to_run_reports_resolve(browser, page_file):
    context, page, _, _ = _open(browser, page_file)
    try:
        hrefs = page.eval_on_selector_all("a.report-link", "links => links.map(a => a.getAttribute('href'))")
        assert len(hrefs) == 3  # set-a, "set b" and real; set-c has none
        for href in hrefs:
            assert not href.startswith(("/", "file:", "http")), href  # relative: the folder can move
            target = (page_file.parent / unquote(href)).resolve()
            assert target.is_file() and target.name == "report.html", href
        assert "seed 2: no report" in page.locator("section.board").first.inner_text()
    finally:
        context.close()


def test_page_works_without_its_script(browser, page_file):
    context, page, requests, _ = _open(browser, page_file, javascript=False)
    try:
        assert requests == [page_file.resolve().as_uri()]
        assert page.locator("table.leaderboard tbody.run").count() == 4
        assert not page.locator("#filters").is_visible()  # shown only when the script can run them
        assert page.locator(".synthetic-banner").first.is_visible()
    finally:
        context.close()
