"""Fusion of several methods' embeddings of the same test sequences (ensembles).

How the engine calls it (``gaitbench evaluate --embeddings a.npz --embeddings b.npz --fuse
concat|mean-distance [--normalize]``)::

    from gaitbench.evaluation.embeddings import read_embeddings
    from gaitbench.evaluation.fusion import fuse

    fused = fuse([read_embeddings(p) for p in paths], mode=fuse_mode, normalize=normalize,
                 names=[str(p) for p in paths])          # DataError if the sequences differ
    # labels, aligned to the first file's order:
    fused.embeddings, fused.subjects, fused.types, fused.views
    # the probe x gallery stage input, for the baseline distance and for stages:
    data = fused.stage_input(torch.from_numpy(fused.embeddings[probe_rows]).to(device),
                             torch.from_numpy(fused.embeddings[gallery_rows]).to(device), metric)
    distance = data.current_distance()                    # or run_stages(data, stages)
    # any other pair of row sets: fused.distances(x, y, metric) (a [len(x), len(y)] tensor)

- ``concat``: ``fused.embeddings`` are the files' embeddings concatenated along channels,
  ``[N, sum C_k, P]`` when every file has the same number of parts, else each file flattened to
  ``[N, C_k * P_k, 1]`` first. Distances are plain metric distances of the concatenation, so
  ``fused.as_dict()`` can also go anywhere a ``read_embeddings`` dict goes.
- ``mean-distance``: the mean over files of each file's metric distance. ``fused.embeddings``
  packs the files flattened side by side, ``[N, sum C_k * P_k, 1]``; only
  ``fused.stage_input``/``fused.distances`` (which unpack them) give the fused distance. Stages
  work on it unchanged: query expansion averages packed rows (the same as averaging each file),
  re-ranking re-ranks the mean distance. (alpha-qe's cosine weights are taken over the packed
  vector, not per file.)
- ``normalize``: each file's embedding of each sequence is first divided by its L2 norm over
  all of its ``C * P`` values, so files on different scales count equally.

Sequences are matched by their ``(subject, type, view)`` labels; a label that occurs several times
in a file is matched by its order of occurrence (the first with the first, ...). The fused order
is the first file's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import DataError
from .stages import StageInput

__all__ = ["FUSE_MODES", "FusedEmbeddings", "MeanDistanceInput", "fuse"]

FUSE_MODES = ("concat", "mean-distance")
_SHOW = 5  # differences listed in a mismatch error


def _keys(data: dict[str, np.ndarray]) -> list[tuple[str, str, str, int]]:
    """``(subject, type, view, occurrence)`` of every row."""
    seen: Counter = Counter()
    out = []
    for label in zip(*(np.asarray(data[k]).astype(str).tolist() for k in ("subjects", "types", "views"))):
        out.append((*label, seen[label]))
        seen[label] += 1
    return out


def _show(key) -> str:
    subject, type_, view, occurrence = key
    return f"{subject}/{type_}/{view}" + (f" (#{occurrence + 1})" if occurrence else "")


def _align(first: list, other: list, first_name: str, other_name: str) -> np.ndarray:
    """Row of ``other`` for each row of ``first``, or DataError listing the first differences."""
    where = {key: i for i, key in enumerate(other)}
    missing = [key for key in first if key not in where]
    if missing or len(first) != len(other):
        present = set(first)
        extra = [key for key in other if key not in present]
        parts = [f"{other_name} does not hold the same sequences as {first_name} "
                 f"({len(first)} vs {len(other)} sequences)"]
        if missing:
            parts.append(f"{len(missing)} only in {first_name}: " + ", ".join(_show(k) for k in missing[:_SHOW])
                         + (", ..." if len(missing) > _SHOW else ""))
        if extra:
            parts.append(f"{len(extra)} only in {other_name}: " + ", ".join(_show(k) for k in extra[:_SHOW])
                         + (", ..." if len(extra) > _SHOW else ""))
        raise DataError("; ".join(parts))
    return np.asarray([where[key] for key in first], dtype=np.int64)


def _l2_normalised(emb: np.ndarray) -> np.ndarray:
    flat = emb.reshape(len(emb), -1).astype(np.float32)
    norm = np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), np.float32(1e-12))
    return (flat / norm).reshape(emb.shape)


@dataclass
class MeanDistanceInput(StageInput):
    """A :class:`StageInput` whose features pack several files' embeddings (``layout``: each file's
    ``(C, P)``, flattened side by side in ``[n, sum C*P, 1]``) and whose distance is the mean of
    the files' metric distances."""

    layout: tuple[tuple[int, int], ...] = ()

    def _members(self, x: torch.Tensor) -> list[torch.Tensor]:
        flat = x.reshape(len(x), -1)
        out, start = [], 0
        for c, p in self.layout:
            out.append(flat[:, start:start + c * p].reshape(len(x), c, p))
            start += c * p
        return out

    def distances(self, x, y):
        total = None
        for xk, yk in zip(self._members(x), self._members(y)):
            d = StageInput(xk, yk, self.metric).distances(xk, yk)
            total = d if total is None else total.add_(d)
        return total.div_(len(self.layout))

    def distance_blocks(self, x) -> Callable[[Any, Any], torch.Tensor]:
        members = [StageInput(xk, xk, self.metric).distance_blocks(xk) for xk in self._members(x)]

        def blocks(rows, cols):
            total = members[0](rows, cols)
            for b in members[1:]:
                total.add_(b(rows, cols))
            return total.div_(len(members))

        return blocks


