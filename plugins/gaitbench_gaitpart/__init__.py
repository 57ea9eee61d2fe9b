"""GaitPart (Fan et al., CVPR 2020) as a gaitbench method plugin.

Architecture as in the reference implementation (OpenGait ``gaitpart.py``): a frame-level part
feature extractor of plain and focal convolutions, horizontal pooling of every frame into 16 parts
(mean + max), one micro-motion capture module per part (MTB1 / MTB2 templates with channel
attention, temporal max) and separate FCs: embeddings ``[n, C, 16]``.
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    # 1,204,000 parameters (the reference's CASIA-B configuration; paper Table 1: p = 1,1 | 4,4 | 8,8)
    "casiab": {"channels": (32, 64, 128), "halving": (0, 2, 3)},
    # 4,841,248 parameters (the reference's OU-MVLP / GREW configuration: no focal convolution in
    # stage 2, an extra 256-channel stage, 8 strips in stages 3 and 4); embeddings [n, 256, 16]
    "oumvlp": {"channels": (32, 64, 128, 256), "halving": (0, 0, 3, 3)},
    # Reduced for CPU runs on synthetic data: half resolution (32x22), half the channels, 4 / 4
    # strips in stages 2 / 3 and 8 parts; NOT the paper's network: results are labelled with the
    # variant name.
    "quick": {"channels": (16, 32, 64), "halving": (0, 2, 2), "parts": 8, "input_pool": 2},
}


METHOD = gaitbench.Method(
    name="gaitpart",
    description="GaitPart: focal convolutions + per-part micro-motion capture modules (temporal part-based)",
    paper="Fan, Peng, Cao, Liu, Hou, Chi, Huang, Li, He. GaitPart: Temporal Part-based Model for Gait "
          "Recognition. CVPR 2020",
    build_model="gaitbench_gaitpart.model:GaitPart",  # imported (with torch) when a model is built
    variants=VARIANTS,
    default_variant="casiab",
    recipes=Path(__file__).with_name("recipes"),
    # the shapes of the speed targets (`gaitbench bench`, tests/test_throughput.py)
    throughput_cases=gaitbench.ThroughputCase.standard("casiab", "casiab", P=8, K=16),
    input_size=(64, 44),
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
