"""Progress display that suits where the output goes.

On a terminal: a tqdm bar (rate, ETA). Off a terminal (CI logs, SLURM output files, pipes): a
carriage-return stream would write every redraw into the log, so instead one plain line is
written every ``GAITBENCH_PROGRESS_INTERVAL`` seconds (default 30) or every tenth of the work,
whichever comes first, and one when the work ends::

    training: 120/400 (30%) 25 s, 4.8 it/s, loss=4.8444 lr=1.00e-03

Both expose the same small interface: ``update(n)``, ``set_postfix(**values)``, ``close()``,
iteration over an iterable, and use as a context manager.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

__all__ = ["LineProgress", "progress"]

DEFAULT_INTERVAL_S = 30.0


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
