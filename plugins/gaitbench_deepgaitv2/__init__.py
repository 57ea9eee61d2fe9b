"""DeepGaitV2 (Fan, Yu, Wang, Yu, "Exploring Deep Models for Practical Gait Recognition", arXiv
2303.03301) as a gaitbench method plugin.

``model.DeepGaitV2`` builds OpenGait's network (``opengait/modeling/models/deepgaitv2.py`` at
commit 0efafd4): a 2-D stem and stage 1, then three stages of 2-D, pseudo-3-D (P3D) or 3-D
residual blocks (``mode``), widths 64 / 128 / 256 / 512, temporal max, 16 horizontal strips,
separate FCs 512 -> 256 and a BNNeck per part. The embedding evaluated is the FCs output (the
BNNeck input), as every OpenGait DeepGaitV2 config leaves ``use_emb2`` unset; ``--set
model.use_emb2=true`` evaluates the BNNeck output instead.

Variants follow OpenGait's configs (``configs/deepgaitv2/DeepGaitV2_<dataset>.yaml``), all of
which use P3D blocks; the 2-D and 3-D block types are the same networks with ``mode`` changed (the
paper's DeepGaitV2-2D / -3D; OpenGait's model zoo lists DeepGaitV2-3D results for OU-MVLP and
GREW but ships no config for them), e.g. ``--set model.mode=3d``. Parameter counts (asserted by
the tests, equal to OpenGait's model built from the configs, and with ``mode`` changed):

- ``casiab``: P3D, 1 / 1 / 1 / 1 blocks, 74 classes: 8,339,392 parameters (2-D blocks: 7,305,408;
  3-D: 16,595,136); embeddings ``[n, 256, 16]``, logits ``[n, 74, 16]``.
- ``oumvlp``: P3D, 1 / 1 / 1 / 1 blocks, 5153 classes: 29,142,976 parameters.
- ``grew``: P3D, 1 / 4 / 4 / 1 blocks, 20,000 classes: 95,124,160 parameters (3-D: 111,487,680).
- ``gait3d``: P3D, 1 / 4 / 4 / 1 blocks, 3000 classes: 25,492,160 parameters.
- ``quick``: reduced for 2 CPU cores on synthetic data (P3D, 64 x 44 input average-pooled to 32 x
  22 inside, channels 8 / 16 / 32 / 32, 8 strips); NOT the paper's network.

Recipes: ``casiab``, ``oumvlp``, ``grew``, ``gait3d`` (each config's SGD, multi-step schedule,
ordered clips of 30 frames from windows of 34, triplet + BNNeck cross-entropy with scale 16 and
label smoothing 0.1, and the configs' augmentation: perspective, flip and rotation, each with
probability 0.2), and ``quick``.
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

_OPENGAIT = {"mode": "p3d", "channels": (64, 128, 256, 512), "bins": (16,), "input_size": (64, 44)}

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    "casiab": {**_OPENGAIT, "layers": (1, 1, 1, 1), "num_classes": 74},  # DeepGaitV2_casiab.yaml
    "oumvlp": {**_OPENGAIT, "layers": (1, 1, 1, 1), "num_classes": 5153},  # DeepGaitV2_oumvlp.yaml
    "grew": {**_OPENGAIT, "layers": (1, 4, 4, 1), "num_classes": 20000},  # DeepGaitV2_grew.yaml
    "gait3d": {**_OPENGAIT, "layers": (1, 4, 4, 1), "num_classes": 3000},  # DeepGaitV2_gait3d.yaml
    # Reduced for CPU runs on synthetic data; results are labelled with the variant name.
    "quick": {"mode": "p3d", "channels": (8, 16, 32, 32), "layers": (1, 1, 1, 1), "bins": (8,), "input_pool": 2,
              "input_size": (64, 44)},
}

METHOD = gaitbench.Method(
    name="deepgaitv2",
    description="DeepGaitV2: deep residual network with 2-D / P3D / 3-D blocks, HPP, BNNeck (triplet + CE)",
    paper="Fan, Yu, Wang, Yu. Exploring Deep Models for Practical Gait Recognition. arXiv 2303.03301 (2023)",
    build_model="gaitbench_deepgaitv2.model:DeepGaitV2",  # imported (with torch) when a model is built
    variants=VARIANTS,
    default_variant="casiab",
    recipes=Path(__file__).with_name("recipes"),
    throughput_cases=(gaitbench.ThroughputCase.standard("casiab", "casiab", P=8, K=16)
                      + gaitbench.ThroughputCase.standard("gait3d", "gait3d", P=32, K=4)),
    input_size=(64, 44),
    class_count_arg="num_classes",
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
