"""Helpers for the tests of method plugins, gaitbench's own and third-party ones (needs pytest).

    from gaitbench.testing import random_silhouettes, single_thread  # noqa: F401 (an autouse fixture)
"""

from __future__ import annotations

import pytest
import torch

from .nn import parameter_count

__all__ = ["moving_blobs", "parameter_count", "random_silhouettes", "single_thread"]


def random_silhouettes(n: int, s: int, h: int = 64, w: int = 44, seed: int = 1) -> torch.Tensor:
    """``[n, s, h, w]`` uniform values in [0, 1) from a seeded generator (the global RNG is left
    alone, so model initialisation elsewhere stays reproducible)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, s, h, w, generator=g)


def moving_blobs(classes: int = 3, per_class: int = 4, frames: int = 9, noise: float = 0.2,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy set a model can learn in a few steps: ``classes`` "subjects", each a bright block at
    its own height sliding right over ``frames`` 64 x 44 frames, ``per_class`` noisy copies each.
    Returns ``(sils [classes * per_class, frames, 64, 44], labels)``, labels grouped by class."""
    base = torch.zeros(classes, frames, 64, 44)
    for c in range(classes):
        for t in range(frames):
            base[c, t, 8 + 12 * c: 24 + 12 * c, 4 + 3 * t: 16 + 3 * t] = 1.0
    labels = torch.arange(classes).repeat_interleave(per_class)
    g = torch.Generator().manual_seed(seed)
    x = (base[labels] + noise * torch.rand(len(labels), frames, 64, 44, generator=g)).clamp(0, 1)
    return x, labels


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread for the importing test module, restored afterwards: small tensors run
    faster on one, and on a shared 2-core machine torch's 2-thread OpenMP pool stalls at every
    barrier when another process holds a core (measured 3-20x slower steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
