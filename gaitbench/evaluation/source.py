"""Probe x gallery distances for the evaluators, memory-bounded, optionally post-processed.

Every evaluator asks one :class:`DistanceSource` for the distances of a probe subset against a
gallery and gets them back in row blocks, so the peak memory is one block, never the full matrix:

- plain: each block of probes is computed against the (once prepared) gallery;
- fused (several embeddings of the same sequences, ``mean-distance``): the mean of each source's
  distance, block by block;
- with post-processing stages (query expansion, re-ranking): the stages see the whole probe set and
  gallery (transductive stages need all probes), then the result is handed out in blocks.

The time spent computing distances (and in stages) is accumulated for the report.
"""

from __future__ import annotations

import time
from typing import Iterator, Sequence

import numpy as np
import torch

from .distance import prepare, prepared_distance

DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # one probe block x gallery of float32 distances (and temporaries)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class DistanceSource:
    """Distances between rows of ``embeddings`` (``[N, C, P]``, or a list of aligned arrays whose
    distances are averaged), under ``metric`` on ``device``.

    ``stages``: ``[(Stage, params)]`` applied in order to each probe-set x gallery problem.
    ``max_bytes``: budget for one block of distances and the evaluator's per-cell temporaries
    (``bytes_per_cell`` says how many bytes the caller needs per probe x gallery cell).
    """

    def __init__(self, embeddings, metric: str = "euc", *, device: str = "cpu", stages: Sequence = (),
                 max_bytes: int | None = None):
        self.sources = list(embeddings) if isinstance(embeddings, (list, tuple)) else [embeddings]
        self.metric = metric
        self.device = torch.device(device)
        self.stages = list(stages)
        self.max_bytes = int(max_bytes or DEFAULT_MAX_BYTES)
        self.seconds = 0.0  # distance computation
        self.stage_seconds = 0.0
        self.records: list[dict] = []  # what each stage did, per problem
        self._gallery_key = None
        self._gallery = None

    @property
    def n(self) -> int:
        return len(self.sources[0])

    def rows_per_block(self, n_gallery: int, bytes_per_cell: int = 4) -> int:
        return max(1, self.max_bytes // max(1, bytes_per_cell * max(1, n_gallery)))

    def estimate_bytes(self, n_probe: int, n_gallery: int, bytes_per_cell: int = 4) -> int:
        """Peak bytes of the distance blocks for one problem (whole matrix when stages run)."""
        rows = n_probe if self.stages else min(n_probe, self.rows_per_block(n_gallery, bytes_per_cell))
        return rows * n_gallery * bytes_per_cell

    def _prepared_gallery(self, g_idx: np.ndarray):
        key = (len(g_idx), hash(g_idx.tobytes()))
        if self._gallery_key != key:
            self._gallery = [prepare(src, self.metric, role="y", device=self.device, name="gallery", index=g_idx)
                             for src in self.sources]
            self._gallery_key = key
        return self._gallery

    def _block(self, p_idx: np.ndarray, g_idx: np.ndarray) -> torch.Tensor:
        gallery = self._prepared_gallery(g_idx)
        out = None
        for src, gp in zip(self.sources, gallery):
            xp = prepare(src, self.metric, role="x", device=self.device, name="probes", index=p_idx)
            d = prepared_distance(xp, gp)
            out = d if out is None else out.add_(d)
        if len(self.sources) > 1:
            out.div_(len(self.sources))
        return out

    def blocks(self, p_idx: np.ndarray, g_idx: np.ndarray, bytes_per_cell: int = 4,
               name: str = "") -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yields ``(r0, r1, dist)``: the distances of probes ``p_idx[r0:r1]`` to ``g_idx``
        (float32 ``[r1 - r0, len(g_idx)]`` on the device)."""
        p_idx, g_idx = np.asarray(p_idx, np.int64), np.asarray(g_idx, np.int64)
        if self.stages:
            full = self._staged(p_idx, g_idx, name)
            step = self.rows_per_block(len(g_idx), bytes_per_cell)
            for r0 in range(0, len(p_idx), step):
                yield r0, min(r0 + step, len(p_idx)), full[r0:r0 + step]
            return
        step = self.rows_per_block(len(g_idx), bytes_per_cell)
        for r0 in range(0, len(p_idx), step):
            r1 = min(r0 + step, len(p_idx))
            t = time.perf_counter()
            d = self._block(p_idx[r0:r1], g_idx)
            _sync(self.device)
            self.seconds += time.perf_counter() - t
            yield r0, r1, d

    def _staged(self, p_idx: np.ndarray, g_idx: np.ndarray, name: str) -> torch.Tensor:
        from .stages import StageInput, run_stages

        if len(self.sources) > 1:  # mean-distance fusion: the files side by side, distances averaged
            from .fusion import MeanDistanceInput

            layout = tuple((int(s.shape[1]), int(s.shape[2])) for s in self.sources)

            def take(idx):
                rows = [torch.from_numpy(np.ascontiguousarray(s[idx])).reshape(len(idx), -1) for s in self.sources]
                return torch.cat(rows, 1)[:, :, None].to(self.device, torch.float32)

            def make(p, g):
                return MeanDistanceInput(p, g, self.metric, layout=layout)
        else:
            src = self.sources[0]

            def take(idx):
                return torch.from_numpy(np.ascontiguousarray(src[idx])).to(self.device, torch.float32)

            def make(p, g):
                return StageInput(probe=p, gallery=g, metric=self.metric)

        t = time.perf_counter()
        data = make(take(p_idx), take(g_idx))
        dist, records = run_stages(data, self.stages)
        _sync(self.device)
        self.stage_seconds += time.perf_counter() - t
        for r in records:  # one record per stage; each probe set it ran on adds its seconds
            same = next((x for x in self.records if x["name"] == r["name"] and x["params"] == r["params"]), None)
            if same is None:
                self.records.append({**r, "problems": [name] if name else []})
            else:
                same["seconds"] = round(same["seconds"] + r["seconds"], 4)
                if name:
                    same["problems"].append(name)
        return dist

    def timings(self) -> dict[str, float]:
        out = {"distance_s": round(self.seconds, 4)}
        if self.stages:
            out["stages_s"] = round(self.stage_seconds, 4)
        return out
