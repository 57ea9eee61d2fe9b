"""Every hook gaitbench calls, declared once.

Collector hooks receive a ``register`` callback: the core validates what is registered, records
which plugin gave it and reports a duplicate name by naming both plugins. Lifecycle hooks are
observers: they may read and log, and whatever they return is ignored.

Plugins implement hooks with ``@gaitbench.hookimpl`` on module-level functions (or methods of an
object they register). ``docs/writing-plugins.md`` documents each hook with its exact signature.
"""

from __future__ import annotations

import pluggy

PROJECT = "gaitbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register):
    """Register gait recognition methods: call ``register(method)`` with a ``gaitbench.Method``."""


@hookspec
def register_protocols(register):
    """Register protocols: call ``register(path)`` with a protocol file, or a ``Protocol``."""


@hookspec
def register_stages(register):
    """Register post-processing stages: call ``register(stage)`` with a ``gaitbench.Stage``."""


@hookspec
def register_commands(cli):
    """Add commands to the ``gaitbench`` click group ``cli``."""


@hookspec
def train_start(trainer):
    """Fires once before the first training step, after model, data and optimizer are built."""


@hookspec
def train_step_start(trainer, step):
    """Fires before every training step; ``step`` is the number of the step about to run."""


@hookspec
def train_step_end(trainer, step, logs):
    """Fires after every optimizer step; ``logs`` is a read-only mapping of this step's values."""


@hookspec
def train_end(trainer):
    """Fires once after the last training step, before the final checkpoint is written."""


@hookspec
def evaluate_end(run, report):
    """Fires after evaluation with the run's settings and the (read-only) report."""
