"""Third-party plugins installed for real with pip, as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, run_cli


def pip_install_target(project: Path, target: Path) -> dict[str, str]:
    """``pip install --target`` (offline build) and the environment that puts it on the path."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(project)],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def tinygait_env(tmp_path_factory):
    return pip_install_target(REPO / "examples" / "gaitbench-tinygait", tmp_path_factory.mktemp("tinygait"))


@pytest.fixture(scope="module")
def broken_env(tmp_path_factory):
    return pip_install_target(REPO / "tests" / "fixtures" / "broken-plugin", tmp_path_factory.mktemp("broken"))


def test_example_plugin_is_listed(tinygait_env):
    proc = run_cli("methods", env=tinygait_env, process=True)
    assert proc.returncode == 0, proc.stderr
    assert "tinygait" in proc.stdout and "[plugin tinygait" in proc.stdout and "gaitset" in proc.stdout
    info = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", env=tinygait_env, process=True).stdout)}
    assert info["tinygait"]["distribution"] == "gaitbench-tinygait"
    assert info["tinygait"]["version"] == "0.1.0"


def test_example_plugin_runs(tinygait_env, small_synth, tmp_path):
    store, partition = small_synth
    out = tmp_path / "run"
    proc = run_cli("run", "--method", "tinygait", "--protocol", "casiab", "--data-root", str(store.root),
                   "--partition", str(partition), "--recipe", "quick", "--iterations", "5", "--out", str(out),
                   "--quiet", env=tinygait_env, process=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "tinygait" and result["versions"]["plugin"]["distribution"] == "gaitbench-tinygait"
    assert set(result["metrics"]) == {"NM/rank1", "BG/rank1", "CL/rank1"}


def test_example_plugin_tests_run_the_contract(tinygait_env, tmp_path):
    """The example's own tests, run as its author runs them: the installed gaitbench's pytest
    plugin gives the contract marker, and the contract finds tinygait through its entry point."""
    shutil.copytree(REPO / "examples" / "gaitbench-tinygait" / "tests", tmp_path / "tests")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "tests"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **tinygait_env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_contract[wide-training_step] PASSED" in proc.stdout
    assert "12 passed" in proc.stdout


def test_broken_plugin_warns_and_cli_keeps_working(broken_env):
    proc = run_cli("methods", env=broken_env, process=True)
    assert proc.returncode == 0
    assert "gaitset" in proc.stdout
    warnings = [l for l in proc.stderr.splitlines() if "warning" in l]
    assert len(warnings) == 1, proc.stderr
    line = warnings[0]
    assert "'broken'" in line and "gaitbench-broken-example 0.0.1" in line
    assert "ModuleNotFoundError" in line and "gaitbench_dependency_that_does_not_exist" in line
    listing = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", env=broken_env, process=True).stdout)}
    assert "ModuleNotFoundError" in listing["broken"]["errors"][0]


def test_broken_plugin_strict_and_disabled(broken_env):
    strict = run_cli("methods", env={**broken_env, "GAITBENCH_STRICT_PLUGINS": "1"}, process=True)
    assert strict.returncode != 0 and "Traceback" not in strict.stderr
    assert "plugin failed to load" in strict.stderr and "'broken'" in strict.stderr
    disabled = run_cli("methods", env={**broken_env, "GAITBENCH_DISABLE_PLUGINS": "broken"}, process=True)
    assert disabled.returncode == 0 and disabled.stderr == "" and "gaitset" in disabled.stdout


def test_non_editable_install_finds_protocols_and_recipes(tmp_path):
    """A regular (non-editable) install carries the protocol files, the GaitSet plugin and its
    recipes: the built package is used, not this checkout."""
    env = pip_install_target(REPO, tmp_path / "site")
    code = (
        "import gaitbench, gaitbench_gaitset, gaitbench_protocols\n"
        "from gaitbench.plugins import build_plugin_manager\n"
        "p = build_plugin_manager(distributions={'gaitbench'})\n"
        "print(gaitbench.__file__)\n"
        "print(sorted(p.protocols()), sorted(p.methods()))\n"
        "print(p.method('gaitset').recipe_names())\n"
        "print(p.pipelines().get('hid2021').is_file())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(str(tmp_path / "site"))
    assert lines[1] == ("['casiab', 'casiab-crossview', 'casiab-mt', 'casiab-st', 'gait3d', 'grew', 'hid', 'oumvlp'] "
                        "['deepgaitv2', 'gaitbase', 'gaitgl', 'gaitmask', 'gaitpart', 'gaitset']")
    assert lines[2] == "['casiab', 'gait3d', 'grew', 'oumvlp', 'quick']"
    assert lines[3] == "True"  # package data beyond recipes (GaitMask's pipeline file) is installed
