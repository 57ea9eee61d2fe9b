"""The report's retrieval views: CMC per probe set, the verification table and ROC, and ranklists
(top-K gallery of a few probes, hits marked, silhouettes when the dataset is at hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitbench.errors import GaitbenchError
from gaitbench.results.report import write_report

from .conftest import run_cli
from .test_report import make_result, write_run


def _casiab():
    from gaitbench.plugins import get_plugins
    from gaitbench.protocols import resolve_protocol

    return resolve_protocol("casiab", get_plugins().protocols())


@pytest.fixture(scope="module")
def run_with_embeddings(small_synth, tmp_path_factory):
    """A run directory whose record names the small synthetic store, with embeddings of its
    sequences (near their subject's centre, so that most first hits are at rank 1)."""
    from gaitbench.evaluation.embeddings import write_embeddings

    store, _ = small_synth
    rng = np.random.default_rng(0)
    index = store.index
    codes = np.unique(index["subject"], return_inverse=True)[1]
    centres = rng.normal(size=(codes.max() + 1, 8, 2))
    emb = (centres[codes] + 0.8 * rng.normal(size=(len(index), 8, 2))).astype(np.float32)
    out = tmp_path_factory.mktemp("rl") / "run"
    result = make_result()
    result["dataset"] = {**result["dataset"], "root": str(store.root), "fingerprint": store.fingerprint}
    write_run(out, result)
    write_embeddings(out / "embeddings.npz", emb, index, method="gaitset", protocol="casiab", metric="euc")
    return out, emb, index


def test_ranklists_equal_a_readable_ranking(run_with_embeddings):
    from gaitbench.evaluation.ranklist import ranklists

    _, emb, index = run_with_embeddings
    subj, typ, view = (index[c].to_numpy().astype(str) for c in ("subject", "type", "view"))
    lists = ranklists(_casiab(), emb, subj, typ, view, top=5, probes=6)
    assert [rl.probe_set for rl in lists] == ["NM", "NM", "BG", "BG", "CL", "CL"]
    ev = _casiab().evaluation
    for rl in lists:
        q = rl.index
        assert typ[q] in ev.probe_sets[rl.probe_set]
        # the gallery: nm-01..04 at the protocol's views, the probe's own view excluded
        gallery = [j for j in range(len(subj)) if typ[j] in ev.gallery_types and view[j] != view[q]]
        d = {j: float(np.sqrt(((emb[q] - emb[j]) ** 2).sum(0)).mean()) for j in gallery}
        ranked = sorted(gallery, key=lambda j: (d[j], j))
        assert [e.index for e in rl.entries] == ranked[:5]
        assert [e.hit for e in rl.entries] == [subj[j] == subj[q] for j in ranked[:5]]
        assert [e.distance for e in rl.entries] == pytest.approx([d[j] for j in ranked[:5]], rel=1e-4)
        first = next(k for k, j in enumerate(ranked, 1) if subj[j] == subj[q])
        assert rl.first_hit == first


def test_report_ranklists_with_silhouettes(run_with_embeddings, tmp_path):
    run_dir, _, _ = run_with_embeddings
    page = write_report(run_dir, tmp_path / "r.html", ranklists=4, protocol=_casiab(), probes=3).read_text("utf-8")
    section = page.split("<h2>Ranklists</h2>")[1]
    assert section.count('<div class="ranklist">') == 3
    assert section.count('class="probe"') == 3 and section.count("<figure") == 3 * 5
    assert section.count('class="hit"') + section.count('class="miss"') == 3 * 4
    # silhouettes inline (the store is at hand), nothing external
    assert section.count('src="data:image/png;base64,') == 3 * 5
    assert "src=\"http" not in page and "Silhouettes not shown" not in page


def test_report_ranklists_labels_when_the_store_is_elsewhere(run_with_embeddings, tmp_path):
    run_dir, _, _ = run_with_embeddings
    moved = tmp_path / "moved"
    moved.mkdir()
    record = json.loads((run_dir / "result.json").read_text())
    record["dataset"]["root"] = str(tmp_path / "gone")
    (moved / "result.json").write_text(json.dumps(record))
    (moved / "embeddings.npz").write_bytes((run_dir / "embeddings.npz").read_bytes())
    page = write_report(moved, ranklists=3, protocol=_casiab(), probes=3).read_text("utf-8")
    section = page.split("<h2>Ranklists</h2>")[1]
    assert "data:image/png" not in section and section.count("<figure") == 3 * 4
    assert "Silhouettes not shown: the run&#x27;s dataset is not at hand" in section


def test_report_ranklists_need_embeddings(tmp_path):
    run_dir = write_run(tmp_path / "run", make_result())
    with pytest.raises(GaitbenchError, match="no embeddings.npz, which ranklists are computed from"):
        write_report(run_dir, ranklists=5, protocol=_casiab())
    assert not (run_dir / "report.html").exists()
    proc = run_cli("report", str(run_dir), "--ranklists", "5")
    assert proc.returncode != 0 and "no embeddings.npz" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("report", str(run_dir), "--ranklists", "0")
    assert proc.returncode != 0 and "--ranklists" in proc.stderr


def _retrieval_result() -> dict:
    r = make_result()
    roc = {"far": [0.0, 0.01, 1.0, 100.0], "tar": [5.0, 20.0, 60.0, 100.0]}
    for name in ("NM", "BG", "CL"):
        r["tables"][name]["cmc"] = [70.0 + i for i in range(10)]
        r["tables"][name]["verification"] = {
            "genuine_pairs": 120, "impostor_pairs": 12000,
            "tar_at_far": {"TAR@FAR=1e-2": 61.5, "TAR@FAR=1e-3": 40.25, "TAR@FAR=1e-4": None},
            "eer": 12.5, "eer_threshold": 0.3, "roc": roc,
            "notes": ["TAR@FAR=1e-4 needs at least 10,000 impostor pairs; there are 9,000"]}
    r["tables"]["settings"]["verification"] = {"pairs": "probe x gallery (identical view excluded)"}
    return r


def test_report_shows_cmc_per_probe_set_and_verification(tmp_path):
    page = write_report(write_run(tmp_path / "run", _retrieval_result())).read_text("utf-8")
    assert "Cumulative match characteristic" in page
    section = page.split("<h2>Verification</h2>")[1].split("<h2>")[0]
    assert section.count("<tr>") == 4  # header and one row per probe set
    assert ">61.50<" in section and ">40.25<" in section and ">12.50<" in section and ">-<" in section
    assert "identical view excluded" in section and "10,000 impostor pairs" in section
    assert section.count("<svg") == 1  # the ROC


def test_report_without_verification_has_no_section(tmp_path):
    page = write_report(write_run(tmp_path / "run", make_result())).read_text("utf-8")
    assert "<h2>Verification</h2>" not in page and "Cumulative match characteristic" not in page
