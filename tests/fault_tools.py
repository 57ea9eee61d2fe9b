"""Tools of the fault-injection tests: a full or read-only disk (a real tmpfs where the tests run
as root and may mount, else the disk's error raised at the write), a tree's hashes, and the CLI
run in-process so that an injected fault reaches it."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from gaitbench import io as gio


def tree_hashes(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (folders as ``/``)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel] = "/" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def temporaries(root: Path) -> list[Path]:
    """Every ``.NAME.tmp-PID`` file or folder under ``root``."""
    return [p for p in Path(root).rglob(f"*{gio.TEMP_MARK}*") if gio.temporary_pid(p) is not None]


def cli(*args: str, env: dict | None = None):
    """``gaitbench ARGS`` in this process (faults injected with monkeypatch reach it); returns
    click's Result."""
    from gaitbench.cli import cli as group

    return CliRunner().invoke(group, list(args), env=env, catch_exceptions=True)


def one_clear_line(result, *fragments: str) -> str:
    """Assert a non-zero exit with one ``Error:`` line holding ``fragments`` and no traceback;
    returns the line."""
    text = result.output  # stdout and stderr, as the user sees them
    assert result.exit_code != 0, text
    assert "Traceback" not in text, text
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, text
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def inject(monkeypatch, name_part: str, code: int = errno.ENOSPC, after: int = 0) -> None:
    """The disk refuses (``code``) the write of any file whose temporary's name holds ``name_part``
    once ``after`` bytes are written: exactly where every atomic write meets the disk."""
    real = gio._CountingFile.write

    def write(self, data):
        if name_part in Path(getattr(self._fh, "name", "")).name and self.written + len(memoryview(data)) > after:
            self.error, self.attempted = OSError(code, os.strerror(code)), self.written + len(memoryview(data))
            raise self.error
        return real(self, data)

    monkeypatch.setattr(gio._CountingFile, "write", write)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str, read_only: bool = False):
    """A tmpfs of ``size`` mounted at ``path`` (read-only with ``read_only``); skips the test where
    it cannot be mounted (not root, no mount)."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0:
        pytest.skip("a tmpfs needs root; the injected variant of this test covers it")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
