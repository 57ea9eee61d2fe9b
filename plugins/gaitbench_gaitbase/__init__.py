"""GaitBase (Fan, Liang, Shen, Hou, Huang, Yu, "OpenGait: Revisiting Gait Recognition Towards
Better Practicality", CVPR 2023) as a gaitbench method plugin.

OpenGait's ``Baseline`` model with its ``ResNet9`` backbone (``model.GaitBase``; see ``model.py``):
per-frame residual network with channels 64 / 128 / 256 / 512, one basic block per stage, strides
1, 2, 2, 1 and no max pool, temporal max, horizontal pooling into 16 strips, separate FCs 512 ->
256 and a BNNeck per part. The embedding evaluated is the FCs output, i.e. the BNNeck *input*
(OpenGait's ``Baseline`` returns ``embed_1``); the BNNeck's cosine logits feed the cross-entropy.

Variants (``create_model("gaitbase", variant=...)``): the same network for every dataset, only
the class count differs, as in OpenGait's configs (``configs/gaitbase/gaitbase_da_casiab.yaml``,
``gaitbase_oumvlp.yaml``, ``gaitbase_da_grew.yaml``, ``gaitbase_da_gait3d.yaml`` at commit
0efafd4). ``num_classes`` overrides the class count; a run passes the number of training
subjects unless the recipe's ``[model]`` sets it. Parameter counts (asserted by the tests, equal
to OpenGait's model built from those configs):

- ``casiab``: 74 classes, 7,305,408 parameters; embeddings ``[n, 256, 16]``, logits ``[n, 74, 16]``.
- ``oumvlp``: 5153 classes, 28,108,992 parameters.
- ``grew``: 20,000 classes, 88,922,304 parameters.
- ``gait3d``: 3000 classes, 19,290,304 parameters.
- ``quick``: reduced for 2 CPU cores on synthetic data (64 x 44 input average-pooled to 32 x 22
  inside, channels 8 / 16 / 32 / 32, 8 strips, embedding 32); NOT OpenGait's network.

Recipes: ``casiab``, ``oumvlp``, ``grew``, ``gait3d`` (each config's SGD, multi-step schedule,
sampler, triplet + BNNeck cross-entropy with scale 16 and label smoothing 0.1, and its data
augmentation in ``[augment]``) and ``quick``.
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

_OPENGAIT = {"channels": (64, 128, 256, 512), "layers": (1, 1, 1, 1), "strides": (1, 2, 2, 1), "maxpool": False,
             "bins": (16,), "embed_dim": 256, "input_size": (64, 44)}

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    "casiab": {**_OPENGAIT, "num_classes": 74},  # gaitbase_da_casiab.yaml
    "oumvlp": {**_OPENGAIT, "num_classes": 5153},  # gaitbase_oumvlp.yaml
    "grew": {**_OPENGAIT, "num_classes": 20000},  # gaitbase_da_grew.yaml
    "gait3d": {**_OPENGAIT, "num_classes": 3000},  # gaitbase_da_gait3d.yaml
    # Reduced for CPU runs on synthetic data; results are labelled with the variant name. It takes
    # 64 x 44 silhouettes and pools them to 32 x 22 itself (feature map 8 x 6: 8 strips).
    "quick": {"channels": (8, 16, 32, 32), "layers": (1, 1, 1, 1), "strides": (1, 2, 2, 1), "maxpool": False,
              "bins": (8,), "embed_dim": 32, "input_pool": 2, "input_size": (64, 44)},
}

METHOD = gaitbench.Method(
    name="gaitbase",
    description="GaitBase: OpenGait's ResNet-like baseline, set pooling, HPP, BNNeck (triplet + CE)",
    paper="Fan, Liang, Shen, Hou, Huang, Yu. OpenGait: Revisiting Gait Recognition Towards Better "
          "Practicality. CVPR 2023",
    build_model="gaitbench_gaitbase.model:GaitBase",  # imported (with torch) when a model is built
    variants=VARIANTS,
    default_variant="casiab",
    recipes=Path(__file__).with_name("recipes"),
    # the shapes of the speed targets (`gaitbench bench`, tests/test_throughput.py): the configs' batches
    throughput_cases=(gaitbench.ThroughputCase.standard("casiab", "casiab", P=8, K=16)
                      + gaitbench.ThroughputCase.standard("oumvlp", "oumvlp", P=32, K=8)),
    input_size=(64, 44),
    class_count_arg="num_classes",
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
