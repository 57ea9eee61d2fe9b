"""Errors a user can cause. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class GaitbenchError(Exception):
    """A mistake in the user's input (paths, files, names, configuration): shown without traceback."""


class PluginError(GaitbenchError):
    """A plugin failed to load or registered something invalid."""


class ConfigError(GaitbenchError):
    """A configuration, recipe or protocol file is invalid."""


class DataError(GaitbenchError):
    """A dataset is missing, empty, corrupt or untrusted."""


def did_you_mean(name: str, choices: Iterable[str], what: str) -> str:
    """``unknown <what> 'x'; did you mean 'y'? available: a, b, c`` — the message for a bad name."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    msg = f"unknown {what} {name!r}"
    if close:
        msg += f"; did you mean {close[0]!r}?"
    msg += f" Available: {', '.join(choices) if choices else '(none)'}"
    return msg


class WriteError(GaitbenchError):
    """The disk refused a write (full, over quota, read-only, not permitted); nothing half-written
    is left under a real name."""
