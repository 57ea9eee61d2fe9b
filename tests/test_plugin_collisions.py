"""A third-party distribution that takes a built-in's method name, installed for real with pip:
the built-in keeps the name, the newcomer's own method still works, one warning says what to do."""

from __future__ import annotations

import json

import pytest

from .conftest import REPO, run_cli
from .test_example_plugins import pip_install_target

FIXTURE = REPO / "tests" / "fixtures" / "colliding-plugin"


@pytest.fixture(scope="module")
def colliding_env(tmp_path_factory):
    return pip_install_target(FIXTURE, tmp_path_factory.mktemp("colliding"))


def test_colliding_plugin_leaves_methods_working_with_one_warning(colliding_env):
    proc = run_cli("methods", env=colliding_env, process=True)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0]: line for line in proc.stdout.splitlines() if line and not line[0].isspace()}
    assert {"gaitset", "gaitpart", "gaitgl", "gaitmask", "collider"} <= set(listed)
    # entry points of gaitbench's own distribution load first, though "colliding" sorts before "gaitset"
    assert "[plugin gaitset;" in listed["gaitset"] and "[plugin colliding;" in listed["collider"]
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1, proc.stderr
    line = warnings[0]
    assert line.startswith("gaitbench: warning: method 'gaitset'")
    assert "(distribution gaitbench " in line and "(distribution gaitbench-colliding-example 0.0.1) is refused" in line
    assert "GAITBENCH_DISABLE_PLUGINS=colliding" in line
    listing = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", env=colliding_env, process=True).stdout)}
    assert listing["colliding"]["registered"] == {"method": ["collider"]}
    assert "is refused" in listing["colliding"]["errors"][0]


def test_colliding_plugin_strict_is_one_error_line_and_disabling_silences_it(colliding_env):
    strict = run_cli("methods", env={**colliding_env, "GAITBENCH_STRICT_PLUGINS": "1"}, process=True)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert strict.stderr.startswith("Error: method 'gaitset' is registered by two plugins")
    disabled = run_cli("methods", env={**colliding_env, "GAITBENCH_DISABLE_PLUGINS": "colliding"}, process=True)
    assert disabled.returncode == 0 and disabled.stderr == ""
    assert "collider" not in disabled.stdout and "gaitset" in disabled.stdout
