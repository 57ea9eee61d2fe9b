"""GaitSet: gait as an unordered set of silhouettes.

Frame-level CNN (``set_block1..3``) applied to every silhouette, order-free
temporal max ("set pooling") after each stage feeding a set-level global branch
(``gl_block2/3``), horizontal pyramid pooling of both branches and one
independent linear map per part (``Head``).
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from gaitbench.nn import (
    BasicConv2d,
    FrameWise,
    SeparateFCs,
    TemporalMax,
    packing,
    horizontal_pyramid_pool,
    init_parameters,
    prepare_silhouettes,
)

__all__ = ["GaitSet"]


class GaitSet(nn.Module):
    """GaitSet set-based gait embedding network.

    ``forward(sils, lengths=None)``: ``sils`` float ``[n, s, h, w]`` in [0, 1]
    (``[n, s, c, h, w]`` if ``in_channels > 1``), zero-padded to
    ``s = max(lengths)`` when ``lengths`` (``[n]``) is given;
    returns ``{"embeddings": [n, embed_dim, 2 * sum(bins)]}``.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        bins: Sequence[int] = (16, 8, 4, 2, 1),
        embed_dim: int = 256,
        input_pool: int = 1,
        in_channels: int = 1,
    ):
        super().__init__()
        c1, c2, c3 = channels
        self.bins = tuple(int(b) for b in bins)
        self.input_pool = int(input_pool)
        self.in_channels = in_channels
        self.embed_dim = embed_dim

        act = lambda: nn.LeakyReLU(inplace=True)  # noqa: E731
        block1 = nn.Sequential(
            BasicConv2d(in_channels, c1, 5, 1, 2), act(),
            BasicConv2d(c1, c1, 3, 1, 1), act(),
            nn.MaxPool2d(2, 2),
        )
        block2 = nn.Sequential(
            BasicConv2d(c1, c2, 3, 1, 1), act(),
            BasicConv2d(c2, c2, 3, 1, 1), act(),
            nn.MaxPool2d(2, 2),
        )
        block3 = nn.Sequential(
            BasicConv2d(c2, c3, 3, 1, 1), act(),
            BasicConv2d(c3, c3, 3, 1, 1), act(),
        )
        gl2, gl3 = copy.deepcopy(block2), copy.deepcopy(block3)

        self.set_block1 = FrameWise(block1)
        self.set_block2 = FrameWise(block2)
        self.set_block3 = FrameWise(block3)
        self.gl_block2 = gl2
        self.gl_block3 = gl3
        self.set_pooling = TemporalMax(dim=2)
        self.Head = SeparateFCs(2 * sum(self.bins), c3, embed_dim)
        init_parameters(self)

    # -- helpers -----------------------------------------------------------
    def forward(self, sils: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        x = prepare_silhouettes(sils, self.in_channels, self.input_pool, "GaitSet")
        n, s = x.shape[:2]
        pk = packing(lengths, n, s, x.device)  # decided on the host: no device read-back

        # The frame CNN runs on a frame-major [frames, c, h, w] tensor (what each
        # FrameWise block does internally), so no per-block transposes are needed.
        if pk.full:
            frames = x.flatten(0, 1)  # [n*s, c, h, w]

            def pool(f: torch.Tensor) -> torch.Tensor:
                return self.set_pooling(f.reshape(n, s, *f.shape[1:]).transpose(1, 2))
        else:
            # Only real frames go through the CNN; padding is masked in the max.
            frames = pk.gather(x.flatten(0, 1))  # [sum(lengths), c, h, w], sample-major

            def pool(f: torch.Tensor) -> torch.Tensor:
                padded = pk.scatter(f).reshape(n, s, *f.shape[1:])
                return self.set_pooling(padded.transpose(1, 2), pk.lengths)

        f = self.set_block1.forward_block(frames)
        gl = self.gl_block2(pool(f))

        f = self.set_block2.forward_block(f)
        gl = self.gl_block3(gl + pool(f))

        outs = pool(self.set_block3.forward_block(f))
        gl = gl + outs

        feature = torch.cat([horizontal_pyramid_pool(outs, self.bins),
                             horizontal_pyramid_pool(gl, self.bins)], -1)
        return {"embeddings": self.Head(feature)}
