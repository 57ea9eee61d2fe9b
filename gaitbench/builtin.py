"""The core's own plugin: registers the built-in protocol files and post-processing stages through
the same hooks third parties use."""

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


@hookimpl
def register_stages(register):
    from .evaluation.stages import builtin_stages

    for stage in builtin_stages():
        register(stage)
