"""Progress output: a bar on a terminal, a plain line every interval or tenth of the work in a log."""

from __future__ import annotations

import io

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
