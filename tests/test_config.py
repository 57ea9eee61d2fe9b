"""Recipes and protocol files: strict keys, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import gaitbench
from gaitbench.errors import ConfigError, DataError
from gaitbench.plugins import get_plugins
from gaitbench import get_protocol
from gaitbench.protocols import load_partition, load_protocol
from gaitbench.training.recipe import load_recipe, resolve_recipe

PROTOCOLS = Path(gaitbench.__file__).parents[1] / "protocols"


def gaitset():
    return get_plugins().method("gaitset")


def test_paper_recipe_values():
    r = resolve_recipe(gaitset(), "casiab")
    assert (r.sampler.P, r.sampler.K, r.sampler.frames, r.sampler.order) == (8, 16, 30, "unordered")
    assert (r.optimizer.name, r.optimizer.lr, r.optimizer.weight_decay) == ("sgd", 0.1, 5e-4)
    assert r.schedule.milestones == [10000, 20000, 30000] and r.train.iterations == 40000
    assert r.loss.triplet.margin == 0.2 and r.variant == "casiab"


def test_set_overrides_any_field():
    r = resolve_recipe(gaitset(), "casiab", ["sampler.P=4", "optimizer.lr=1e-3", "schedule.milestones=[5, 9]",
                                              "optimizer.name=adam"])
    assert (r.sampler.P, r.optimizer.lr, r.schedule.milestones, r.optimizer.name) == (4, 1e-3, [5, 9], "adam")


@pytest.mark.parametrize("override,message", [
    ("sampler.P_=4", r"unknown key 'P_'.*did you mean 'P'\?"),
    ("optimiser.lr=1", r"unknown key 'optimiser'.*did you mean 'optimizer'\?"),
    ("sampler.P=four", r"sampler.P: expected an integer, got 'four'"),
    ("sampler.order=random", r"expected 'unordered' or 'ordered'"),
    ("sampler", r"expected key=value"),
    ("eval.max_frames_per_batch=-1", r"max_frames_per_batch must be >= 0 \(0 = the device's default\)"),
])
def test_bad_overrides_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_recipe(gaitset(), "casiab", [override])


def test_misspelt_key_in_recipe_file(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('name = "r"\n[sampler]\nframs = 30\n')
    with pytest.raises(ConfigError, match=r"r\.toml.*unknown key 'frams'; did you mean 'frames'\?"):
        load_recipe(p)


def test_unknown_recipe_name():
    with pytest.raises(ConfigError, match=r"unknown recipe of method 'gaitset' 'qick'; did you mean 'quick'\?"):
        resolve_recipe(gaitset(), "qick")


def test_casiab_protocol_file():
    proto = load_protocol(PROTOCOLS / "casiab.toml")
    assert proto.name == "casiab" and proto.version
    assert proto.split.ids("train") == {f"{i:03d}" for i in range(1, 75)}
    assert proto.split.ids("test") == {f"{i:03d}" for i in range(75, 125)}
    ev = proto.evaluation
    assert len(ev.views) == 11 and ev.gallery_types == ["nm-01", "nm-02", "nm-03", "nm-04"]
    assert ev.probe_sets == {"NM": ["nm-05", "nm-06"], "BG": ["bg-01", "bg-02"], "CL": ["cl-01", "cl-02"]}
    assert ev.exclude_identical_view and ev.missing_gallery == "miss" and ev.round_cells == 2


def test_protocol_file_typos_are_errors(tmp_path):
    text = (PROTOCOLS / "casiab.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("gallery_types", "galery_types"))
    with pytest.raises(ConfigError, match=r"unknown key 'galery_types'; did you mean 'gallery_types'\?"):
        load_protocol(bad)
    bad.write_text(text.replace('kind = "view_matrix"', 'kind = "viewmatrix"'))
    with pytest.raises(ConfigError, match="kind 'viewmatrix' is not one of"):
        load_protocol(bad)


def test_user_protocol_by_path_and_unknown_name(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text((PROTOCOLS / "casiab.toml").read_text().replace('name = "casiab"', 'name = "mine"'))
    assert get_protocol(str(p)).name == "mine"
    with pytest.raises(ConfigError, match=r"did you mean 'casiab'\?"):
        get_protocol("casia-b")


def test_partition_file(tmp_path):
    p = tmp_path / "p.json"
    p.write_text('{"TRAIN_SET": ["001", "002"], "TEST_SET": ["003"]}')
    split = load_partition(p)
    assert split.ids("train") == {"001", "002"} and split.ids("test") == {"003"}
    p.write_text('{"TRAIN": []}')
    with pytest.raises(DataError, match="TRAIN_SET and TEST_SET"):
        load_partition(p)
