"""Data layer: safe loading, stores, synthetic generation, sampling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gaitbench.data.safe_pickle import load_array_pickle
from gaitbench.data.sampling import TripletSampler, clip_positions, sequence_batches, shard_order
from gaitbench.data.store import PackedStore, PklTreeStore, cut_sides, open_store
from gaitbench.data.synthetic import SynthSpec, generate, sequence_table
from gaitbench.errors import DataError

from .conftest import CreatesFile


def write_pkl_tree(root, subjects=("001", "002"), types=("nm-01", "nm-02"), views=("000", "090"), t=5, w=64):
    rng = np.random.default_rng(0)
    arrays = {}
    for s in subjects:
        for ty in types:
            for v in views:
                d = root / s / ty / v
                d.mkdir(parents=True)
                arr = rng.integers(0, 256, size=(t, 64, w), dtype=np.uint8)
                with open(d / f"{v}.pkl", "wb") as f:
                    pickle.dump(arr, f)
                arrays[(s, ty, v)] = arr
    return arrays


def test_safe_pickle_loads_arrays_of_any_protocol(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        p = tmp_path / f"a{protocol}.pkl"
        p.write_bytes(pickle.dumps(arr, protocol=protocol))
        np.testing.assert_array_equal(load_array_pickle(p), arr)


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps(CreatesFile(marker)))
    with pytest.raises(DataError) as err:
        load_array_pickle(bad)
    assert str(bad) in str(err.value) and "system" in str(err.value) and "nothing from it was run" in str(err.value)
    assert not marker.exists()
    # the same pickle really would have created the file with plain pickle.loads
    pickle.loads(bad.read_bytes())  # safe: test proving the payload is live
    assert marker.exists()


@pytest.mark.parametrize("payload,expected", [
    ({"a": 1}, "expected a numpy array, found dict"),
    (np.array([object()], dtype=object), "refusing"),
    (np.array(["x", 1], dtype=object), "holds Python objects; only numeric arrays"),
])
def test_non_array_pickles_are_rejected(tmp_path, payload, expected):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=expected):
        load_array_pickle(p)


def test_corrupt_pickle_names_the_file(tmp_path):
    p = tmp_path / "broken.pkl"
    p.write_bytes(pickle.dumps(np.zeros((3, 4, 4), np.uint8))[:-20])
    with pytest.raises(DataError, match="broken.pkl"):
        load_array_pickle(p)


def test_pkl_tree_store_reads_opengait_layout(tmp_path):
    arrays = write_pkl_tree(tmp_path)
    store = open_store(tmp_path)
    assert isinstance(store, PklTreeStore) and len(store) == 8 and not store.synthetic
    for i, row in store.index.iterrows():
        np.testing.assert_array_equal(store.frames(i), arrays[(row.subject, row.type, row.view)])
    assert cut_sides(store.frames(0)).shape == (5, 64, 44)


def test_open_store_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no sequences found under .*empty.*<id>/<type>/<view>/\*\.pkl"):
        open_store(tmp_path / "empty")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        open_store(f)


def test_wrong_dtype_in_tree_is_reported(tmp_path):
    d = tmp_path / "001" / "nm-01" / "000"
    d.mkdir(parents=True)
    (d / "000.pkl").write_bytes(pickle.dumps(np.zeros((3, 64, 64), np.float32)))
    with pytest.raises(DataError, match="expected uint8 frames, found float32"):
        open_store(tmp_path).frames(0)


def test_synthetic_is_deterministic_and_marked(tmp_path):
    spec = SynthSpec(subjects=2, frames=6, seed=3)
    a = generate(spec, tmp_path / "a", workers=1, progress=False)
    b = generate(spec, tmp_path / "b", workers=2, progress=False)
    assert (tmp_path / "a" / "frames.npy").read_bytes() == (tmp_path / "b" / "frames.npy").read_bytes()
    assert a.synthetic and a.meta["generator"]["seed"] == 3 and a.fingerprint == b.fingerprint
    assert len(a) == 2 * 10 * 11 and set(a.index["view"]) == {f"{v:03d}" for v in range(0, 181, 18)}
    assert a.frames(0).dtype == np.uint8 and a.frames(0).shape[1:] == (64, 44)
    c = generate(SynthSpec(subjects=2, frames=6, seed=4), tmp_path / "c", workers=1, progress=False)
    assert c.fingerprint != a.fingerprint
    assert not np.array_equal(c.frames(0)[:3], a.frames(0)[:3])
    reopened = open_store(tmp_path / "a")
    assert isinstance(reopened, PackedStore)
    np.testing.assert_array_equal(reopened.clip(5, np.array([0, 2])), a.frames(5)[[0, 2]])


def test_sequence_lengths_vary_around_the_mean():
    lengths = sequence_table(SynthSpec(subjects=3, frames=12))["length"]
    assert 9 <= lengths.min() < lengths.max() <= 15 and abs(lengths.mean() - 12) < 1


def test_truncated_packed_store_is_reported(tmp_path):
    generate(SynthSpec(subjects=1, frames=4), tmp_path / "s", workers=1, progress=False)
    frames = np.load(tmp_path / "s" / "frames.npy")
    np.save(tmp_path / "s" / "frames.npy", frames[:10])
    store = open_store(tmp_path / "s")  # the rows within the file are served, the others named and refused
    beyond = [i for i in range(len(store)) if i in store.malformed]
    assert beyond and all("truncated" in store.malformed[i] for i in beyond)
    with pytest.raises(DataError, match="truncated"):
        store.frames(beyond[0])
    np.testing.assert_array_equal(store.frames(0), frames[:len(store.frames(0))])


def test_clip_positions():
    rng = np.random.default_rng(0)
    pos = clip_positions(40, 30, "unordered", 0, rng)
    assert len(pos) == 30 and len(set(pos)) == 30  # no replacement when long enough
    pos = clip_positions(7, 30, "unordered", 0, rng)
    assert len(pos) == 30 and pos.max() < 7
    pos = clip_positions(100, 30, "ordered", 0, rng)
    assert np.all(np.diff(pos) == 1)
    pos = clip_positions(7, 10, "ordered", 0, rng)  # short: wraps around, stays cyclically ordered
    assert len(pos) == 10 and np.all((np.diff(pos) == 1) | (np.diff(pos) == -6))


def test_triplet_sampler_batches(small_synth):
    store, _ = small_synth
    rows = np.flatnonzero(store.index["subject"].isin(["001", "002", "003", "004", "005"]))
    sampler = TripletSampler(store, rows, P=4, K=3, frames=8, seed=1)
    batch = sampler.next_batch()
    assert batch.sils.shape == (12, 8, 64, 44) and batch.sils.dtype == np.uint8
    for clip, row in zip(batch.sils, batch.indices):  # every clip frame comes from its sequence
        seq = store.frames(row)
        assert all(any(np.array_equal(f, g) for g in seq) for f in clip)
    assert len(set(batch.labels.tolist())) == 4 and np.all(np.bincount(batch.labels)[np.unique(batch.labels)] == 3)
    again = TripletSampler(store, rows, P=4, K=3, frames=8, seed=1).next_batch()
    np.testing.assert_array_equal(batch.sils, again.sils)
    # two ranks' shards together are the global batch, and the random streams stay in step
    a = TripletSampler(store, rows, P=4, K=3, frames=8, seed=1)
    b = TripletSampler(store, rows, P=4, K=3, frames=8, seed=1)
    s0, s1 = a.next_batch(0, 2), b.next_batch(1, 2)
    np.testing.assert_array_equal(np.concatenate([s0.indices, s1.indices])[np.argsort(shard_order(12, 2))],
                                  batch.indices)
    assert a.state_dict() == b.state_dict()


def test_sampler_state_round_trip(small_synth):
    store, _ = small_synth
    rows = np.arange(len(store))
    a = TripletSampler(store, rows, P=2, K=2, frames=4, seed=5)
    a.next_batch()
    state = a.state_dict()
    expected = a.next_batch().indices
    b = TripletSampler(store, rows, P=2, K=2, frames=4, seed=99)
    b.load_state_dict(state)
    np.testing.assert_array_equal(b.next_batch().indices, expected)


def test_sequence_batches_cover_every_row_once(small_synth):
    store, _ = small_synth
    rows = np.arange(0, 200, 3)
    seen = []
    for batch_rows, sils, lengths in sequence_batches(store, rows, max_frames_per_batch=100):
        assert sils.shape[0] * sils.shape[1] <= 100 or len(batch_rows) == 1
        for j, r in enumerate(batch_rows):
            np.testing.assert_allclose(sils[j, :lengths[j]], store.frames(r) / 255.0, atol=1e-6)
            assert not sils[j, lengths[j]:].any()
        seen.extend(batch_rows.tolist())
    assert sorted(seen) == rows.tolist()


def test_embedding_batches_follow_the_device_frame_budget(small_synth, monkeypatch):
    import torch

    import gaitbench.data.sampling as sampling
    from gaitbench.steps import default_frame_budget, embed

    assert default_frame_budget("cpu") == 128 and default_frame_budget("cuda:0") == 4096
    store, _ = small_synth
    rows = np.arange(0, 120)
    shapes = []
    real = sampling.sequence_batches

    def spy(*args, **kwargs):
        for batch in real(*args, **kwargs):
            shapes.append(batch[1].shape[:2])
            yield batch

    monkeypatch.setattr(sampling, "sequence_batches", spy)

    class Mean(torch.nn.Module):
        def forward(self, x, lengths=None):
            return {"embeddings": x.mean((1, 3)).unsqueeze(1)}

    out = embed(Mean(), store, rows, device="cpu", progress=False)  # the recipe's 0: the device default
    assert out.shape[0] == len(rows) and len(shapes) > 1
    assert all(b * t <= 128 or b == 1 for b, t in shapes)
    shapes.clear()
    embed(Mean(), store, rows, device="cpu", max_frames_per_batch=4096, progress=False)
    assert max(b for b, _ in shapes) > 8  # an explicit budget is kept


def test_prefetched_keeps_order_raises_where_it_failed_and_stops_early():
    import threading

    from gaitbench.steps import prefetched

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise DataError("sequence 7 is unreadable")

    got = []
    with pytest.raises(DataError, match="sequence 7"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1, 2]
    before = threading.active_count()
    for item in prefetched(iter(range(10_000)), depth=2):
        if item == 3:
            break
    assert threading.active_count() <= before  # the producer thread has ended


def test_embedding_from_uint8_equals_the_float_path(small_synth):
    import torch

    from gaitbench.steps import embed

    store, _ = small_synth
    rows = np.arange(10, 40)

    from gaitbench.data.sampling import to_float

    class FirstAndMax(torch.nn.Module):  # exact functions of the frames: no rounding of their own
        def forward(self, x, lengths=None):
            return {"embeddings": torch.stack([x[:, 0], x.amax(1)], 1).flatten(2)}

    got = embed(FirstAndMax(), store, rows, progress=False, max_frames_per_batch=64)
    for i, r in enumerate(rows):  # the float path: numpy's scaling of the cut frames
        want = to_float(store.frames(int(r)))
        np.testing.assert_array_equal(got[i, 0], want[0].ravel())
        np.testing.assert_array_equal(got[i, 1], want.max(0).ravel())
