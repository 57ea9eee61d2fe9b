"""Post-processing stages (re-ranking, query expansion, fusion) as registered objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Stage:
    """A post-processing stage registered through ``register_stages``.

    ``apply(probe, gallery, distances, **params)`` receives probe and gallery embeddings
    (``[n, C, P]`` float32 numpy arrays) and their distance matrix, and returns a new distance
    matrix ``[n_probe, n_gallery]``. ``transductive`` says whether it uses other probes.
    """

    name: str
    description: str
    apply: Callable[..., Any]
    transductive: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
