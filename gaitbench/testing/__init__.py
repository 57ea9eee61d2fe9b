"""Helpers of method tests, gaitbench's own and third-party ones.

- Helpers: ``random_silhouettes``, ``moving_blobs``, ``hid_like_embeddings``, ``parameter_count``,
  and ``single_thread``, an autouse fixture for the module that imports it::

      from gaitbench.testing import random_silhouettes, single_thread  # noqa: F401 (an autouse fixture)

Names are imported when first used: importing this package imports neither torch nor pytest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "HidLikeEmbeddings": ".helpers",
    "hid_like_embeddings": ".helpers",
    "moving_blobs": ".helpers",
    "parameter_count": ".helpers",
    "random_silhouettes": ".helpers",
    "single_thread": ".helpers",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports on first use
    from .helpers import (HidLikeEmbeddings, hid_like_embeddings, moving_blobs, parameter_count, random_silhouettes,
                          single_thread)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
