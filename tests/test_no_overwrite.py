"""Nothing a user owns is deleted or overwritten; a refused command changes nothing on disk
(issue 23, items 1, 2, 3, 5)."""

from __future__ import annotations

import json
import shutil

import pytest

from .fault_tools import cli, one_clear_line, tree_hashes
from .test_faults_disk import _run_args, data, finished_run  # noqa: F401  (fixtures)

SYNTH = ("data", "synth", "--subjects", "2", "--frames", "4", "--workers", "1")


def test_synth_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "keep").write_text("mine")
    before = tree_hashes(tmp_path)
    one_clear_line(cli(*SYNTH, "--out", str(tmp_path / "d")), "holds files gaitbench did not write")
    one_clear_line(cli(*SYNTH, "--out", str(tmp_path / "d"), "--force"), "holds files gaitbench did not write")
    assert tree_hashes(tmp_path) == before


def test_synth_replaces_its_own_output_only_with_force(tmp_path):
    out = tmp_path / "s"
    assert cli(*SYNTH, "--out", str(out)).exit_code == 0
    before = tree_hashes(tmp_path)
    one_clear_line(cli(*SYNTH, "--seed", "1", "--out", str(out)), "already holds a synthetic dataset", "--force")
    assert tree_hashes(tmp_path) == before
    result = cli(*SYNTH, "--seed", "1", "--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "meta.json").read_text())["generator"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary, no old copy


def test_pack_refuses_a_folder_it_did_not_write(small_synth, tmp_path):
    store, _ = small_synth
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    before = tree_hashes(tmp_path)
    one_clear_line(cli("data", "pack", str(store.root), str(tmp_path / "p"), "--force"),
                   "holds files gaitbench did not write")
    assert tree_hashes(tmp_path) == before


def test_a_finished_run_without_checkpoints_is_not_overwritten(data, finished_run, tmp_path):  # noqa: F811
    store, partition = data
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(run / "checkpoints")
    before = tree_hashes(run)
    one_clear_line(cli(*_run_args(store, partition, run)), "already holds a finished run", "--resume")
    assert tree_hashes(run) == before


def test_run_refuses_a_folder_that_is_not_a_run(data, tmp_path):  # noqa: F811
    store, partition = data
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("mine")
    before = tree_hashes(tmp_path)
    one_clear_line(cli(*_run_args(store, partition, tmp_path / "mine")), "not a gaitbench run")
    assert tree_hashes(tmp_path) == before


@pytest.mark.parametrize("change, words", [(("--seed", "7"), "seed 0 (now 7)"),
                                           (("--method", "gaitpart"), "method 'gaitset' (now 'gaitpart')"),
                                           (("--set", "optimizer.lr=0.5"), "recipe differs in optimizer.lr")])
def test_a_refused_resume_changes_nothing(data, finished_run, tmp_path, change, words):  # noqa: F811
    store, partition = data
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = tree_hashes(run)
    args = _run_args(store, partition, run)
    if change[0] in args and change[0] != "--set":
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += list(change)
    one_clear_line(cli(*args, "--resume"), "cannot resume", words)
    assert tree_hashes(run) == before  # run_settings.json and the train log included
    saved = json.loads((run / "run_settings.json").read_text())
    assert saved["seed"] == 0 and saved["method"] == "gaitset"


def test_pretreat_refuses_a_folder_it_did_not_write_and_resumes_its_own(tmp_path):
    from .test_pretreat import write_raw_casiab

    write_raw_casiab(tmp_path / "raw")
    dest = tmp_path / "pkl"
    (dest / "001").mkdir(parents=True)
    (dest / "001" / "notes.txt").write_text("mine")
    before = tree_hashes(tmp_path)
    args = ("data", "pretreat", str(tmp_path / "raw"), str(dest), "--dataset", "casiab", "--workers", "1")
    one_clear_line(cli(*args), str(dest), "holds files gaitbench did not write", "pretreat_log.jsonl")
    assert tree_hashes(tmp_path) == before
    shutil.rmtree(dest / "001")  # an empty folder is fine, and a rerun resumes the output
    first = cli(*args)
    assert first.exit_code == 0, first.output
    pkls = {k: v for k, v in tree_hashes(dest).items() if k.endswith(".pkl")}
    assert len(pkls) == 3
    again = cli(*args)
    assert again.exit_code == 0 and "0 written, 3 already done" in again.output, again.output
    assert {k: v for k, v in tree_hashes(dest).items() if k.endswith(".pkl")} == pkls
