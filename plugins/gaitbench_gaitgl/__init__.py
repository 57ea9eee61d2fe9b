"""GaitGL (Lin, Zhang, Yu; ICCV 2021 and TPAMI 2022) as a gaitbench method plugin.

Architecture as in the reference implementation (OpenGait ``gaitgl.py``), with its module names so
its checkpoints load one-to-one: a 3x3x3 conv stem, local temporal aggregation (LTA, temporal
stride 3), three stages of global-local 3-D convolutions (GLConv; the last one concatenates the
global and local maps along the height), temporal max, GeM pooling of 64 one-row bins, separate
FCs, BatchNorm and a separate-FC classifier. The embedding is the BatchNorm output; ``logits`` feed
the cross-entropy loss. See ``model.py`` for the local-branch options (the reference's N-part
split or the TPAMI paper's mask-based extractor), short sequences and packed batches.

Variants (``create_model("gaitgl", variant=...)``; ``num_classes`` overrides the class count, and a
run passes the number of training subjects unless the recipe's ``[model]`` sets it):

- ``casiab``: 3,096,673 parameters with 74 classes; embeddings ``[n, 128, 64]``, logits ``[n, 74, 64]``.
- ``oumvlp``: 95,620,449 parameters with 5153 classes; embeddings ``[n, 256, 64]``.
- ``hid2020``: the HID 2020 (CASIA-E) report's Table 1 network: conv 1->32, LTA, GLConv-A 32->64,
  max pool, GLConv-A 64->128, 128->128, 128->128, GLConv-B 128->128, each with a 2-part local
  branch; GeM, separate FCs, separate triplet loss only, so no BN / classifier (``num_classes`` is
  accepted and unused). The report leaves the FC output width ``C4`` open: 128 here (the width of
  the last stage). 4,259,681 parameters.
- ``quick``: reduced for 2 CPU cores on synthetic data (half resolution input 32x22, channels 8 /
  16 / 32 / 32, a 4-part split, 16 GeM bins of 2 rows); NOT the paper's network.

Recipes: ``casiab`` (OpenGait gaitgl.yaml), ``oumvlp`` (gaitgl_OUMVLP.yaml), ``tpami`` (CASIA-B
with the TPAMI mask-based local extractor, strip-level vertical masks), ``hid2020`` (CASIA-E
settings of the HID 2020 report) and ``quick``.
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    # 3,096,673 parameters with 74 classes (OpenGait configs/gaitgl/gaitgl.yaml)
    "casiab": {"stem": (32,), "stages": ((64,), (128,), (128,)), "parts": 8, "bins": (64,),
               "num_classes": 74},
    # 95,620,449 parameters with 5153 classes (gaitgl_OUMVLP.yaml); Head1 alone is 84.4M
    "oumvlp": {"stem": (32, 32), "stages": ((64, 64), (128, 128), (256, 256)), "parts": 2, "bins": (64,),
               "num_classes": 5153},
    # HID 2020 report, Table 1: triplet-only head, 2-part local branches; 4,259,681 parameters
    "hid2020": {"stem": (32,), "stages": ((64,), (128, 128, 128), (128,)), "parts": 2, "bins": (64,),
                "embed_dim": 128, "bn_head": False},
    # Reduced for CPU runs on synthetic data; results are labelled with the variant name.
    "quick": {"stem": (8,), "stages": ((16,), (32,), (32,)), "parts": 4, "bins": (16,), "input_pool": 2},
}


def build_model(**kwargs):
    from .model import GaitGL

    return GaitGL(**kwargs)


METHOD = gaitbench.Method(
    name="gaitgl",
    description="GaitGL: global + local 3-D convolutions, local temporal aggregation, GeM (triplet + CE)",
    paper="Lin, Zhang, Yu. Gait Recognition via Effective Global-Local Feature Representation and Local "
          "Temporal Aggregation. ICCV 2021; Lin, Zhang, Wang, Li, Yu. GaitGL: Learning Discriminative "
          "Global-Local Feature Representations for Gait Recognition. TPAMI 2022 (arXiv 2208.01380)",
    build_model=build_model,
    variants=VARIANTS,
    default_variant="casiab",
    recipes=Path(__file__).with_name("recipes"),
    input_size=(64, 44),
    class_count_arg="num_classes",
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)


@gaitbench.hookimpl
def register_throughput_cases(register):
    """The shapes of the speed targets (`tests/test_throughput.py`, `gaitbench bench`)."""
    for case in (gaitbench.ThroughputCase.standard("gaitgl", "casiab", "casiab", P=8, K=8)
                 + gaitbench.ThroughputCase.standard("gaitgl", "oumvlp", "oumvlp", P=32, K=8)):
        register(case)
