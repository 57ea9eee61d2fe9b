"""``gaitbench run --smoke``: the whole pipeline end to end in seconds for any method and protocol,
marked SMOKE so nobody takes its numbers for results; ``--quiet`` writes one line per phase."""

from __future__ import annotations

import json
import re

import pytest

from gaitbench.plugins import build_plugin_manager
from gaitbench.run import RunSettings, execute
from gaitbench.smoke import SMOKE_ITERATIONS, SMOKE_SUBJECTS

from .conftest import run_cli

_BUILTIN = build_plugin_manager(distributions={"gaitbench"})
METHODS = _BUILTIN.methods().names()
PROTOCOLS = _BUILTIN.protocols().names()


def test_smoke_run_quiet_prints_each_phase_and_marks_the_record(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--smoke", "--quiet", "--method", "gaitset", "--protocol", "grew", "--out", str(out),
                   env={"GAITBENCH_CACHE": str(tmp_path / "cache")})  # a fresh cache: the data phase too
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SMOKE RUN: 3 iterations") and lines[-1] == lines[0]
    assert "SYNTHETIC" in proc.stdout
    grew = SMOKE_SUBJECTS["grew"]
    assert f"{grew} subjects" in proc.stdout  # the smoke set, not the layout's 100
    phases = proc.stderr.splitlines()
    assert len(phases) == 4, proc.stderr
    assert re.fullmatch(r"synthesising grew \d+ sequences \.\.\. done in [\d.]+ s", phases[0])
    assert re.fullmatch(r"training 3 iterations \.\.\. done in [\d.]+ s, loss=[\d.]+ lr=\S+", phases[1])
    n = int(re.fullmatch(r"embedding (\d+) sequences \.\.\. done in [\d.]+ s", phases[2]).group(1))
    assert re.fullmatch(rf"evaluating {n} sequences \.\.\. done in [\d.]+ s", phases[3])
    result = json.loads((out / "result.json").read_text())
    assert result["smoke"]["iterations"] == SMOKE_ITERATIONS == result["iterations"]
    assert result["dataset"]["synthetic"] is True and result["dataset"]["generator"]["subjects"] == grew
    assert set(result["metrics"]) == {"rank1", "rank5", "rank10", "rank20"}


def test_smoke_refuses_data_root_and_resume(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--smoke", "--method", "gaitset", "--protocol", "casiab", "--data-root", str(tmp_path),
                   "--out", str(out))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: --smoke runs on the protocol's built-in synthetic")
    assert len(proc.stderr.splitlines()) == 1 and not out.exists()
    proc = run_cli("run", "--smoke", "--resume", "--method", "gaitset", "--protocol", "casiab", "--out", str(out))
    assert proc.returncode == 1 and "--smoke runs take seconds and are not resumed" in proc.stderr
    assert not out.exists()


def _smoke(method: str, protocol: str, out) -> None:
    run = execute(RunSettings(method=method, protocol=protocol, smoke=True, progress=False, out=str(out)),
                  echo=lambda line: None)
    assert run.method == method and run.protocol == protocol
    assert run.iterations == SMOKE_ITERATIONS and run.dataset.synthetic and run.extra["smoke"]
    assert run.metrics and all(0.0 <= v <= 100.0 for v in run.metrics.values())
    assert run.dataset.get("generator")["subjects"] == SMOKE_SUBJECTS[run.dataset.name]


# Every built-in method under every built-in protocol: in this process, with the smoke sets
# rendered once per layout, a smoke run takes about a second.
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_smoke_runs_every_method_on_every_protocol(method, protocol, tmp_path):
    _smoke(method, protocol, tmp_path / "run")
