"""gaitbench: a plugin-based benchmark harness for silhouette-based gait recognition.

Importing this package is cheap (no torch); models are built on demand.
"""

from __future__ import annotations

import fnmatch

from .contracts import Method, Pipeline, Stage, ThroughputCase
from .errors import GaitbenchError
from .hookspecs import hookimpl
from .io import package_version

__version__ = package_version()

__all__ = ["GaitbenchError", "Method", "Pipeline", "Stage", "ThroughputCase", "__version__", "create_model",
           "get_protocol", "hookimpl", "list_methods", "load_model"]


def list_methods(pattern: str = "*") -> list[str]:
    """Names of the registered methods, optionally filtered with a wildcard (``"gait*"``)."""
    from .plugins import get_plugins

    return sorted(n for n in get_plugins().methods() if fnmatch.fnmatch(n, pattern))


def create_model(name: str, variant: str | None = None, **overrides):
    """A ``torch.nn.Module`` of method ``name`` (its ``variant``, or the default one). Keyword
    arguments left as None never override the variant's defaults."""
    from .plugins import get_plugins

    return get_plugins().method(name).create(variant, **overrides)


def get_protocol(name_or_path: str):
    """A registered protocol by name (``"casiab"``), or a protocol file by path."""
    from .plugins import get_plugins
    from .protocols import resolve_protocol

    return resolve_protocol(name_or_path, get_plugins().protocols())


def load_model(checkpoint_path):
    """The model stored in a gaitbench checkpoint (method and variant read from it), in eval mode."""
    from .plugins import get_plugins
    from .training.checkpoint import load_state_strict, read_checkpoint

    payload = read_checkpoint(checkpoint_path)
    method = get_plugins().method(payload["method"])
    model = method.create(payload["variant"], **dict(payload.get("model_kwargs") or {}))
    load_state_strict(model, payload["model"], str(checkpoint_path))
    return model.eval()
