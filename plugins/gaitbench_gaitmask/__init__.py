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

Recipes: ``hid2021`` (the report's CASIA-B/CASIA-E training settings, the paper recipe of the
``hid`` protocol; it fine-tunes from ``hid2021-oumvlp``, the report's OU-MVLP pre-training, with
``--init-from``) and ``quick``.

The HID 2021 entry itself is a *pipeline*, not one model: GaitGL and GaitMask embeddings
concatenated, then query expansion and k-reciprocal re-ranking. ``pipelines/hid2021.toml``
(``METHOD.extra["pipelines"]``) writes it down as data, and ``gaitbench evaluate --pipeline
hid2021 --embeddings gaitgl.npz --embeddings gaitmask.npz`` runs it with the built-in stages.
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

# The HID 2021 entry is a pipeline over GaitGL's and GaitMask's embeddings (fusion, query
# expansion, re-ranking): a file gaitbench's `evaluate --pipeline hid2021` runs.
PIPELINES = {"hid2021": Path(__file__).with_name("pipelines") / "hid2021.toml"}


METHOD = gaitbench.Method(
    name="gaitmask",
    description="GaitMask: GaitGL-style 3-D network with random complementary-mask local branches (triplet only)",
    paper="Lin, Zhang, Sun, Qin, Wan. Bag of Tricks and GaitMask Network for Gait Recognition. HID 2021 "
          "competition report (first place)",
    build_model="gaitbench_gaitmask.model:GaitMask",  # imported (with torch) when a model is built
    variants=VARIANTS,
    default_variant="hid2021",
    recipes=Path(__file__).with_name("recipes"),
    input_size=(64, 44),
    # the shapes of the speed targets (`gaitbench bench`, tests/test_throughput.py)
    throughput_cases=gaitbench.ThroughputCase.standard("hid2021", "hid2021", P=12, K=8, frames=64)[::2],
    pipelines=PIPELINES,
)


@gaitbench.hookimpl
def register_methods(register):
    register(METHOD)
