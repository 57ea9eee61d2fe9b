"""The core's own plugin: registers the built-in protocol files and post-processing stages through
the same hooks third parties use. The stages are data: their ``apply`` functions are named as
``"module:function"`` and imported (with torch) on first use."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

from .contracts import Stage
from .hookspecs import hookimpl

# The two re-ranking parameter sets that circulate under the same name: Zhong et al.'s code
# (zhunzhong07/person-re-ranking re_ranking_ranklist.py at commit 278f2c7, as torchreid and
# fast-reid ship it) and OpenGait's HID submission (opengait/evaluation/evaluator.py::HID_submission
# with re_rank.py, at commit 0efafd4).
RERANK_PRESETS: dict[str, dict[str, Any]] = {
    # Zhong et al. 2017 / torchreid / fast-reid ranklist form: the squared distance, 20/6/0.3.
    "zhong2017": {"k1": 20, "k2": 6, "lambda": 0.3, "squared": True, "distance": "protocol"},
    # OpenGait HID_submission: the protocol's (mean-per-part) distance unsquared, 6/6/0.3.
    "opengait-hid": {"k1": 6, "k2": 6, "lambda": 0.3, "squared": False, "distance": "protocol"},
}

BUILTIN_STAGES: tuple[Stage, ...] = (
    Stage(
        name="rerank",
        description="k-reciprocal re-ranking (Zhong et al., CVPR 2017); exact, loop-free, "
                    "memory O(Q*G + N*k). Presets zhong2017 (default; squared distance, 20/6/0.3) "
                    "and opengait-hid (unsquared, 6/6/0.3)",
        apply="gaitbench.evaluation.rerank:apply_rerank",
        transductive=True,
        defaults={"preset": "zhong2017", **RERANK_PRESETS["zhong2017"]},
        presets=RERANK_PRESETS,
    ),
    Stage(
        name="aqe",
        description="average query expansion (Chum et al. 2007): each probe becomes the mean of "
                    "itself and its n nearest gallery sequences",
        apply="gaitbench.evaluation.qe:apply_aqe",
        defaults={"n": 5},
        sides="probe",
    ),
    Stage(
        name="alpha-qe",
        description="alpha query expansion (Radenovic et al. 2018): each probe becomes the mean of "
                    "itself and its n nearest gallery sequences weighted by cosine similarity^alpha",
        apply="gaitbench.evaluation.qe:apply_alpha_qe",
        defaults={"n": 5, "alpha": 3.0},
        sides="probe",
    ),
    Stage(
        name="dba",
        description="database-side augmentation (Arandjelovic & Zisserman 2012): each gallery "
                    "sequence becomes the (alpha-weighted) mean of itself and its n nearest gallery "
                    "neighbours",
        apply="gaitbench.evaluation.qe:apply_dba",
        defaults={"n": 5, "alpha": 0.0},
        sides="gallery",
    ),
    Stage(
        name="cluster-qe",
        description="clustering QE (GaitMask, HID 2021): probe and gallery clustered by the protocol's "
                    "distance (mutual-knn or threshold); each sequence moves weight of the way to the "
                    "mean of the other members of its cluster. Defaults k=1 (mutual-NN pairs: no "
                    "chaining), weight=0.1: full replacement and mutual 3-NN components scored below "
                    "rerank alone on HID-like data",
        apply="gaitbench.evaluation.qe:apply_cluster_qe",
        transductive=True,
        defaults={"method": "mutual-knn", "k": 1, "threshold": math.inf, "exclude_self": True, "weight": 0.1},
        sides="both",
    ),
)


def builtin_protocol_files():
    """The ``*.toml`` files shipped in the ``gaitbench_protocols`` package (``protocols/``)."""
    root = resources.files("gaitbench_protocols")
    return sorted((p for p in root.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)


@hookimpl
def register_protocols(register):
    for path in builtin_protocol_files():
        register(path)


@hookimpl
def register_stages(register):
    for stage in BUILTIN_STAGES:
        register(stage)
