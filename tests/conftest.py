"""Shared fixtures. The test session never loads plugins other than gaitbench's own (unless a test
installs one on purpose), and synthetic data goes to a throwaway cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: each computes on one thread, so the two workers of a
    # 2-core machine do not oversubscribe it (tests that need more threads set them themselves)
    import torch

    torch.set_num_threads(1)
    # and synthetic sets render in the worker's own process: a pool of one process per core would
    # import gaitbench again per child and compete with the other worker for the same cores
    os.environ.setdefault("GAITBENCH_SYNTH_WORKERS", "1")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    old = os.environ.get("GAITBENCH_CACHE")
    os.environ["GAITBENCH_CACHE"] = str(tmp_path_factory.mktemp("gaitbench-cache"))
    yield
    if old is None:
        os.environ.pop("GAITBENCH_CACHE", None)
    else:
        os.environ["GAITBENCH_CACHE"] = old


@pytest.fixture(autouse=True)
def own_plugins():
    """A plugin manager with only gaitbench's distribution; restored after each test."""
    from gaitbench.plugins import build_plugin_manager, set_plugins

    previous = set_plugins(build_plugin_manager(distributions={"gaitbench"}))
    yield
    set_plugins(previous)


def use_plugins(*extra, **kwargs):
    """Install a plugin manager with in-process ``(name, plugin)`` pairs for one test."""
    from gaitbench.plugins import build_plugin_manager, set_plugins

    plugins = build_plugin_manager(extra=extra, distributions={"gaitbench"}, **kwargs)
    set_plugins(plugins)
    return plugins


SMALL_SUBJECTS = 12


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory):
    """A 12-subject synthetic CASIA-B (packed store) and a partition: train 001-006, test 007-012."""
    from gaitbench.data.synthetic import SynthSpec, generate

    root = tmp_path_factory.mktemp("small-synth")
    store = generate(SynthSpec(subjects=SMALL_SUBJECTS, frames=10, seed=0), root / "casiab", progress=False)
    partition = root / "partition.json"
    ids = [str(i).zfill(3) for i in range(1, SMALL_SUBJECTS + 1)]
    partition.write_text(json.dumps({"TRAIN_SET": ids[:6], "TEST_SET": ids[6:]}))
    return store, partition


def run_cli(*args, env=None, cwd=None, timeout=600, process=False):
    """``gaitbench ARGS`` as the user runs it; returns a CompletedProcess with text output.

    In this process (click's runner: exit code, stdout and stderr as a user sees them, without
    importing torch again per call), unless ``process`` asks for a real one: the tests of what only
    a process shows (discovery of installed plugins from the environment, signals, the working
    folder, what an import costs) do."""
    if process or cwd is not None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "gaitbench", *args], capture_output=True, text=True,
                              env=full_env, cwd=cwd, timeout=timeout)
    from click.testing import CliRunner

    from gaitbench.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(["gaitbench", *args], result.exit_code, result.stdout, result.stderr)


class CreatesFile:
    """An attacker's pickle payload: unpickling it calls ``os.system`` and creates the file at
    ``path``, so a test shows that a loader ran nothing by checking that the file does not exist."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))
