"""GaitMask (Lin, Zhang, Sun, Qin, Wan; HID 2021 report "Bag of Tricks and GaitMask Network").

The network is GaitGL's 3-D layout (``gaitbench_gaitgl.model.GaitGL``, whose building blocks
this module reuses: ``BasicConv3d``, ``GLConv`` with the mask-based local branch, ``GeMHPP``), set
to the report's Table 2 and its mask feature extraction:

    First Conv 1->32 (3,3,3); LTA 32->32 (3,1,1), temporal stride 3;
    GMCL-A1 32->64; max pool (1,2,2); GMCL-A2 64->128; GMCL-A3 128->128; GMCL-A4 128->128;
    GMCL-B1 128->128 (global and mask maps concatenated along the height);
    temporal max; GeM; separate FCs. Separate (part-wise) triplet loss only: no BN, no classifier.

A GMCL ("global and mask convolution layer") is a ``GLConv`` with ``local="mask"``: a global 3-D
conv plus a mask branch ``Y_m = c(X * M_d0) + c(X * M_d1)`` with one shared conv ``c`` and a pair of
complementary masks made from a random contiguous horizontal band of ratio ``d`` (the TPAMI
paper's "part-level horizontal" mask). Module names follow GaitGL's (``conv3d``, ``LTA``,
``GLConvA0``, ``MaxPool0``, ``GLConvA1`` = GMCL-A2..A4, ``GLConvB2`` = GMCL-B1, ``HPP``, ``Head0``),
so the state dict is identical to GaitGL's ``hid2020`` variant (4,259,681 parameters) and weights
move between the two one-to-one.

Choices the report leaves open, and what this implementation does:

1. Dropping ratio ``d``: not given. 0.5, the middle of the range the GaitGL TPAMI paper tests for
   part-level masks (0.1-0.9, accuracy insensitive to it), and the value that matches Table 2's
   "N-part: 2" column best (two complementary regions of half the height on average).
2. Band geometry: ``floor(d * H)`` consecutive rows (at least 1, at most H - 1), the start drawn
   uniformly so that the band lies inside the map (no wrap-around). Masks cover (H, W) and are the
   same for every channel and frame (M in R^{H x W}, as written).
3. Mask sampling: a fresh pair per sample, per layer and per forward pass (the report only says
   "randomly").
4. Each branch's output is kept inside its own mask before the sum (``mask_restrict=True``):
   ``Y_m = act(c(X*M_d0))*M_d0 + act(c(X*M_d1))*M_d1``. Read literally, ``c(X*M_d0) + c(X*M_d1)``
   equals ``c(X)`` by linearity and the mask branch would be a second global conv; the restricted
   form makes every output see only its own region (an N-part split with a random cut), as the
   TPAMI paper's masks intend. ``mask_restrict=False`` gives the literal sum with the activation
   applied to each branch.
5. Activations: not stated; LeakyReLU (slope 0.01) on each branch before the A-sum or B-concat, as
   GaitGL's GLConv.
6. Test time: "we directly input the original feature map into the mask feature extraction": the
   mask branch is ``act(c(X))`` (``mask_eval="unmasked"``, default); ``mask_eval="parts"`` uses a
   fixed 2-part split instead.
7. GeM: 64 one-row bins (the B-layer output height for 64x44 input), ``p`` initialised to 6.5 and
   learned, as GaitGL.
8. Separate-FC output width: not given; 128 (the last layer's width), as GaitGL's ``hid2020``.
9. Training clips: contiguous ("ordered") windows, as for every GaitGL-family 3-D network; the
   report gives only their length (64 frames on CASIA-B/E, 30 on OU-MVLP).
10. Short sequences and packed variable-length batches: as GaitGL (x3 / x2 repetition below 3
    frames; exact per-sample results in zero-padded batches).
11. Weight decay: not stated; 0.
"""

from __future__ import annotations

from typing import Optional, Sequence

from gaitbench_gaitgl.model import GaitGL

__all__ = ["GaitMask"]


class GaitMask(GaitGL):
    """GaitMask embedding network: ``forward(sils, lengths=None) -> {"embeddings": [n, C, P]}``.

    Defaults are the report's Table 2 network; see the module docstring for its open choices.
    """

    def __init__(
        self,
        stem: Sequence[int] = (32,),
        stages: Sequence[Sequence[int]] = ((64,), (128, 128, 128), (128,)),
        bins: Sequence[int] = (64,),
        embed_dim: Optional[int] = 128,
        input_pool: int = 1,
        mask: str = "part_horizontal",
        drop_ratio: float = 0.5,
        mask_eval: str = "unmasked",
        mask_restrict: bool = True,
        parts: int = 2,
        gem_p: float = 6.5,
    ):
        super().__init__(stem=stem, stages=stages, parts=parts, bins=bins, embed_dim=embed_dim, bn_head=False,
                         input_pool=input_pool, local="mask", mask=mask, drop_ratio=drop_ratio,
                         mask_eval=mask_eval, mask_restrict=mask_restrict, gem_p=gem_p)
