"""Progress output: a bar on a terminal, a plain line every interval or tenth of the work in a log."""

from __future__ import annotations

import io
import itertools

from gaitbench.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_line_per_tenth_and_a_last_line():
    log = io.StringIO()
    bar = progress(total=400, desc="training", unit="it", stream=log)
    assert isinstance(bar, LineProgress)
    for step in range(400):
        if step % 50 == 0:
            bar.set_postfix(loss=f"{4.8 - step / 1000:.4f}")
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 10  # 40, 80, ..., 360 and the closing 400/400
    assert lines[0].startswith("training: 40/400 (10%)") and lines[-1].startswith("training: 400/400 (100%)")
    assert lines[-1].endswith("loss=4.4500") and " it/s" in lines[-1]


def test_off_a_terminal_a_line_every_interval_when_the_work_is_slow(monkeypatch):
    clock = iter(range(0, 10_000, 7))  # 7 s between calls to the clock
    monkeypatch.setattr("gaitbench.progress.time.perf_counter", lambda: next(clock))
    log = io.StringIO()
    bar = LineProgress(total=1000, desc="embedding", unit="seq", stream=log, interval_s=30)
    for _ in range(20):  # 2% of the work, 140 s
        bar.update(1)
    assert 3 <= len(log.getvalue().splitlines()) <= 5  # one line per ~30 s, none per update


def test_iterating_and_disabled_and_initial():
    log = io.StringIO()
    assert list(progress(range(5), desc="checking", stream=log)) == [0, 1, 2, 3, 4]
    assert log.getvalue().splitlines()[-1].startswith("checking: 5/5 (100%)")
    quiet = io.StringIO()
    with progress(total=10, enabled=False, stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
    resumed = io.StringIO()
    with progress(total=10, initial=6, desc="training", stream=resumed) as bar:
        bar.update(4)
    assert resumed.getvalue().splitlines() == [resumed.getvalue().splitlines()[-1]]
    assert resumed.getvalue().startswith("training: 10/10 (100%)")


def test_on_a_terminal_a_tqdm_bar():
    from tqdm import tqdm

    term = Terminal()
    bar = progress(total=3, desc="training", stream=term)
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue() and "training" in term.getvalue()


def test_quiet_phase_line_what_how_many_then_elapsed(monkeypatch):
    from gaitbench.progress import phase, phase_lines

    clock = itertools.chain([0.0, 212.4], itertools.repeat(300.0))  # the start, the end, later displays
    monkeypatch.setattr("gaitbench.progress.time.perf_counter", lambda: next(clock))
    log = io.StringIO()
    with phase_lines():
        bar = progress(total=150, desc="training", unit="it", enabled=False, stream=log)
        assert log.getvalue() == "training 150 iterations ..."  # written when the phase starts
        for step in range(150):
            bar.update(1)
        bar.set_postfix(loss="4.2113")
        bar.close()
    assert log.getvalue() == "training 150 iterations ... done in 212 s, loss=4.2113\n"
    silent = io.StringIO()  # outside phase_lines, a display switched off writes nothing
    with progress(total=3, desc="training", enabled=False, stream=silent) as bar:
        bar.update(3)
    with phase("evaluating", total=5, unit="seq", stream=silent) as line:
        line.update(5)
    assert silent.getvalue() == ""


def test_quiet_phase_line_resumed_and_stopped_early():
    from gaitbench.progress import phase, phase_lines

    log = io.StringIO()
    with phase_lines():
        with progress(range(2), total=5500, desc="embedding", unit="seq", enabled=False, stream=log) as bar:
            list(bar)
        with progress(total=150, initial=100, desc="training", unit="it", enabled=False, stream=log) as bar:
            bar.update(50)
        with phase("evaluating", total=5500, unit="seq", stream=log) as line:
            line.update(5500)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("embedding 5,500 sequences ... stopped at 2/5,500 after ")
    assert lines[1].startswith("training 50 iterations (100 -> 150) ... done in ")
    assert lines[2].startswith("evaluating 5,500 sequences ... done in ")
    assert len(lines) == 3
