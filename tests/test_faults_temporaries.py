"""Temporaries of killed writers are removed on the next start and by `gaitbench data
clean-cache`; a live writer's never is (issue 19, item 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from gaitbench.data.synthetic import SynthSpec, ensure_synthetic

from .fault_tools import cli, temporaries

# a writer that makes its temporary as gaitbench does (.NAME.tmp-PID), then waits to be killed
WRITER = ("import os, pathlib, sys, time\n"
          "p = pathlib.Path(sys.argv[1]) / f'.{sys.argv[2]}.tmp-{os.getpid()}'\n"
          "p.mkdir(); (p / 'frames.npy').write_bytes(b'0' * 4096); print('ready', flush=True); time.sleep(120)\n")


def _writer(folder, name):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, folder / f".{name}.tmp-{proc.pid}"


def _killed_and_live(folder):
    folder.mkdir(parents=True, exist_ok=True)
    dead, dead_tmp = _writer(folder, "casiab-n2-dead")
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    live, live_tmp = _writer(folder, "casiab-n2-live")
    return dead_tmp, live, live_tmp


def test_clean_cache_removes_a_killed_writers_temporary_and_keeps_a_live_one(tmp_path):
    cache = tmp_path / "cache"
    dead_tmp, live, live_tmp = _killed_and_live(cache / "synthetic")
    try:
        (cache / "synthetic" / "casiab-n2-f4-s0-abc").mkdir()  # a finished entry: never touched
        dry = cli("data", "clean-cache", "--dry-run", env={"GAITBENCH_CACHE": str(cache)})
        assert dry.exit_code == 0 and f"would remove {dead_tmp}" in dry.output and dead_tmp.exists()
        result = cli("data", "clean-cache", env={"GAITBENCH_CACHE": str(cache)})
        assert result.exit_code == 0, result.output
        assert f"removed {dead_tmp}" in result.output and str(live_tmp) not in result.output
        assert not dead_tmp.exists() and live_tmp.is_dir() and (cache / "synthetic" / "casiab-n2-f4-s0-abc").is_dir()
    finally:
        live.kill()
        live.wait()


def test_the_next_start_removes_a_killed_generations_temporary(tmp_path):
    base = tmp_path / "synthetic"
    dead_tmp, live, live_tmp = _killed_and_live(base)
    said = []
    try:
        store = ensure_synthetic(SynthSpec(subjects=2, frames=4), root=base, workers=1, progress=False,
                                 say=said.append)
        assert len(store) > 0
        assert not dead_tmp.exists() and live_tmp.is_dir()
        assert any(dead_tmp.name in line and "killed" in line for line in said), said
    finally:
        live.kill()
        live.wait()


def test_a_killed_data_synth_leaves_nothing_after_the_next_start(tmp_path):
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "gaitbench", "data", "synth", "--subjects", "4", "--frames", "12",
                             "--workers", "1", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not temporaries(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the generation ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = temporaries(tmp_path)
    assert left and not out.exists()  # what the issue saw: the temporary stays behind
    result = cli("data", "synth", "--subjects", "2", "--frames", "4", "--workers", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert not temporaries(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert os.path.getsize(out / "frames.npy") > 0


# a pretreatment killed (SIGKILL) once two sequences are done
KILLED_PRETREAT = ("import os, signal, sys\n"
                   "from gaitbench.data import pretreat as pt\n"
                   "real = pt._run_jobs\n"
                   "def jobs(todo, workers):\n"
                   "    for i, rec in enumerate(real(todo, workers)):\n"
                   "        if i == 2:\n"
                   "            os.kill(os.getpid(), signal.SIGKILL)\n"
                   "        yield rec\n"
                   "pt._run_jobs = jobs\n"
                   "pt.pretreat_tree(sys.argv[1], sys.argv[2], 'casiab', workers=1, progress=False)\n")


def test_a_killed_pretreatment_keeps_the_log_of_what_it_finished(tmp_path):
    import json

    from .test_pretreat import write_raw_casiab

    src, dest = tmp_path / "raw", tmp_path / "pkl"
    write_raw_casiab(src)
    proc = subprocess.run([sys.executable, "-c", KILLED_PRETREAT, str(src), str(dest)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    done = sorted(p.parent.relative_to(dest).as_posix() for p in dest.rglob("*.pkl"))
    assert done == ["001/nm-01/000", "001/nm-01/090"]
    logged = [json.loads(line) for line in (dest / "pretreat_log.jsonl").read_text().splitlines()]
    assert [f"{r['subject']}/{r['type']}/{r['view']}" for r in logged] == done
    result = cli("data", "pretreat", str(src), str(dest), "--dataset", "casiab", "--workers", "1")
    assert result.exit_code == 0, result.output
    final = {f"{r['subject']}/{r['type']}/{r['view']}": r
             for r in map(json.loads, (dest / "pretreat_log.jsonl").read_text().splitlines())}
    assert len(final) == 4
    for key in done:  # the resumed log still has what the killed run measured
        assert final[key]["status"] == "skipped-existing" and final[key]["frames_in"] == 6, final[key]
