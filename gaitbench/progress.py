"""Progress display that suits where the output goes.

On a terminal: a tqdm bar (rate, ETA). Off a terminal (CI logs, SLURM output files, pipes): a
carriage-return stream would write every redraw into the log, so instead one plain line is
written every ``GAITBENCH_PROGRESS_INTERVAL`` seconds (default 30) or every tenth of the work,
whichever comes first, and one when the work ends::

    training: 120/400 (30%) 25 s, 4.8 it/s, loss=4.8444 lr=1.00e-03

Both expose the same small interface: ``update(n)``, ``set_postfix(**values)``, ``close()``,
iteration over an iterable, and use as a context manager.

Quiet (``gaitbench run --quiet``): inside :func:`phase_lines`, a display that is switched off
writes one :class:`PhaseLine` per phase instead, what and how many when the phase starts and the
elapsed time when it ends, so training can be told from embedding and from a hang::

    training 3 iterations ... done in 8.0 s, loss=0.1853 lr=1.00e-03
    embedding 9 sequences ... done in 2.7 s
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, TextIO

__all__ = ["LineProgress", "PhaseLine", "phase", "phase_lines", "progress"]

DEFAULT_INTERVAL_S = 30.0
UNITS = {"it": "iterations", "seq": "sequences"}  # a phase line's words for the bars' units
_phase_lines = False  # inside phase_lines(): a display switched off writes a PhaseLine


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("GAITBENCH_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, enabled: bool = True, stream: TextIO | None = None):
    """A progress display over ``iterable`` (or updated by hand up to ``total``): a tqdm bar when
    ``stream`` (default stderr) is a terminal, :class:`LineProgress` otherwise, nothing shown
    when ``enabled`` is False."""
    stream = stream or sys.stderr
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled and _phase_lines:
        return PhaseLine(iterable, total=total, desc=desc, unit=unit, initial=initial, stream=stream)
    if enabled and getattr(stream, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, file=stream, dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, enabled=enabled, stream=stream)


class LineProgress:
    """Plain progress lines for logs (see the module docstring)."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, enabled: bool = True, stream: TextIO | None = None,
                 interval_s: float | None = None):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._start = initial
        self.enabled, self.stream = enabled, stream or sys.stderr
        self.interval_s = _interval() if interval_s is None else interval_s
        self.postfix = ""
        self.started = self._last_time = time.perf_counter()
        self._last_tenth = self._tenth(initial)
        self.closed = False

    def _tenth(self, n: int) -> int:
        return (10 * n) // self.total if self.total else 0

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.started
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        rate = (self.n - self._start) / elapsed if elapsed > 0 else 0.0
        return (f"{self.desc + ': ' if self.desc else ''}{done} {elapsed:.0f} s, {rate:.1f} {self.unit}/s"
                f"{', ' + self.postfix if self.postfix else ''}")

    def _emit(self) -> None:
        if self.enabled:
            print(self._line(), file=self.stream, flush=True)
        self._last_time = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        tenth = self._tenth(self.n)
        if tenth > self._last_tenth or time.perf_counter() - self._last_time >= self.interval_s:
            self._last_tenth = tenth
            if not (self.total and self.n >= self.total):  # the last line comes from close()
                self._emit()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n > self._start or self.total == 0:
                self._emit()

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def phase_lines(enabled: bool = True) -> Iterator[None]:
    """Within this block, progress displays created switched off (``enabled=False``) write one
    :class:`PhaseLine` each instead of nothing (``--quiet``; only rank 0 of a distributed run)."""
    global _phase_lines
    previous, _phase_lines = _phase_lines, enabled
    try:
        yield
    finally:
        _phase_lines = previous


def phase(desc: str, total: int | None = None, unit: str = "it", stream: TextIO | None = None):
    """A :class:`PhaseLine` for a phase that has no progress display, inside :func:`phase_lines`;
    otherwise a display that shows nothing."""
    if _phase_lines:
        return PhaseLine(total=total, desc=desc, unit=unit, stream=stream)
    return LineProgress(total=total, desc=desc, unit=unit, enabled=False, stream=stream)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:,.0f} s"


class PhaseLine(LineProgress):
    """One line for a whole phase: ``<desc> <count> <unit> ...`` when it starts (flushed, so a log
    shows which phase is running), `` done in <elapsed>`` (and the last postfix) when it ends, or
    `` stopped at <n>/<total> after <elapsed>`` when it ends early."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, stream: TextIO | None = None):
        super().__init__(iterable, total=total, desc=desc, unit=unit, initial=initial, enabled=True, stream=stream)
        words = UNITS.get(unit, unit)
        if total is None:
            count = ""
        elif initial:
            count = f" {total - initial:,} {words} ({initial:,} -> {total:,})"
        else:
            count = f" {total:,} {words}"
        print(f"{desc}{count} ...", end="", file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = _duration(time.perf_counter() - self.started)
        if self.total is not None and self.n < self.total:
            end = f" stopped at {self.n:,}/{self.total:,} after {elapsed}"
        else:
            end = f" done in {elapsed}{', ' + self.postfix if self.postfix else ''}"
        print(end, file=self.stream, flush=True)
