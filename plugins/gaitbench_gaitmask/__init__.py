"""GaitMask (HID 2021 report, "Bag of Tricks and GaitMask Network for Gait Recognition") as a
gaitbench method plugin.

A GaitGL-style 3-D network (conv, LTA, global-and-mask convolution layers, temporal max, GeM,
separate FCs) trained with the separate triplet loss only. It depends on the ``gaitbench_gaitgl``
plugin package for its building blocks (``GaitMask`` subclasses ``GaitGL``). Every choice the
report leaves open is listed in ``gaitbench_gaitmask.model``.

Variants:

- ``hid2021``: Table 2 of the report, 4,259,681 parameters, embeddings ``[n, 128, 64]``; the state
  dict is identical to GaitGL's ``hid2020`` variant.
- ``quick``: reduced for 2 CPU cores on synthetic data (32x22 input, channels 8 / 16 / 32 / 32, one
  layer per stage, 16 GeM bins); NOT the report's network.

Recipes: ``hid2021`` (the report's CASIA-B/CASIA-E training settings) and ``quick``.

The HID 2021 entry itself is a *pipeline*, not one model: GaitGL and GaitMask embeddings
concatenated, then query expansion and k-reciprocal re-ranking. ``PIPELINES["hid2021"]`` (also
``METHOD.extra["pipelines"]``) writes it down as data. It is NOT runnable yet: gaitbench has no
embedding-fusion, query-expansion or re-ranking stage registered so far (``register_stages``
exists, no stage does), and no runner for multi-model pipelines.
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    # The report's Table 2; 4,259,681 parameters
    "hid2021": {},
    # Reduced for CPU runs on synthetic data; results are labelled with the variant name.
    "quick": {"stem": (8,), "stages": ((16,), (32,), (32,)), "bins": (16,), "embed_dim": 32, "input_pool": 2},
}

# The HID 2021 inference pipeline (report Sec. 1, Fig. 1 and Table 3), as data. NOT RUNNABLE YET.
PIPELINES = {
    "hid2021": {
        "description": "HID 2021 (CASIA-E): GaitGL + GaitMask embeddings concatenated, query expansion, "
                       "k-reciprocal re-ranking (report Table 3: 64.1 -> 78.4 -> 80.7 -> 83.7 rank-1)",
        "runnable": False,
        "missing": [
            "a runner that trains/loads several models and embeds with each",
            "stage 'concat' (embedding fusion)",
            "stage 'query_expansion' (cluster-mean query expansion)",
            "stage 'rerank' (k-reciprocal re-ranking)",
        ],
        "pretraining": {"dataset": "oumvlp", "iterations": 250000, "P": 32, "K": 8, "frames": 30,
                        "lr": 1e-4, "lr_after": {"150000": 1e-5}},
        "models": [
            {"method": "gaitgl", "variant": "hid2020", "recipe": "hid2020"},
            {"method": "gaitmask", "variant": "hid2021", "recipe": "hid2021"},
        ],
        "stages": [
            # concatenate the two [n, C, 64] embeddings along the channels -> [n, 256, 64]
            {"name": "concat", "params": {"axis": "channels"}},
            # gallery and probe features pooled together, clustered by Euclidean distance; every
            # feature replaced by the mean of the other members of its cluster. The report gives
            # neither the clustering method nor its parameters.
            {"name": "query_expansion", "params": {"metric": "euclidean", "pool": "probe+gallery"}},
            # Zhong et al. CVPR 2017; the report gives no parameters. OpenGait's HID defaults are used.
            {"name": "rerank", "params": {"k1": 6, "k2": 6, "lambda": 0.3}},
        ],
    },
}


def build_model(**kwargs):
    from .model import GaitMask

    return GaitMask(**kwargs)


METHOD = gaitbench.Method(
    name="gaitmask",
    description="GaitMask: GaitGL-style 3-D network with random complementary-mask local branches (triplet only)",
    paper="Lin, Zhang, Sun, Qin, Wan. Bag of Tricks and GaitMask Network for Gait Recognition. HID 2021 "
          "competition report (first place)",
    build_model=build_model,
    variants=VARIANTS,
    default_variant="hid2021",
    recipes=Path(__file__).with_name("recipes"),
    input_size=(64, 44),
    extra={"pipelines": PIPELINES, "depends_on": ("gaitbench_gaitgl",)},
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)


@gaitbench.hookimpl
def register_throughput_cases(register):
    """The shapes of the speed targets (`tests/test_throughput.py`, `gaitbench bench`)."""
    register(gaitbench.ThroughputCase("gaitmask", "hid2021-train", "train", "hid2021", frames=64, P=12, K=8, recipe="hid2021",
                                            description="the paper's 12 x 8 batch of 64-frame clips"))
    register(gaitbench.ThroughputCase("gaitmask", "hid2021-infer-16x80", "inference", "hid2021", frames=80, batch=16,
                                            description="16 packed 80-frame sequences per forward"))
