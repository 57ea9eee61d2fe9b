"""Leaderboards from run records: grouping, seeds, formats, published rows, per-view, compare."""

from __future__ import annotations

import copy
import re
import io
import json

import pandas as pd
import pytest

from gaitbench.errors import GaitbenchError
from gaitbench.results.leaderboard import build_tables, compare, load_published, per_view_table, published_rows, render
from gaitbench.results.record import load_records

from .conftest import run_cli


@pytest.fixture(scope="module")
def base_record(small_synth, tmp_path_factory):
    from gaitbench.run import RunSettings, execute

    store, partition = small_synth
    out = tmp_path_factory.mktemp("lb") / "run"
    return execute(RunSettings(method="gaitset", protocol="casiab", data_root=str(store.root), partition=str(partition),
                               recipe="quick", iterations=1, out=str(out), progress=False,
                               overrides=["sampler.P=4", "sampler.K=4", "sampler.frames=6"]),
                   echo=lambda s: None).to_json()


def variant(record, seed=0, shift=0.0, **changes):
    r = copy.deepcopy(record)
    r["seed"] = seed
    r["metrics"] = {k: v + shift for k, v in r["metrics"].items()}
    for key, value in changes.items():
        if key == "fingerprint":
            r["dataset"]["fingerprint"] = value
        else:
            r[key] = value
    return r


def write(tmp_path, records):
    for i, r in enumerate(records):
        d = tmp_path / f"runs/r{i}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r))
    return tmp_path / "runs"


def test_seeds_share_a_row_with_mean_and_std(base_record):
    a = variant(base_record, seed=0)
    b = variant(base_record, seed=1, shift=10.0)
    (table,) = build_tables([a, b])
    row = table.frame.iloc[0]
    nm = base_record["metrics"]["NM/rank1"]
    assert row["NM/rank1"] == f"{nm + 5:.2f} ± {7.0710678:.2f}" and row["n"] == 2 and row["seeds"] == "0,1"
    assert row["data"] == "synthetic" and "SYNTHETIC" in table.title
    assert row["split"] == "partition partition.json" and row["precision"] == "fp32" and row["stages"] == "-"
    assert any("SYNTHETIC" in n for n in table.notes)


def test_incomparable_runs_go_to_separate_tables(base_record):
    other = variant(base_record, fingerprint="ffffffffffffffff")
    newer = variant(base_record, protocol_version="2.0.0")
    tables = build_tables([base_record, other, newer])
    assert len(tables) == 3
    assert {t.key["fingerprint"] for t in tables} == {base_record["dataset"]["fingerprint"], "ffffffffffffffff"}
    assert all(any("separate tables" in n for n in t.notes) for t in tables)


def test_post_processed_rows_are_marked(base_record):
    rr = variant(base_record, shift=3.0, stages=[{"name": "rerank", "params": {"k1": 20}}])
    (table,) = build_tables([base_record, rr])
    methods = list(table.frame["method"])
    assert "gaitset [quick] +rerank(k1=20)" in methods and "gaitset [quick]" in methods
    assert any("post-processing" in n for n in table.notes)


