"""GaitGL (Lin, Zhang, Yu; ICCV 2021 and TPAMI 2022) as a gaitbench method plugin.

Two families of networks, both built by ``model.GaitGL`` from a stage layout given as data (see
``model.py`` for the modules, the local-branch options, short sequences and packed batches):

- the ICCV 2021 / reference network (OpenGait ``gaitgl.py``, whose module names are kept so its
  checkpoints load one-to-one): a 3x3x3 conv stem, local temporal aggregation (LTA, temporal
  stride 3), three stages of global-local 3-D convolutions (GLConv; the last one concatenates the
  global and local maps along the height), temporal max, GeM pooling of 64 one-row bins, separate
  FCs, BatchNorm and a separate-FC classifier, with the N-part local split;
- the TPAMI 2022 networks (Lin, Zhang, Wang, Li, Yu, "GaitGL: Learning Discriminative Global-Local
  Feature Representations for Gait Recognition", TPAMI 2022, section 4.2): LTA moved into the
  stages and the mask-based local extractor with strip-level vertical masks (Table 5's best;
  dropping ratio 0.3, the middle of the tested 0.1-0.5, evaluation on the unmasked map).

The embedding is the BatchNorm output; ``logits`` feed the cross-entropy loss. Every variant
carries its silhouette ``input_size`` (``model.input_size``).

Variants (``create_model("gaitgl", variant=...)``; ``num_classes`` overrides the class count, and a
run passes the number of training subjects unless the recipe's ``[model]`` sets it; the counts
below are with the variant's own class count):

- ``casiab``: 3,096,673 parameters with 74 classes; embeddings ``[n, 128, 64]``, logits ``[n, 74, 64]``.
- ``oumvlp``: 95,620,449 parameters with 5153 classes; embeddings ``[n, 256, 64]``.
- ``hid2020``: the HID 2020 (CASIA-E) report's Table 1 network: conv 1->32, LTA, GLConv-A 32->64,
  max pool, GLConv-A 64->128, 128->128, 128->128, GLConv-B 128->128, each with a 2-part local
  branch; GeM, separate FCs, separate triplet loss only, so no BN / classifier (``num_classes`` is
  accepted and unused). The report leaves the FC output width ``C4`` open: 128 here (the width of
  the last stage). 4,259,681 parameters.
- ``quick``: reduced for 2 CPU cores on synthetic data (64x44 input average-pooled to 32x22 inside,
  channels 8 / 16 / 32 / 32, a 4-part split, 16 GeM bins of 2 rows); NOT the paper's network.
- ``tpami``: the TPAMI CASIA-B network: conv 1->32; stage 1 GLConv ->64, then LTA; stage 2
  GLConv ->128, then max pool; stage 3 GLConv ->128, GLConv-B ->128; 64 one-row GeM bins,
  embedding 128. 3,990,625 parameters with 74 classes; embeddings ``[n, 128, 64]``. LTA sits in
  stage 1 as section 3.1 says (section 3.2 says the second pooling layer; section 3.1's shape
  equations and Table 7, where "LTA, SP" is the published 93.6 and "SP, LTA" 92.2, support 3.1).
  Section 3.2's reading: ``--set 'model.pools=["max", "lta", "none"]'`` (a 128-channel LTA:
  4,027,489 parameters). ``parts`` is 8 for ``--set model.local="parts"``.
- ``tpami-oumvlp``, ``tpami-grew``, ``tpami-gait3d``: the TPAMI large network: conv 1->32; stage
  1 (2 GLConvs ->64), max pool; stage 2 (2 ->128), LTA; stage 3 (2 ->256), max pool; stage 4
  (4 ->512, the last GLConv-B); embedding 256; ``parts`` 2. 64x44 input with 32 GeM bins for
  OU-MVLP (5153 classes, 102,970,721 parameters) and GREW (20,000 classes, 224,597,345
  parameters); 128x88 input with 64 bins for Gait3D (3000 classes, 114,103,649 parameters).
  Embeddings ``[n, 256, 32]`` / ``[n, 256, 64]``. The classifier dominates: 32 x 256 x classes
  weights (42.2M, 163.8M, 49.2M).

TPAMI choices the paper leaves open (``model.py`` gives the reasons): one stem conv 1->32 before
stage 1 (``stem=()`` drops it), embedding width 128 / 256, GeM bins = the final feature height.

Recipes: ``casiab`` (OpenGait gaitgl.yaml), ``oumvlp`` (gaitgl_OUMVLP.yaml), ``grew``
(gaitgl_GREW.yaml), ``gait3d`` (gaitgl_gait3d_parsing.yaml), ``tpami`` (the TPAMI CASIA-B network
and settings), ``tpami-oumvlp``, ``tpami-grew``, ``tpami-gait3d`` (the TPAMI large network with
section 4.2's SGD settings; the schedule is our choice, see the files), ``hid2020`` (CASIA-E
settings of the HID 2020 report, the paper recipe of the ``hid`` protocol; it fine-tunes, with
``--init-from``, a model trained with ``hid2020-oumvlp``, the report's OU-MVLP pre-training) and
``quick``. ``--recipe tpami --protocol oumvlp`` takes ``tpami-oumvlp`` (a recipe name is looked up
as ``<name>-<protocol>`` first).
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

# TPAMI 2022: the mask-based local extractor with strip-level vertical masks (Table 5's best); the
# dropping ratio is the middle of the tested 0.1-0.5, to which accuracy is insensitive (Fig. 4).
_TPAMI_MASKS = {"local": "mask", "mask": "strip_vertical", "drop_ratio": 0.3, "mask_eval": "unmasked"}
# The large network: 2, 2, 2, 4 GLConvs of 64, 128, 256, 512 channels, max pool after stages 1 and 3,
# LTA after stage 2. One 1->32 stem conv and a 256-wide embedding are our choices (module docstring).
_TPAMI_LARGE = {**_TPAMI_MASKS, "stem": (32,), "stem_lta": False,
                "stages": ((64, 64), (128, 128), (256, 256), (512, 512, 512, 512)),
                "pools": ("max", "lta", "max", "none"), "parts": 2, "embed_dim": 256}

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    # 3,096,673 parameters with 74 classes (OpenGait configs/gaitgl/gaitgl.yaml)
    "casiab": {"stem": (32,), "stages": ((64,), (128,), (128,)), "parts": 8, "bins": (64,),
               "num_classes": 74, "input_size": (64, 44)},
    # 95,620,449 parameters with 5153 classes (gaitgl_OUMVLP.yaml); Head1 alone is 84.4M
    "oumvlp": {"stem": (32, 32), "stages": ((64, 64), (128, 128), (256, 256)), "parts": 2, "bins": (64,),
               "num_classes": 5153, "input_size": (64, 44)},
    # HID 2020 report, Table 1: triplet-only head, 2-part local branches; 4,259,681 parameters
    "hid2020": {"stem": (32,), "stages": ((64,), (128, 128, 128), (128,)), "parts": 2, "bins": (64,),
                "embed_dim": 128, "bn_head": False, "input_size": (64, 44)},
    # Reduced for CPU runs on synthetic data; results are labelled with the variant name. It takes
    # 64 x 44 silhouettes and pools them to 32 x 22 itself.
    "quick": {"stem": (8,), "stages": ((16,), (32,), (32,)), "parts": 4, "bins": (16,), "input_pool": 2,
              "input_size": (64, 44)},
    # TPAMI CASIA-B network (section 4.2): stages of 1, 1, 2 GLConvs (64, 128, 128), LTA in place of
    # stage 1's pooling (section 3.1), strip-level vertical masks (Table 5's best); 3,990,625 parameters
    "tpami": {**_TPAMI_MASKS, "stem": (32,), "stem_lta": False, "stages": ((64,), (128,), (128, 128)),
              "pools": ("lta", "max", "none"), "parts": 8, "bins": (64,), "embed_dim": 128,
              "num_classes": 74, "input_size": (64, 44)},
    # TPAMI large network (section 4.2); GeM bins = the final feature height (32 rows for 64 x 44
    # input, 64 for 128 x 88). Counts include the classifier Head1 (bins x 256 x classes).
    # 102,970,721 parameters (Head1 42.2M)
    "tpami-oumvlp": {**_TPAMI_LARGE, "bins": (32,), "num_classes": 5153, "input_size": (64, 44)},
    # 224,597,345 parameters (Head1 163.8M)
    "tpami-grew": {**_TPAMI_LARGE, "bins": (32,), "num_classes": 20000, "input_size": (64, 44)},
    # 114,103,649 parameters (Head1 49.2M)
    "tpami-gait3d": {**_TPAMI_LARGE, "bins": (64,), "num_classes": 3000, "input_size": (128, 88)},
}


METHOD = gaitbench.Method(
    name="gaitgl",
    description="GaitGL: global + local 3-D convolutions, local temporal aggregation, GeM (triplet + CE)",
    paper="Lin, Zhang, Yu. Gait Recognition via Effective Global-Local Feature Representation and Local "
          "Temporal Aggregation. ICCV 2021; Lin, Zhang, Wang, Li, Yu. GaitGL: Learning Discriminative "
          "Global-Local Feature Representations for Gait Recognition. TPAMI 2022 (arXiv 2208.01380)",
    build_model="gaitbench_gaitgl.model:GaitGL",  # imported (with torch) when a model is built
    variants=VARIANTS,
    default_variant="casiab",
    recipes=Path(__file__).with_name("recipes"),
    # the shapes of the speed targets (`gaitbench bench`, tests/test_throughput.py)
    throughput_cases=(gaitbench.ThroughputCase.standard("casiab", "casiab", P=8, K=8)
                      + gaitbench.ThroughputCase.standard("oumvlp", "oumvlp", P=32, K=8)),
    input_size=(64, 44),
    class_count_arg="num_classes",
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
