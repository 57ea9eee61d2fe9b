"""Inputs and fixtures the tests of method plugins keep needing (imported through
:mod:`gaitbench.testing`; needs pytest and torch)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from ..nn import parameter_count

__all__ = ["HidLikeEmbeddings", "hid_like_embeddings", "moving_blobs", "parameter_count", "random_silhouettes",
           "single_thread"]


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


class HidLikeEmbeddings(NamedTuple):
    """What :func:`hid_like_embeddings` returns. Row order: the gallery first (identity by
    identity), then the probes (identity by identity)."""

    embeddings: np.ndarray  # [N, C, P] float32
    subjects: np.ndarray  # [N] int64: the true subject of every sequence (probes included)
    probe: np.ndarray  # row indices of the probes (unlabelled in HID; their subjects are the truth)
    gallery: np.ndarray  # row indices of the labelled gallery
    views: np.ndarray  # [N] int64: the view/condition index of every sequence


def hid_like_embeddings(identities: int = 100, gallery_per_id: int = 2, probes_per_id: int = 4, *,
                        channels: int = 16, parts: int = 4, views: int = 8, difficulty: float = 1.0,
                        model: int = 0, seed: int = 0) -> HidLikeEmbeddings:
    """Synthetic embeddings shaped like an HID (CASIA-E) test set, for evaluation-stage tests.

    ``identities`` subjects, each with ``gallery_per_id`` labelled gallery sequences and
    ``probes_per_id`` probe sequences (in HID every probe subject has several). A sequence of
    subject ``s`` at view/condition ``v`` (drawn at random among ``views``) is::

        centre[s] + 0.5 * view[v] + difficulty * (0.81 * twist[s, v] + 0.965 * noise)
                  (+ 0.5 * domain for gallery sequences)

    all terms ``[C, P]`` standard Gaussians: ``view`` is shared by every subject (sequences of
    one view resemble each other, as in gait), ``twist`` is the subject's own change at that
    view, ``domain`` shifts the whole gallery so that probes and gallery differ as sets, and
    ``noise`` is the sequence's own: ``(shared + own) / sqrt(2)``, ``shared`` the same for every
    ``model`` and ``own`` drawn for this model only: ``model=0`` and ``model=1`` with one
    ``seed`` are two models' embeddings of the same sequences, ready to fuse. Deterministic from
    ``seed`` (numpy's global RNG is left alone).

    ``difficulty`` sets how hard it is: with the other defaults, rank-1 by the "euc" metric
    (nearest gallery sequence, mean over 8 seeds) is about 90% at 0.72, 64% at 1.0 (the
    default: GaitGL's rank-1 on CASIA-E in the GaitMask report) and 40% at 1.35. More
    identities make it harder (about 50% at 1.0 with 200).
    """
    if min(identities, gallery_per_id, probes_per_id, channels, parts, views) < 1 or model < 0:
        raise ValueError("hid_like_embeddings: sizes must be >= 1 and model >= 0")
    rng = np.random.default_rng([seed, 0])
    g_rows, q_rows = identities * gallery_per_id, identities * probes_per_id
    subjects = np.concatenate([np.repeat(np.arange(identities), gallery_per_id),
                               np.repeat(np.arange(identities), probes_per_id)])
    seq_views = rng.integers(0, views, len(subjects))
    shape = (channels, parts)
    centre = rng.standard_normal((identities, *shape))
    view = rng.standard_normal((views, *shape))
    twist = rng.standard_normal((identities, views, *shape))
    domain = rng.standard_normal(shape)
    shared_noise = rng.standard_normal((len(subjects), *shape))
    own_noise = np.random.default_rng([seed, 1 + model]).standard_normal((len(subjects), *shape))
    noise = (shared_noise + own_noise) / np.sqrt(2.0)
    x = centre[subjects] + 0.5 * view[seq_views] + difficulty * (0.81 * twist[subjects, seq_views] + 0.965 * noise)
    x[:g_rows] += 0.5 * domain
    return HidLikeEmbeddings(x.astype(np.float32), subjects.astype(np.int64),
                             np.arange(g_rows, g_rows + q_rows), np.arange(g_rows), seq_views.astype(np.int64))