def test_formats(base_record, tmp_path):
    records = [variant(base_record, seed=s, shift=s) for s in (0, 1)] + [variant(base_record, fingerprint="f" * 16)]
    tables = build_tables(records)
    md = render(tables, "markdown")
    header = next(l for l in md.splitlines() if l.startswith("| method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:7] == ["method", "recipe", "source", "n", "NM/rank1", "BG/rank1", "CL/rank1"]
    latex = render(tables, "latex")
    assert latex.count("\\toprule") == latex.count("\\midrule") == latex.count("\\bottomrule") == 2
    assert latex.count("{") == latex.count("}") and "$\\pm$" in latex and "±" not in latex
    body = latex.split("\\midrule")[1].split("\\bottomrule")[0].strip().splitlines()
    assert all(line.count("&") == len(cols) - 1 for line in body)
    csv = pd.read_csv(io.StringIO(render(tables, "csv")))
    single = csv[csv["n"] == 1].iloc[0]
    assert float(single["NM/rank1"]) == pytest.approx(base_record["metrics"]["NM/rank1"], abs=0.005)
    assert set(csv["table"]) == {t.title for t in tables}
    html = render(tables, "html")
    assert html.startswith("<!DOCTYPE html>") and html.count('<table class="leaderboard">') == 2
    assert html.count('class="banner synthetic-banner"') == 2
    data = json.loads(render(tables, "json"))
    assert len(data) == 2 and data[0]["rows"][0]["method"] == "gaitset [quick]"
    with pytest.raises(GaitbenchError, match="did you mean 'latex'"):
        render(tables, "latx")


def test_per_view_table_and_compare(base_record):
    frame = per_view_table([base_record])
    assert list(frame["probe"]) == ["NM", "BG", "CL"]
    assert list(frame.columns[3:]) == [f"{v:03d}" for v in range(0, 181, 18)] + ["mean"]
    assert frame.iloc[0]["mean"] == base_record["metrics"]["NM/rank1"]
    better = variant(base_record, shift=2.0)
    for t in better["tables"].values():
        if isinstance(t, dict) and "per_probe_view" in t:
            t["per_probe_view"] = {v: x + 1.0 for v, x in t["per_probe_view"].items()}
    metrics, per_view = compare(base_record, better)
    assert list(metrics["B - A"]) == pytest.approx([2.0, 2.0, 2.0])
    assert (per_view.drop(columns="probe").to_numpy() == 1.0).all()


def test_cli_leaderboard_and_errors(base_record, tmp_path):
    root = write(tmp_path, [variant(base_record, seed=0), variant(base_record, seed=1, shift=1.0)])
    proc = run_cli("leaderboard", str(root), "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert "| gaitset [quick]" in proc.stdout and "± 0.71" in proc.stdout
    out = tmp_path / "lb.tex"
    assert run_cli("leaderboard", str(root), "--format", "latex", "--out", str(out)).returncode == 0
    assert out.read_text().startswith("\\begin{table}")
    proc = run_cli("compare", str(root / "r0"), str(root / "r1"))
    assert proc.returncode == 0 and "+1.00" in proc.stdout
    proc = run_cli("leaderboard", str(tmp_path / "nope"))
    assert proc.returncode != 0 and "no such run directory" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GaitbenchError, match="no result.json"):
        load_records([empty])
    (empty / "result.json").write_text('{"not": "a record"}')
    with pytest.raises(GaitbenchError, match="not a gaitbench run record"):
        load_records([empty])


def _real(record, method, variant, recipe, **changes):
    """A run on the real dataset, on the papers' split, trained for its recipe's whole schedule."""
    r = variant_of(record, method=method, variant=variant, recipe=recipe, **changes)
    r["dataset"] = {**r["dataset"], "synthetic": False, "fingerprint": "real"}
    r["split"] = {"train": ["001-074"], "test": ["075-124"], "partition": None}
    r["iterations"] = r["config"]["train"]["iterations"]
    return r


def variant_of(record, **changes):
    return variant(record, **changes)


def test_vs_paper_compares_a_run_with_its_own_network_and_recipe(base_record):
    published = load_published()
    records = [_real(base_record, "gaitset", "casiab", "casiab"), _real(base_record, "gaitgl", "tpami", "tpami"),
               _real(base_record, "gaitgl", "casiab", "casiab"), _real(base_record, "gaitgl", "quick", "quick")]
    (table,) = build_tables(records, published=published)
    runs = table.frame[table.frame["source"] == "run"].set_index("method")
    nm = base_record["metrics"]["NM/rank1"]
    assert runs.loc["gaitset [casiab]", "vs paper"].startswith(f"NM {nm - 95.0:+.1f}")
    assert runs.loc["gaitgl [tpami]", "vs paper"].startswith(f"NM {nm - 98.0:+.1f}")  # TPAMI Table 1, Ours
    assert runs.loc["gaitgl [casiab]", "vs paper"].startswith(f"NM {nm - 97.4:+.1f}")  # the ICCV network
    assert runs.loc["gaitgl [quick]", "vs paper"] == "n/a: reduced 'quick' network, not the paper's"
    papers = table.frame[table.frame["source"] == "paper"]
    assert {"gaitgl [tpami]", "gaitgl [casiab]"} <= set(papers["method"])
    assert table.data == "real"


@pytest.mark.parametrize("change,reason", [
    ({"stages": [{"name": "rerank", "params": {"k1": 20}}]}, "n/a: post-processed"),
    ({"split": {"train": ["001-050"], "test": ["051-124"], "partition": None}}, "n/a: split train 001-050"),
    ({"iterations": 600}, "n/a: trained 600 of the recipe's"),
    ({"recipe": "tpami"}, "n/a: no paper row for gaitset [casiab] with recipe tpami"),
])
def test_vs_paper_says_why_it_is_empty(base_record, change, reason):
    run = _real(base_record, "gaitset", "casiab", "casiab")
    config = run["config"]
    run["config"] = {**config, "train": {**config["train"], "iterations": 80_000}}
    run["iterations"] = 80_000
    other = copy.deepcopy(run)
    other.update(copy.deepcopy(change))
    other["seed"] = 7
    tables = build_tables([run, other], published=load_published())
    rows = [r for t in tables for r in t.rows if r["source"] == "run"]
    why = {r["seeds"]: r["vs paper"] for r in rows}
    assert why["7"].startswith(reason) and why["0"].startswith("NM ")


def test_published_rows_with_sources_beside_runs(base_record):
    published = load_published()
    synthetic, papers_only = build_tables([base_record], published=published)
    # papers' numbers are on the real dataset: never in the synthetic table, but in one of their own
    assert synthetic.data == "synthetic" and set(synthetic.frame["source"]) == {"run"}
    assert synthetic.frame.iloc[0]["vs paper"] == "n/a: synthetic data"
    assert any("'vs paper' is empty for runs on synthetic data" in n for n in synthetic.notes)
    assert papers_only.data == "published" and papers_only.key["protocol"] == "casiab"
    frame = papers_only.frame
    papers = frame[frame["source"] == "paper"]
    assert {"gaitset [casiab]", "gaitpart [casiab]", "gaitgl [casiab]", "gaitgl [tpami]"} <= set(papers["method"])
    assert (frame["reference"].str.len() > 0).all()
    gaitset = papers[papers["method"] == "gaitset [casiab]"].iloc[0]
    assert (gaitset["NM/rank1"], gaitset["BG/rank1"], gaitset["CL/rank1"]) == ("95.00", "87.20", "70.40")
    assert "Table 1" in gaitset["reference"] and "; " in gaitset["reference"]  # two papers print it
    md = render([synthetic, papers_only], "markdown")
    assert "n/a: synthetic data" in md and "published numbers (real datasets)" in md
    per_view = per_view_table([base_record], published)
    assert set(per_view["source"]) == {"run", "paper"}
    assert not per_view[per_view["source"] == "paper"]["reference"].eq("").any()


# A publication: authors, work, venue and year, and where in it (table, section, abstract); or
# OpenGait's file at the commit gaitbench cites. Nothing else (no notes outside the repository).
PUBLICATION = re.compile(r"[A-Z][a-z]+ et al\., [^,;]+, (?:(?:TPAMI|CVPR|ICCV|ECCV|AAAI) \d{4}|HID \d{4} report), "
                         r"(?:Table \d+|Sec\. [^,;]+|Abstract)")
OPENGAIT_FILE = re.compile(r"OpenGait model zoo \(docs/1\.model_zoo\.md at commit 0efafd4\)")


def test_every_reference_cell_names_a_publication_or_an_opengait_file():
    published = load_published()
    cells = []
    for proto in sorted(set(published["protocol"])):
        cells += [r["reference"] for r in published_rows(published, proto, None)]
    cells += list(published["source"].unique())  # the per-view tables cite the CSV's sources as they are
    assert len(cells) > 20
    for cell in cells:
        for source in cell.split("; "):
            assert PUBLICATION.fullmatch(source) or OPENGAIT_FILE.fullmatch(source), source
    assert any(OPENGAIT_FILE.fullmatch(c) for c in cells) and any(PUBLICATION.fullmatch(c) for c in cells)
    for bad in ("via opengait-notes.md 4.1", "(gaitgl-tpami.md)", "Lin et al., GaitGL, TPAMI 2022"):
        assert not (PUBLICATION.fullmatch(bad) or OPENGAIT_FILE.fullmatch(bad)), bad


def test_markdown_and_latex_mark_the_best_run_per_column(base_record):
    low = variant(base_record, seed=0)
    high = variant(base_record, seed=1, shift=5.0, recipe="other")
    (table,) = build_tables([low, high])
    nm = f"{base_record['metrics']['NM/rank1'] + 5:.2f}"
    md = render([table], "markdown")
    assert f"**{nm}**" in md and md.count("**") == 2 * 3 + 2  # three metric columns, and the title
    latex = render([table], "latex")
    assert f"\\textbf{{{nm}}}" in latex and latex.count("\\textbf") == 3
    # an error rate is best when lowest
    for r in (low, high):
        r["metrics"]["NM/EER"] = 10.0 if r is low else 20.0
    (table,) = build_tables([low, high])
    assert table.best()["NM/EER"] == {list(table.frame["seeds"]).index("0")}


def with_intervals(record, half_width):
    """``record`` with each probe set's rank-1 interval set to +-``half_width`` around its metric."""
    r = copy.deepcopy(record)
    for name in ("NM", "BG", "CL"):
        value = r["metrics"][f"{name}/rank1"]
        r["tables"][name]["rank1_interval"] = {"estimate": value, "low": value - half_width,
                                               "high": value + half_width, "half_width": half_width,
                                               "num_probes": 1100, "level": 0.95, "replicates": 1000, "seed": 0,
                                               "method": "percentile bootstrap over probes"}
    return r


def test_differences_smaller_than_the_interval_are_marked(base_record):
    """Rows whose rank-1 lies within the interval of the column's best are marked: the test set
    cannot tell them apart; a gap wider than the interval is not marked."""
    base = variant(base_record, method="gaitset")
    best = with_intervals(variant(base, shift=0.0), 1.5)
    close = with_intervals(variant(base, shift=-1.0, method="gaitpart"), 1.5)
    far = with_intervals(variant(base, shift=-4.0, method="gaitgl"), 1.5)
    (table,) = build_tables([far, close, best])
    frame = table.frame.set_index("method")
    labels = {m: next(i for i in frame.index if i.startswith(m)) for m in ("gaitset", "gaitpart", "gaitgl")}
    assert frame.loc[labels["gaitpart"], "within CI of best"] == "NM/rank1, BG/rank1, CL/rank1"
    assert frame.loc[labels["gaitgl"], "within CI of best"] == ""
    assert frame.loc[labels["gaitset"], "within CI of best"] == ""
    assert frame.loc[labels["gaitset"], "rank1 95% CI"] == "±1.50 / ±1.50 / ±1.50"
    assert frame.loc[labels["gaitset"], "probes"] == "1,100"
    assert any("cannot tell them apart" in n for n in table.notes)
    # a wider interval on the lower row is enough to tie it
    wide = with_intervals(variant(base, shift=-4.0, method="gaitgl"), 4.5)
    (table,) = build_tables([wide, best])
    assert "NM/rank1" in table.frame.set_index("method").loc[labels["gaitgl"], "within CI of best"]


def test_records_without_intervals_get_no_interval_columns(base_record):
    old = copy.deepcopy(base_record)
    for name in ("NM", "BG", "CL"):
        old["tables"][name].pop("rank1_interval", None)
    (table,) = build_tables([old, variant(old, method="gaitgl", shift=-1.0)])
    assert "rank1 95% CI" not in table.frame.columns and "within CI of best" not in table.frame.columns