@dataclass
class FusedEmbeddings:
    """Aligned, fused embeddings of several files; see the module docstring for their use."""

    embeddings: np.ndarray
    subjects: np.ndarray
    types: np.ndarray
    views: np.ndarray
    mode: str
    normalize: bool
    layout: tuple[tuple[int, int], ...]  # each file's (C, P)
    sources: tuple[str, ...] = field(default_factory=tuple)

    def members(self) -> list[np.ndarray]:
        """Each file's aligned embeddings ``[N, C_k, P_k]`` (for ``mean-distance``, whose
        :attr:`embeddings` pack them)."""
        flat = self.embeddings.reshape(len(self.embeddings), -1)
        out, start = [], 0
        for c, p in self.layout:
            out.append(flat[:, start:start + c * p].reshape(-1, c, p))
            start += c * p
        return out

    def as_dict(self) -> dict[str, np.ndarray]:
        """A ``read_embeddings``-style dict (meaningful on its own for ``concat`` only)."""
        return {"embeddings": self.embeddings, "subjects": self.subjects, "types": self.types, "views": self.views}

    def stage_input(self, probe: torch.Tensor, gallery: torch.Tensor, metric: str,
                    distance: torch.Tensor | None = None) -> StageInput:
        """The stage input for rows of :attr:`embeddings` (as float32 tensors on the device)."""
        if self.mode == "mean-distance":
            return MeanDistanceInput(probe, gallery, metric, distance, layout=self.layout)
        return StageInput(probe, gallery, metric, distance)

    def distances(self, x, y, metric: str, device: str | torch.device = "cpu") -> torch.Tensor:
        """The fused distance between rows ``x`` and ``y`` of :attr:`embeddings` (arrays or tensors)."""
        x, y = (torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(device, torch.float32)
                for a in (x, y))
        return self.stage_input(x, y, metric).distances(x, y)

    def describe(self) -> dict[str, Any]:
        """What a report records about the fusion."""
        return {"mode": self.mode, "normalize": self.normalize, "sources": list(self.sources),
                "layout": [list(cp) for cp in self.layout]}


def fuse(embeddings: Sequence[dict[str, np.ndarray]], mode: str = "concat", normalize: bool = False,
         names: Sequence[str] | None = None) -> FusedEmbeddings:
    """Fuse ``embeddings`` (dicts as returned by ``read_embeddings``: ``embeddings`` ``[N, C, P]``,
    ``subjects``, ``types``, ``views``) of the same sequences: ``mode`` "concat" or
    "mean-distance", each file first L2-normalised when ``normalize``. ``names`` label the files
    in errors (default ``embeddings #1``, ...). Raises DataError when the files' sequences differ
    (listing the first differences) and ValueError for an unknown mode.
    """
    if mode not in FUSE_MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; expected one of {FUSE_MODES}")
    if not embeddings:
        raise DataError("fusion needs at least one embeddings file")
    names = list(names) if names is not None else [f"embeddings #{i + 1}" for i in range(len(embeddings))]
    keys = [_keys(d) for d in embeddings]
    arrays = []
    for i, data in enumerate(embeddings):
        emb = np.asarray(data["embeddings"])
        if emb.ndim == 2:
            emb = emb[:, :, None]
        if emb.ndim != 3 or len(emb) != len(keys[i]):
            raise DataError(f"{names[i]}: embeddings of shape {emb.shape} do not match {len(keys[i])} labels")
        rows = np.arange(len(emb)) if i == 0 else _align(keys[0], keys[i], names[0], names[i])
        emb = emb[rows].astype(np.float32)
        arrays.append(_l2_normalised(emb) if normalize else emb)
    layout = tuple((int(a.shape[1]), int(a.shape[2])) for a in arrays)
    if mode == "concat" and len({p for _, p in layout}) == 1:
        fused = np.concatenate(arrays, axis=1)
    else:
        fused = np.concatenate([a.reshape(len(a), -1, 1) for a in arrays], axis=1)
    first = embeddings[0]
    return FusedEmbeddings(fused, *(np.asarray(first[k]).astype(str) for k in ("subjects", "types", "views")),
                           mode=mode, normalize=bool(normalize), layout=layout, sources=tuple(names))
