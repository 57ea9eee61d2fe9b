"""``gaitbench run --smoke``: the whole pipeline end to end in seconds, to see that a method (a
new plugin above all) trains, embeds and evaluates under a protocol before spending minutes on a
real run.

A smoke run is an ordinary run with three things made small: the protocol's built-in synthetic
set with a few subjects (:data:`SMOKE_SUBJECTS`), a few iterations (:data:`SMOKE_ITERATIONS`) and a
small batch (:data:`SMOKE_OVERRIDES`). The method's recipe is the one a synthetic run takes
(``quick``) unless ``--recipe`` names another; ``--iterations`` and ``--set`` still apply on top.
Its numbers mean nothing: the output says SMOKE, and ``result.json`` carries ``"smoke"``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .errors import GaitbenchError

__all__ = ["SMOKE_ITERATIONS", "SMOKE_OVERRIDES", "SMOKE_SUBJECTS", "banner", "prepare", "record_entry"]

SMOKE_ITERATIONS = 3
# identities per synthetic layout: at least 4 training and 2 test subjects under every built-in
# protocol of the layout, and no more (the test set's size is most of a smoke run's time)
SMOKE_SUBJECTS = {"casiab": 6, "oumvlp": 8, "grew": 8, "gait3d": 8, "hid": 12}
SMOKE_DEFAULT_SUBJECTS = 8  # a layout added later
# P x K = 4 x 2 clips: enough for the triplet loss to have positives and negatives
SMOKE_OVERRIDES = ("sampler.P=4", "sampler.K=2")

NOTE = "a smoke run: a few iterations on a few synthetic subjects; its numbers mean nothing"


def prepare(settings, plugins):
    """The :class:`~gaitbench.run.RunSettings` of the smoke run asked for by ``settings``."""
    from .protocols import resolve_protocol

    if settings.data_root is not None:
        raise GaitbenchError("--smoke runs on the protocol's built-in synthetic data (a few subjects); leave out "
                             "--data-root, or run without --smoke on your data")
    if settings.resume:
        raise GaitbenchError("--smoke runs take seconds and are not resumed; run it again without --resume")
    layout = resolve_protocol(settings.protocol, plugins.protocols()).dataset
    return replace(settings, synth_subjects=settings.synth_subjects or subjects(layout),
                   iterations=SMOKE_ITERATIONS if settings.iterations is None else settings.iterations,
                   overrides=[*SMOKE_OVERRIDES, *settings.overrides])


def subjects(layout: str) -> int:
    """The identities of the smoke set of ``layout``."""
    return SMOKE_SUBJECTS.get(layout, SMOKE_DEFAULT_SUBJECTS)


def banner(settings) -> str:
    return (f"SMOKE RUN: {settings.iterations} iterations on a few synthetic subjects - checks that "
            f"{settings.method} runs end to end under {settings.protocol}; the numbers mean nothing")


def record_entry(settings) -> dict[str, Any]:
    """What ``result.json`` keeps under ``"smoke"``."""
    return {"smoke": {"iterations": settings.iterations, "overrides": list(SMOKE_OVERRIDES), "note": NOTE}}
