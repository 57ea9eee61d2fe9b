"""TinyGait: a per-frame CNN, max over frames, horizontal strips -> part embeddings.

Everything a method plugin needs: a ``gaitbench.Method`` registered through ``register_methods``,
its model class named as ``"module:attr"`` (imported, with torch, only when a model is built),
and recipes as data files.
"""

from pathlib import Path

import gaitbench


METHOD = gaitbench.Method(
    name="tinygait",
    description="TinyGait: a three-layer frame CNN with temporal max and 4 strips (example plugin)",
    paper="none: a teaching example",
    build_model="gaitbench_tinygait.model:TinyGait",
    variants={"default": {}, "wide": {"channels": 32}},
    default_variant="default",
    recipes=Path(__file__).with_name("recipes"),
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
