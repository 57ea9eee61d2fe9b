"""Benchmark: random 30-frame training clips from the packed store vs from the OpenGait pkl tree.

The same synthetic sequences (full length, about 80 frames each) in both stores, as an OpenGait
tree holds them (64 x 64 frames, cut to 64 x 44 at load) and as ``gaitbench data pack`` packs that
tree; each round draws
the same 200 random (sequence, 30 frame positions) clips through the training loader. The pkl tree
must unpickle a whole sequence for every clip, the packed store reads only the 30 frames from its
memory map. Figures (clips/s) go to ``extra_info``; compare the two rows of the
``clip-sampling`` group (run pinned to one core: ``taskset -c 0 pytest tests/test_store_bench.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from gaitbench.data.export import export_pkl_tree
from gaitbench.data.pack import pack_store
from gaitbench.data.sampling import ClipLoader, ClipPlan
from gaitbench.data.store import PklTreeStore, open_store
from gaitbench.data.synthetic import SynthSpec, generate

CLIPS = 200


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-bench")
    synth = generate(SynthSpec(subjects=6, frames=80, frame_step=1.0, seed=1), root / "synth", progress=False)
    export_pkl_tree(synth, root / "tree")  # 64 x 64 frames, as OpenGait's pretreatment writes them
    pack_store(root / "tree", root / "packed", progress=False)
    return open_store(root / "packed"), PklTreeStore(root / "tree")


def _plan(store, rng):
    """CLIPS clips over the store's rows, keyed by label so both stores get the same sequences."""
    keys = list(zip(store.index["subject"], store.index["type"], store.index["view"]))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    picks = rng.integers(0, len(keys), CLIPS)
    seeds = rng.integers(2**63, size=CLIPS)
    return [ClipPlan(order[p], 0, int(s), (order[p],)) for p, s in zip(picks, seeds)]


@pytest.mark.parametrize("kind", ["packed", "pkl-tree"])
def test_bench_clip_sampling(benchmark, stores, kind):
    packed, tree = stores
    store = packed if kind == "packed" else tree
    loader = ClipLoader(store, frames=30, order="ordered", skip=0, min_frames=1, strict=True)
    plan = _plan(store, np.random.default_rng(0))
    benchmark.group = "clip-sampling"
    batch = benchmark.pedantic(loader.load, args=(plan,), rounds=30, warmup_rounds=3)
    assert batch.sils.shape == (CLIPS, 30, 64, 44)
    # both stores hand out the same clips
    other = packed if kind == "pkl-tree" else tree
    ref = ClipLoader(other, 30, "ordered", 0, 1, True).load(_plan(other, np.random.default_rng(0)))
    np.testing.assert_array_equal(batch.sils, ref.sils)
    if benchmark.stats:
        benchmark.extra_info["clips_per_s"] = round(CLIPS / benchmark.stats.stats.min, 1)
