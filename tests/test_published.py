"""The published reference numbers (gaitbench/resources/published_results.csv) are well formed and
internally consistent: a per-view table's printed mean must be the average of its views, so a
mistyped cell shows up here."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

CSV = Path(__file__).resolve().parents[1] / "gaitbench" / "resources" / "published_results.csv"
COLUMNS = ["method", "variant", "recipe", "protocol", "setting", "condition", "view", "metric", "value", "source",
           "source_kind", "note"]
KEY = ["method", "variant", "recipe", "protocol", "setting", "condition", "metric", "source"]
# Values are printed to 0.1 (or 0.01): the average of rounded cells and the rounded mean can differ by at
# most half a unit of each, i.e. 0.1.
TOL = 0.1 + 1e-9
EXCLUDE = "mean-not-average"

CASIAB_VIEWS = [f"{v:03d}" for v in range(0, 181, 18)]
OUMVLP_VIEWS = [f"{v:03d}" for v in list(range(0, 91, 15)) + list(range(180, 271, 15))]
GL = "Lin et al., GaitGL, TPAMI 2022"
GP = "Fan et al., GaitPart, CVPR 2020"
OG = "OpenGait model zoo (docs/1.model_zoo.md at commit 0efafd4)"


@pytest.fixture(scope="module")
def df():
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    frame["v"] = frame["value"].astype(float)
    return frame


def value(df, **where):
    rows = df
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    assert len(rows) == 1, (where, len(rows))
    return rows["v"].iloc[0]


def test_columns(df):
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS
    assert len(df) > 400


def test_every_row_has_a_source_and_kind(df):
    assert (df["source"].str.strip() != "").all()
    assert set(df["source_kind"]) == {"paper", "reproduction"}
    assert set(df["method"]) == {"gaitset", "gaitpart", "gaitgl", "gaitmask", "gaitbase", "deepgaitv2"}
    assert set(df.loc[df.source_kind == "reproduction", "source"]) == {OG}


def test_values_are_percentages(df):
    assert df["v"].between(0, 100).all()


def test_vocabulary(df):
    assert set(df["protocol"]) <= {"casiab", "oumvlp", "grew", "gait3d", "hid"}
    casiab = df[df.protocol == "casiab"]
    assert set(casiab["condition"]) <= {"NM", "BG", "CL", "mean"}
    assert set(casiab["view"]) <= set(CASIAB_VIEWS) | {"mean"}
    assert set(df.loc[df.protocol == "oumvlp", "view"]) <= set(OUMVLP_VIEWS) | {"mean"}
    assert set(df.loc[df.protocol.isin(["casiab", "oumvlp"]), "metric"]) <= {"rank1", "rank1_valid"}
    assert set(df.loc[df.protocol == "grew", "metric"]) == {"rank1", "rank5", "rank10", "rank20"}
    assert set(df.loc[df.protocol == "gait3d", "metric"]) == {"rank1", "rank5", "mAP", "mINP"}
    assert (df.loc[~df.protocol.isin(["casiab"]), "condition"] == "").all()


def test_no_duplicate_entries(df):
    assert not df.duplicated(KEY + ["view"]).any()


def per_view_groups(df):
    for key, group in df.groupby(KEY):
        views = group[~group["view"].isin(["", "mean"])]
        mean = group[group["view"] == "mean"]
        if len(views):
            yield key, group, views, mean


def test_per_view_tables_are_complete(df):
    for key, group, views, mean in per_view_groups(df):
        expected = CASIAB_VIEWS if key[3] == "casiab" else OUMVLP_VIEWS
        assert sorted(views["view"]) == expected, key
        assert len(mean) == 1, key


def test_mean_is_the_average_of_the_views(df):
    checked = 0
    for key, group, views, mean in per_view_groups(df):
        if group["note"].str.contains(EXCLUDE).any():
            continue
        assert abs(views["v"].mean() - mean["v"].iloc[0]) <= TOL, (key, views["v"].mean(), mean["v"].iloc[0])
        checked += 1
    assert checked >= 25


def test_the_excluded_groups_really_are_inconsistent(df):
    """Each group flagged mean-not-average is flagged for a reason (else the flag hides nothing)."""
    flagged = 0
    for key, group, views, mean in per_view_groups(df):
        if group["note"].str.contains(EXCLUDE).any():
            assert abs(views["v"].mean() - mean["v"].iloc[0]) > TOL, key
            flagged += 1
    assert flagged == 1  # GaitPart's own Table 3, BG (its 90-degree cell)


def test_cross_condition_mean_is_the_average_of_nm_bg_cl(df):
    casiab = df[(df.protocol == "casiab") & (df.view == "mean")]
    checked = 0
    for key, group in casiab.groupby(["method", "variant", "setting", "metric", "source"]):
        overall = group[group.condition == "mean"]
        parts = group[group.condition.isin(["NM", "BG", "CL"])]
        if len(overall) != 1 or len(parts) != 3:
            continue
        if overall["note"].str.contains(EXCLUDE).any():
            assert abs(parts["v"].mean() - overall["v"].iloc[0]) > TOL, key
            continue
        assert abs(parts["v"].mean() - overall["v"].iloc[0]) <= TOL, key
        checked += 1
    assert checked >= 14


def test_numbers_quoted_by_two_papers_agree(df):
    """GaitGL TPAMI Table 1 quotes GaitSet and GaitPart on CASIA-B; GaitPart's Table 3 prints the same rows.
    They agree cell by cell except GaitPart BG 90 degrees (94.9 in GaitPart, 84.9 in GaitGL)."""
    casiab = df[(df.protocol == "casiab") & (df.variant == "casiab") & (df.view != "mean")]
    for method in ("gaitset", "gaitpart"):
        gl = casiab[(casiab.method == method) & (casiab.source == f"{GL}, Table 1")].set_index(["condition", "view"])
        gp = casiab[(casiab.method == method) & (casiab.source == f"{GP}, Table 3")].set_index(["condition", "view"])
        assert len(gl) == len(gp) == 33
        differ = sorted(ix for ix in gl.index if gl.at[ix, "v"] != gp.at[ix, "v"])
        assert differ == ([("BG", "090")] if method == "gaitpart" else []), (method, differ)
    oumvlp = df[(df.protocol == "oumvlp") & (df.method == "gaitpart") & (df.metric == "rank1")]
    gl = oumvlp[oumvlp.source == f"{GL}, Table 2"].set_index("view")["v"]
    gp = oumvlp[oumvlp.source == f"{GP}, Table 4"].set_index("view")["v"]
    assert len(gl) == 15 and gl.sort_index().equals(gp.sort_index())


@pytest.mark.parametrize(("where", "expected"), [
    # GaitGL TPAMI Table 1 (CASIA-B LT)
    (dict(method="gaitset", variant="casiab", condition="NM", view="mean", source=f"{GL}, Table 1"), 95.0),
    (dict(method="gaitset", variant="casiab", condition="CL", view="180", source=f"{GL}, Table 1"), 50.0),
    (dict(method="gaitpart", variant="casiab", condition="BG", view="090", source=f"{GL}, Table 1"), 84.9),
    # the TPAMI network's numbers belong to the TPAMI variant and recipe ...
    (dict(method="gaitgl", variant="tpami", recipe="tpami", condition="CL", view="mean", source=f"{GL}, Table 1"),
     87.3),
    # ... the ICCV ("preliminary") numbers to the OpenGait network and its recipe
    (dict(method="gaitgl", variant="casiab", recipe="casiab", condition="BG", view="mean",
          source=f"{GL}, Table 1"), 94.5),
    (dict(method="gaitgl", variant="tpami", protocol="casiab", condition="mean", source=f"{GL}, Abstract"), 93.6),
    # GaitGL TPAMI Table 2 (OU-MVLP), both invalid-probe conventions
    (dict(method="gaitgl", variant="tpami-oumvlp", recipe="tpami-oumvlp", view="mean", metric="rank1",
          source=f"{GL}, Table 2"), 92.0),
    (dict(method="gaitgl", variant="tpami-oumvlp", view="mean", metric="rank1_valid", source=f"{GL}, Table 2"), 98.7),
    (dict(method="gaitset", view="000", metric="rank1", source=f"{GL}, Table 2"), 79.3),
    (dict(method="gaitgl", variant="oumvlp", recipe="oumvlp", view="mean", metric="rank1",
          source=f"{GL}, Table 2"), 89.7),
    # GREW and Gait3D
    (dict(method="gaitgl", variant="tpami-grew", recipe="tpami-grew", metric="rank1", protocol="grew"), 68.0),
    (dict(method="gaitset", metric="rank20", protocol="grew"), 76.8),
    (dict(method="gaitpart", metric="mAP", protocol="gait3d"), 23.34),
    (dict(method="gaitgl", variant="tpami-gait3d", recipe="tpami-gait3d", metric="mINP", protocol="gait3d"), 36.71),
    # GaitPart's own paper
    (dict(method="gaitpart", variant="casiab", condition="BG", view="mean", source=f"{GP}, Table 3"), 91.5),
    (dict(method="gaitset", view="000", metric="rank1", source=f"{GP}, Table 4"), 79.5),
    (dict(method="gaitpart", view="mean", metric="rank1_valid", source=f"{GP}, Sec. 4.2 (text)"), 95.1),
    (dict(method="gaitpart", view="mean", metric="rank1_valid", source=f"{GL}, Table 2"), 95.1),
    # HID
    (dict(method="gaitgl", variant="hid2020", recipe="hid2020", protocol="hid"), 63.0),
    # OpenGait reproduction
    (dict(method="gaitgl", condition="CL", source=OG), 83.8),
    (dict(method="gaitpart", protocol="oumvlp", source=OG), 88.6),
])
def test_spot_checks(df, where, expected):
    assert value(df, **where) == expected


def test_gaitmask_hid2021_pipeline(df):
    rows = df[(df.method == "gaitmask") & (df.protocol == "hid")]
    assert list(rows["variant"]) == ["hid2021-pipeline (gaitgl)", "hid2021-pipeline (gaitgl+rerank)",
                                     "hid2021-pipeline (gaitgl+rerank+qe)",
                                     "hid2021-pipeline (gaitgl+gaitmask+rerank+qe)"]
    assert list(rows["v"]) == [64.1, 78.4, 80.7, 83.7]
    assert (rows["note"] != "").all()


def test_oumvlp_conventions_are_labelled(df):
    """Numbers that drop probes without gallery are rank1_valid, and always higher than the rank1 ones."""
    oumvlp = df[(df.protocol == "oumvlp") & (df.view == "mean") & (df.source == f"{GL}, Table 2")]
    for (method, variant), group in oumvlp.groupby(["method", "variant"]):
        by_metric = group.set_index("metric")["v"]
        assert by_metric["rank1_valid"] > by_metric["rank1"], (method, variant)
    assert df.loc[df.metric == "rank1_valid", "note"].str.contains("exclu|discard").all()


def test_variants_and_recipes_are_gaitbench_s_own(df):
    """Every published number names the network (variant) and recipe gaitbench runs it with, so
    that a leaderboard compares a run only with the row of its own network and recipe."""
    from gaitbench.plugins import get_plugins

    methods = get_plugins().methods()
    rows = df[~df.variant.str.startswith(("ablation", "hid2021-pipeline"))]
    for (method, variant, recipe), _ in rows.groupby(["method", "variant", "recipe"]):
        m = methods.get(method)
        assert variant in m.variants, (method, variant)
        assert recipe in m.recipe_names(), (method, recipe)
    # the TPAMI networks' numbers are never attributed to the OpenGait network, and the reverse
    tpami = df[(df.method == "gaitgl") & (df.source_kind == "paper") & df.note.str.contains("preliminary")]
    assert len(tpami) and not tpami.variant.str.startswith("tpami").any()
    ours = df[(df.method == "gaitgl") & df.source.str.startswith(GL) & ~df.note.str.contains("preliminary")
              & ~df.variant.str.startswith("ablation")]
    assert len(ours) and ours.variant.str.startswith("tpami").all() and (ours.variant == ours.recipe).all()
