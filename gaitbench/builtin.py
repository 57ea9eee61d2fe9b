"""The core's own plugin: registers the built-in protocol files through the same hook third
parties use."""

from __future__ import annotations

from importlib import resources

from .hookspecs import hookimpl


def builtin_protocol_files():
    """The ``*.toml`` files shipped in the ``gaitbench_protocols`` package (``protocols/``)."""
    root = resources.files("gaitbench_protocols")
    return sorted((p for p in root.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)


@hookimpl
def register_protocols(register):
    for path in builtin_protocol_files():
        register(path)
