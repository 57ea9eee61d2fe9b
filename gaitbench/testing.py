"""Helpers for the tests of method plugins, gaitbench's own and third-party ones (needs pytest).

    from gaitbench.testing import random_silhouettes, single_thread  # noqa: F401 (an autouse fixture)
"""

from __future__ import annotations

import pytest
import torch

from .nn import parameter_count

__all__ = ["parameter_count", "random_silhouettes", "single_thread"]


def random_silhouettes(n: int, s: int, h: int = 64, w: int = 44, seed: int = 1) -> torch.Tensor:
    """``[n, s, h, w]`` uniform values in [0, 1) from a seeded generator (the global RNG is left
    alone, so model initialisation elsewhere stays reproducible)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, s, h, w, generator=g)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread for the importing test module, restored afterwards: small tensors run
    faster on one, and on a shared 2-core machine torch's 2-thread OpenMP pool stalls at every
    barrier when another process holds a core (measured 3-20x slower steps)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
