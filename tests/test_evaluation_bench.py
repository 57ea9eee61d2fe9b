"""Benchmark: single-view-gallery evaluation at CASIA-B test-set size.

50 subjects x 10 types x 11 views = 5,500 sequences, random float32
embeddings [256, 62]; three probe sets (NM/BG/CL, 1,100 probes each) against
2,200 gallery sequences. Run with ``pytest tests/test_evaluation_bench.py``
(``--benchmark-disable`` runs it once without timing statistics).
"""

from __future__ import annotations

import numpy as np
import pytest

from gaitbench.evaluation.view_matrix import evaluate_view_matrix

VIEWS = [f"{a:03d}" for a in range(0, 181, 18)]
TYPES = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
PROBE_SETS = {"NM": ["nm-05", "nm-06"], "BG": ["bg-01", "bg-02"], "CL": ["cl-01", "cl-02"]}
GALLERY = ["nm-01", "nm-02", "nm-03", "nm-04"]


@pytest.fixture(scope="module")
def casiab_size():
    subjects, types, views = [], [], []
    for s in range(75, 125):
        for t in TYPES:
            for v in VIEWS:
                subjects.append(f"{s:03d}")
                types.append(t)
                views.append(v)
    emb = np.random.default_rng(0).standard_normal((len(subjects), 256, 62), dtype=np.float32)
    return emb, subjects, types, views


def test_bench_casiab_view_matrix(benchmark, casiab_size):
    emb, subjects, types, views = casiab_size
    assert emb.shape == (5500, 256, 62)

    def run():
        return evaluate_view_matrix(emb, subjects, types, views, probe_sets=PROBE_SETS, gallery_types=GALLERY,
                                    view_list=VIEWS)

    result = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert set(result.metrics) == {"NM/rank1", "BG/rank1", "CL/rank1"}
    for name in PROBE_SETS:
        assert result.tables[name]["num_probes"] == {v: 100 for v in VIEWS}
        # random embeddings: chance level is 1/50 = 2 %
        assert 0.0 <= result.metrics[f"{name}/rank1"] < 10.0
