"""``gaitbench new-plugin``: the distribution it writes installs offline with pip and its own tests
(the method contract and a smoke run) pass as written; mistakes are refused with nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from gaitbench.cli import cli
from gaitbench.scaffold import render

from .test_example_plugins import pip_install_target


def test_new_plugin_installs_offline_and_its_tests_pass(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "mygait", "--dir", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    project = tmp_path / "src" / "gaitbench-mygait"
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == sorted(render("mygait"))
    assert f"wrote {project}" in result.output and "pip install -e" in result.output
    env = pip_install_target(project, tmp_path / "site")  # --no-index --no-build-isolation: offline
    methods = subprocess.run([sys.executable, "-m", "gaitbench", "methods"], capture_output=True, text=True,
                             env={**os.environ, **env})
    assert methods.returncode == 0 and methods.stderr == ""
    assert "[plugin mygait; variants: default, wide]" in methods.stdout
    # its tests, as its author runs them, against the installed distribution (not the source folder)
    tests = tmp_path / "tests-only"
    (project / "tests").rename(tests)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tests)],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 passed" in proc.stdout  # six contract clauses and the smoke run


def test_new_plugin_refuses_a_taken_name_an_existing_folder_and_a_bad_name(tmp_path):
    runner = CliRunner()
    taken = runner.invoke(cli, ["new-plugin", "gaitset", "--dir", str(tmp_path)])
    assert taken.exit_code == 1 and "a method named 'gaitset' is registered already" in taken.output
    assert list(tmp_path.iterdir()) == []
    bad = runner.invoke(cli, ["new-plugin", "My.Gait", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "plugin name 'My.Gait': expected lowercase letters" in bad.output
    (tmp_path / "gaitbench-mygait").mkdir()
    (tmp_path / "gaitbench-mygait" / "mine.py").write_text("keep me")
    again = runner.invoke(cli, ["new-plugin", "mygait", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output and "nothing was written" in again.output
    assert [p.name for p in tmp_path.iterdir()] == ["gaitbench-mygait"]  # no temporary folder left
    assert [p.name for p in (tmp_path / "gaitbench-mygait").iterdir()] == ["mine.py"]


def test_new_plugin_names():
    files = render("my-gait")
    assert set(files) == {"pyproject.toml", "README.md", "gaitbench_my_gait/__init__.py", "gaitbench_my_gait/model.py",
                          "gaitbench_my_gait/recipes/quick.toml", "tests/test_my_gait.py"}
    assert 'name = "gaitbench-my-gait"' in files["pyproject.toml"]
    assert 'my-gait = "gaitbench_my_gait"' in files["pyproject.toml"]
    assert 'build_model="gaitbench_my_gait.model:MyGaitNet"' in files["gaitbench_my_gait/__init__.py"]
    assert not any("{{" in text for text in files.values())
