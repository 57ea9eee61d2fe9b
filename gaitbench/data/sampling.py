"""Training batches (P x K identities x sequences, fixed-length clips) and test-time batches
(whole sequences, packed as a zero-padded batch plus a lengths vector)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import DataError
from .store import Store, cut_sides


def clip_positions(length: int, frames: int, order: str, skip: int, rng: np.random.Generator) -> np.ndarray:
    """Frame positions of one training clip.

    - ``unordered`` (GaitSet): ``frames`` positions drawn at random, with replacement only when the
      sequence is shorter than ``frames``.
    - ``ordered`` (GaitPart, GaitGL): a window of ``frames + skip`` consecutive positions at a random
      start (the sequence repeated when shorter), ``frames`` of them kept in order.
    """
    if length < 1:
        raise DataError("cannot sample a clip from an empty sequence")
    if order == "unordered":
        return rng.choice(length, size=frames, replace=length < frames)
    if order == "ordered":
        window = frames + skip
        positions = np.arange(length)
        if length < window:
            positions = np.tile(positions, -(-window // length))
        start = int(rng.integers(0, len(positions) - window + 1))
        kept = np.sort(rng.choice(window, size=frames, replace=False))
        return positions[start:start + window][kept]
    raise ValueError(f"unknown clip order {order!r}; expected 'unordered' or 'ordered'")


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 silhouettes -> float32 in [0, 1], with the reference's side cut."""
    return cut_sides(frames).astype(np.float32) * (1.0 / 255.0)


@dataclass
class TrainBatch:
    sils: np.ndarray  # uint8 [B, frames, H, W], side cut applied; the trainer scales to [0, 1] on the device
    labels: np.ndarray  # int64 [B], class indices of the training subjects
    indices: np.ndarray  # rows of the store


class TripletSampler:
    """Infinite P x K batches over ``rows`` of ``store``: P subjects without replacement (with
    replacement only if fewer than P exist), K sequences each (likewise).

    ``next_batch(rank, world_size)`` draws the whole global batch (so every rank's random stream
    stays identical) and loads only this rank's shard: every ``world_size``-th clip.
    """

    def __init__(self, store: Store, rows: np.ndarray, P: int, K: int, frames: int, order: str = "unordered",
                 skip: int = 0, seed: int = 0):
        self.store, self.P, self.K = store, P, K
        self.frames, self.order, self.skip = frames, order, skip
        self.rng = np.random.default_rng(seed)
        subjects = store.index["subject"].to_numpy()[rows]
        self.classes = sorted(set(subjects))
        if not self.classes:
            raise DataError("the training split has no sequences")
        self.class_index = {s: i for i, s in enumerate(self.classes)}
        self.by_class = [rows[subjects == s] for s in self.classes]
        self._lengths = store.index["length"].to_numpy()

    def __iter__(self) -> Iterator[TrainBatch]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        """The random stream's position (plain Python data, safe for weights-only checkpoints)."""
        return {"bit_generator": dict(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    def next_batch(self, rank: int = 0, world_size: int = 1) -> TrainBatch:
        rng = self.rng
        n = len(self.classes)
        chosen = rng.choice(n, size=self.P, replace=n < self.P)
        plan = []  # (row, label, positions) for the whole global batch
        for c in chosen:
            pool = self.by_class[c]
            for row in rng.choice(pool, size=self.K, replace=len(pool) < self.K):
                row = int(row)
                length = int(self._lengths[row])
                seq = None
                if length < 0:  # unknown until loaded (pkl tree)
                    seq = self.store.frames(row)
                    length = len(seq)
                plan.append((row, int(c), clip_positions(length, self.frames, self.order, self.skip, rng), seq))
        plan = plan[rank::world_size]
        clips = [seq[pos] if seq is not None else self.store.clip(row, pos) for row, _, pos, seq in plan]
        return TrainBatch(cut_sides(np.stack(clips)), np.asarray([p[1] for p in plan], np.int64),
                          np.asarray([p[0] for p in plan]))


def shard_order(batch_size: int, world_size: int) -> np.ndarray:
    """Positions in the global batch of the rank-ordered concatenation of all shards."""
    return np.concatenate([np.arange(r, batch_size, world_size) for r in range(world_size)])


def sequence_batches(store: Store, rows: np.ndarray, max_frames_per_batch: int = 4096,
                     max_sequences: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Whole test sequences in padded batches: yields ``(rows, sils [B, T_max, H, W], lengths [B])``.

    When the store knows the lengths, sequences are grouped by length so padding stays small. The
    batch size is bounded by a frame budget, not tied to any device count. Every row is yielded
    exactly once, and only one batch of frames is held in memory.
    """
    rows = np.asarray(rows)
    lengths = store.index["length"].to_numpy()[rows]
    order = np.argsort(lengths, kind="stable") if (lengths >= 0).all() else np.arange(len(rows))
    batch_rows: list[int] = []
    seqs: list[np.ndarray] = []
    t_max = 0
    for i in order:
        seq = to_float(store.frames(int(rows[i])))
        t = len(seq)
        if seqs and (max(t_max, t) * (len(seqs) + 1) > max_frames_per_batch or len(seqs) >= max_sequences):
            yield _pack(batch_rows, seqs)
            batch_rows, seqs, t_max = [], [], 0
        batch_rows.append(int(rows[i]))
        seqs.append(seq)
        t_max = max(t_max, t)
    if seqs:
        yield _pack(batch_rows, seqs)


def _pack(batch_rows: list[int], seqs: list[np.ndarray]):
    lengths = np.asarray([len(s) for s in seqs], np.int64)
    out = np.zeros((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), np.float32)
    for j, s in enumerate(seqs):
        out[j, :len(s)] = s
    return np.asarray(batch_rows), out, lengths
