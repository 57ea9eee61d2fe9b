"""TinyGait: a per-frame CNN, max over frames, horizontal strips -> part embeddings.

Everything a method plugin needs: a ``gaitbench.Method`` registered through ``register_methods``,
a model factory that imports torch lazily, and recipes as data files.
"""

from pathlib import Path

import gaitbench


def build_model(channels=16, parts=4, embed_dim=32):
    from .model import TinyGait

    return TinyGait(channels=channels, parts=parts, embed_dim=embed_dim)


METHOD = gaitbench.Method(
    name="tinygait",
    description="TinyGait: a three-layer frame CNN with temporal max and 4 strips (example plugin)",
    paper="none: a teaching example",
    build_model=build_model,
    variants={"default": {}, "wide": {"channels": 32}},
    default_variant="default",
    recipes=Path(__file__).with_name("recipes"),
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
