"""Training batches (P x K identities x sequences, fixed-length clips) and test-time batches
(whole sequences, packed as a zero-padded batch plus a lengths vector)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import DataError
from .augment import Augmenter
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
        if skip == 0:  # the whole window, in order
            return positions[start:start + window]
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
    indices: np.ndarray  # rows of the store (after any substitution of an unreadable sequence)
    skipped: dict = field(default_factory=dict)  # {row: reason} sequences replaced while loading this batch
    # labels of the whole global batch in the order ranks' shards are gathered (= labels when
    # training in one process): the triplet loss's pairs are decided from them on the host
    global_labels: np.ndarray | None = None


@dataclass(frozen=True)
class ClipPlan:
    """One clip of a batch, decided before any frame is read: the row, its class, the rows of the
    same subject to fall back on, and the seed its frame positions are drawn from (the positions
    depend on the sequence length, known only once it is read for a pkl tree)."""

    row: int
    label: int
    seed: int
    pool: tuple


class ClipLoader:
    """Reads the clips of a plan. Pure given the plan and the data, so the same plan gives the same
    batch in the main process and in any worker. A sequence that cannot be read (or is shorter than
    ``min_frames``) is replaced by the next readable one of the same subject, and reported."""

    def __init__(self, store: Store, frames: int, order: str, skip: int, min_frames: int, strict: bool,
                 augment: Augmenter | None = None):
        self.store, self.frames, self.order, self.skip = store, frames, order, skip
        self.min_frames, self.strict = min_frames, strict
        self.augment = augment  # training-time augmentation (data/augment.py); None = none
        self._lengths = store.index["length"].tolist()  # plain ints: cheaper to index per clip

    def _clip(self, row: int, seed: int, out: np.ndarray | None) -> np.ndarray:
        length = self._lengths[row]
        seq = None
        if length < 0:  # unknown until read (pkl tree)
            seq = self.store.frames(row)
            length = len(seq)
        if length < self.min_frames:
            raise _Short(f"{length} frames, fewer than the {self.min_frames} training needs")
        pos = self._positions(length, seed)
        if seq is None:
            return self.store.clip(row, pos, out=out)
        if out is None:
            return seq[pos]
        out[...] = seq[pos]
        return out

    def _positions(self, length: int, seed: int) -> np.ndarray | slice:
        if self.order == "ordered" and self.skip == 0 and length >= self.frames:
            # a contiguous window: only its start is random (the 63-bit seed is a uniform draw),
            # and a slice lets the packed store copy it in one block
            start = seed % (length - self.frames + 1)
            return slice(start, start + self.frames)
        # a bare PCG64 seeded with the clip's seed: a third of the cost of default_rng's seed hashing
        return clip_positions(length, self.frames, self.order, self.skip, np.random.Generator(np.random.PCG64(seed)))

    def load(self, plan: list[ClipPlan]) -> TrainBatch:
        rows, skipped = [], {}
        batch = None  # [B, frames, H, W], allocated once the frame size is known; clips land in place
        for j, item in enumerate(plan):
            for row in self._candidates(item):
                try:
                    clip = self._clip(row, item.seed, None if batch is None else batch[j])
                    if batch is None:
                        batch = np.empty((len(plan), *clip.shape), clip.dtype)
                        batch[0] = clip
                    rows.append(row)
                    break
                except (DataError, _Short) as exc:
                    if self.strict and isinstance(exc, DataError):
                        raise
                    skipped[row] = str(exc)
            else:
                raise DataError(f"no readable training sequence of subject "
                                f"{self.store.index['subject'].iloc[item.row]!r}: " + "; ".join(
                                    f"{self.store.describe_row(r)}: {skipped[r]}" for r in item.pool if r in skipped))
        sils = cut_sides(batch) if self.augment is None else self._augmented(batch, plan)
        return TrainBatch(sils, np.asarray([p.label for p in plan], np.int64), np.asarray(rows), skipped)

    def _augmented(self, batch: np.ndarray, plan: list[ClipPlan]) -> np.ndarray:
        """The side-cut batch with each clip augmented from its own seed (the same clip seed that
        picked its frames, so augmentation depends only on the run's seed)."""
        out = None
        for j, item in enumerate(plan):
            rng = self.augment.rng(item.seed)
            clip = self.augment.after_cut(cut_sides(self.augment.before_cut(batch[j], rng)), rng)
            if out is None:
                out = np.empty((len(plan), *clip.shape), batch.dtype)
            out[j] = clip
        return out


    @staticmethod
    def _candidates(item: ClipPlan):
        """The planned row, then the other rows of its subject in pool order (fallbacks)."""
        yield item.row
        start = item.pool.index(item.row)
        for k in range(1, len(item.pool)):
            yield item.pool[(start + k) % len(item.pool)]


class _Short(Exception):
    pass


_WORKER: ClipLoader | None = None


def _worker_init(root: str, args: tuple) -> None:
    global _WORKER
    from .store import open_store

    _WORKER = ClipLoader(open_store(root), *args)


def _worker_load(plan):
    return _WORKER.load(plan)


class TripletSampler:
    """Infinite P x K batches over ``rows`` of ``store``: P subjects without replacement (with
    replacement only if fewer than P exist), K sequences each (likewise).

    ``next_batch(rank, world_size)`` draws the plan of the whole global batch in this process (so
    every rank's random stream stays identical) and loads only this rank's shard: every
    ``world_size``-th clip. With ``workers > 0`` the loading runs ahead in worker processes
    (``prefetch`` batches); plans are drawn in this process and loading is a pure function of the
    plan, so any number of workers gives exactly the batches of ``workers=0``.

    Sequences shorter than ``min_frames`` (when their length is known) are left out up front and
    counted in ``left_out``; unreadable ones are replaced while loading and collected in
    ``skipped`` (``strict`` makes them errors instead).
    """

    def __init__(self, store: Store, rows: np.ndarray, P: int, K: int, frames: int, order: str = "unordered",
                 skip: int = 0, seed: int = 0, *, min_frames: int = 1, workers: int = 0, prefetch: int = 2,
                 strict: bool = False, augment: Augmenter | None = None):
        self.store, self.P, self.K = store, P, K
        self.frames, self.order, self.skip = frames, order, skip
        self.rng = np.random.default_rng(seed)
        rows = np.asarray(rows)
        lengths = store.index["length"].to_numpy()[rows]
        short = (lengths >= 0) & (lengths < min_frames)
        self.left_out = {int(r): f"{int(n)} frames, fewer than {min_frames}" for r, n in zip(rows[short], lengths[short])}
        rows = rows[~short]
        subjects = store.index["subject"].to_numpy()[rows]
        self.classes = sorted(set(subjects))
        if not self.classes:
            raise DataError("the training split has no sequences" + (
                f" of at least {min_frames} frames ({len(self.left_out)} shorter ones left out)" if self.left_out else ""))
        self.class_index = {s: i for i, s in enumerate(self.classes)}
        self.by_class = [rows[subjects == s] for s in self.classes]
        self._pools = [tuple(int(r) for r in pool) for pool in self.by_class]
        self.skipped: dict[int, str] = {}
        self.loader = ClipLoader(store, frames, order, skip, min_frames, strict, augment)
        self.workers, self.prefetch = int(workers), max(1, int(prefetch))
        self._pool = None
        self._pending: list = []  # (future, rng state after its plan, its global labels)
        self._consumed_state = self._rng_state()

    def __iter__(self) -> Iterator[TrainBatch]:
        while True:
            yield self.next_batch()

    def _rng_state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def state_dict(self) -> dict:
        """The random stream's position after the last batch handed out (plain Python data, safe
        for weights-only checkpoints); batches prefetched beyond it are drawn again on resume."""
        return {"bit_generator": self._consumed_state}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.rng.bit_generator.state = state["bit_generator"]
        self._consumed_state = self._rng_state()

    def plan(self, rank: int = 0, world_size: int = 1) -> tuple[list[ClipPlan], np.ndarray]:
        """The next global batch (advances the random stream): this rank's shard of its clips, and
        the labels of all its clips in the order the ranks' shards are gathered."""
        rng = self.rng
        n = len(self.classes)
        chosen = rng.choice(n, size=self.P, replace=n < self.P)
        plan = []
        for c in chosen:
            pool = self.by_class[c]
            for row in rng.choice(pool, size=self.K, replace=len(pool) < self.K):
                plan.append(ClipPlan(int(row), int(c), int(rng.integers(2**63)), self._pools[c]))
        labels = np.array([c.label for c in plan], dtype=np.int64)[shard_order(len(plan), world_size)]
        return plan[rank::world_size], labels

    def next_batch(self, rank: int = 0, world_size: int = 1) -> TrainBatch:
        if self.workers <= 0:
            plan, labels = self.plan(rank, world_size)
            batch = self.loader.load(plan)
            self._consumed_state = self._rng_state()
        else:
            if self._pool is None:
                self._start_pool()
            while len(self._pending) < self.prefetch + 1:
                plan, labels = self.plan(rank, world_size)
                self._pending.append((self._pool.submit(_worker_load, plan), self._rng_state(), labels))
            future, state, labels = self._pending.pop(0)
            batch = future.result()
            self._consumed_state = state
        batch.global_labels = labels
        self.skipped.update(batch.skipped)
        return batch

    def _start_pool(self) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        args = (self.frames, self.order, self.skip, self.loader.min_frames, self.loader.strict, self.loader.augment)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                         initializer=_worker_init, initargs=(str(self.store.root), args))

    def close(self) -> None:
        """Stop the workers; batches prefetched but not handed out are dropped."""
        for future, *_ in self._pending:
            future.cancel()
        self._pending = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._consumed_state is not None:
            self.rng.bit_generator.state = self._consumed_state

    def problems(self) -> dict:
        """What was left out of training and why (for the run's summary and result.json)."""
        return {"short_left_out": len(self.left_out), "unreadable_or_short_replaced": len(self.skipped),
                "examples": [f"{self.store.describe_row(r)}: {why}" for r, why in
                             list(self.left_out.items())[:3] + list(self.skipped.items())[:5]]}


