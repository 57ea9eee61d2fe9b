"""GaitSet (Chao et al., AAAI 2019 / TPAMI 2021) as a gaitbench method plugin.

Architecture as in the reference implementation (OpenGait ``gaitset.py``): frame-level CNN,
set pooling by max over frames, the multilayer global pipeline, horizontal pyramid mapping
(16, 8, 4, 2, 1 bins, mean + max, both branches: 62 parts) and separate FCs to 256 channels.
"""

from __future__ import annotations

from pathlib import Path

import gaitbench

# Variants as data (no torch import here, so listing methods stays fast).
VARIANTS = {
    # 2,594,592 parameters (the reference's CASIA-B configuration)
    "casiab": {"channels": (32, 64, 128)},
    # 6,313,536 parameters (the reference's OU-MVLP / GREW configuration)
    "oumvlp": {"channels": (64, 128, 256)},
    # Reduced for CPU runs on synthetic data: half resolution (32x22), a quarter of the channels,
    # 4 pyramid levels (30 parts), 128-d embeddings; 158,216 parameters. NOT the paper's network:
    # results are labelled with the variant name.
    "quick": {"channels": (8, 16, 32), "input_pool": 2, "bins": (8, 4, 2, 1), "embed_dim": 128},
}


METHOD = gaitbench.Method(
    name="gaitset",
    description="GaitSet: gait as a set of silhouettes, set pooling + horizontal pyramid mapping (baseline)",
    paper="Chao, He, Zhang, Feng. GaitSet: Regarding Gait as a Set for Cross-View Gait Recognition. AAAI 2019",
    build_model="gaitbench_gaitset.model:GaitSet",  # imported (with torch) when a model is built
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