def shard_order(batch_size: int, world_size: int) -> np.ndarray:
    """Positions in the global batch of the rank-ordered concatenation of all shards."""
    return np.concatenate([np.arange(r, batch_size, world_size) for r in range(world_size)])


def sequence_batches(store: Store, rows: np.ndarray, max_frames_per_batch: int = 4096,
                     max_sequences: int = 64, skipped: dict | None = None, *, raw: bool = False
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Whole test sequences in padded batches: yields ``(rows, sils [B, T_max, H, W], lengths [B])``.

    When the store knows the lengths, sequences are grouped by length so padding stays small. The
    batch size is bounded by a frame budget, not tied to any device count. Every row is yielded
    exactly once, and only one batch of frames is held in memory.

    ``skipped``: when a dict is given, a sequence that cannot be read is recorded there
    (``{row: reason}``) and left out instead of raising.

    ``raw``: yield the frames as uint8 (side cut applied, zero-padded) for the caller to scale by
    1/255 where it computes, e.g. on the GPU after a copy of a quarter of the bytes.
    """
    rows = np.asarray(rows)
    lengths = store.index["length"].to_numpy()[rows]
    order = np.argsort(lengths, kind="stable") if (lengths >= 0).all() else np.arange(len(rows))
    batch_rows: list[int] = []
    seqs: list[np.ndarray] = []
    t_max = 0
    for i in order:
        try:
            frames = store.frames(int(rows[i]))
            seq = cut_sides(frames) if raw else to_float(frames)
        except DataError as exc:
            if skipped is None:
                raise
            skipped[int(rows[i])] = str(exc)
            continue
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
    out = np.zeros((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), seqs[0].dtype)
    for j, s in enumerate(seqs):
        out[j, :len(s)] = s
    return np.asarray(batch_rows), out, lengths


def batch_memory(P: int, K: int, frames: int, frame_shape: tuple[int, int], activation_bytes_per_frame: float = 0,
                 parts: int = 1, world_size: int = 1) -> dict[str, int]:
    """What one training step of P x K clips of ``frames`` frames of ``frame_shape`` holds at least,
    per process: the uint8 batch on the host, its float32 copy on the device, the model's
    activations (``activation_bytes_per_frame``, measured by a forward of a small batch) and the
    batch-all triplet loss over ``parts`` parts (three float tensors of parts x B x K x (P-1)K, and
    its index of the B x B label pairs, built on the host)."""
    clips = -(-P * K // max(1, world_size))
    pixels = clips * frames * int(frame_shape[0]) * int(frame_shape[1])
    batch = P * K  # the loss sees the global batch
    return {"host_batch": pixels, "device_batch": 4 * pixels,
            "activations": int(clips * frames * activation_bytes_per_frame),
            "triplet_loss": 3 * 4 * int(parts) * batch * K * max(1, P - 1) * K,
            "triplet_index": 17 * batch * batch}


def check_batch_memory(P: int, K: int, frames: int, frame_shape: tuple[int, int], *,
                       activation_bytes_per_frame: float, parts: int = 1, available: int | None, device: str,
                       world_size: int = 1) -> dict[str, int]:
    """Refuse, before anything is allocated, a batch (``sampler.P`` x ``sampler.K`` x
    ``sampler.frames``) whose step would need more memory than ``available`` on ``device`` (on a
    CPU, host and device memory are one), with the figures named; returns the estimate."""
    from ..errors import GaitbenchError
    from ..io import format_bytes

    need = batch_memory(P, K, frames, frame_shape, activation_bytes_per_frame, parts, world_size)
    on_device = need["device_batch"] + need["activations"] + need["triplet_loss"]
    on_host = need["host_batch"] + need["triplet_index"]
    total = on_device + (on_host if str(device).startswith("cpu") else 0)
    if available is not None and total > available:
        raise GaitbenchError(
            f"sampler P x K = {P} x {K} clips of {frames} frames ({frame_shape[0]}x{frame_shape[1]}) would need about "
            f"{format_bytes(total)} on {device} for one training step (batch {format_bytes(need['device_batch'])}, "
            f"activations {format_bytes(need['activations'])} estimated from a small forward, triplet loss "
            f"{format_bytes(need['triplet_loss'])}), more than the {format_bytes(available)} available: lower "
            "sampler.K or sampler.P (--set sampler.K=...)")
    return need
