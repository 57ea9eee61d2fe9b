"""GaitPart: temporal part-based gait recognition.

Frame-level part feature extractor (FPFE: plain and focal convolutions, applied to every
silhouette), horizontal pooling of every frame into ``parts`` strips (mean + max), one
micro-motion capture module (MCM) per strip, with independent parameters, aggregating the
strip's feature sequence into one vector, and one independent linear map per strip (``Head``).

Module and parameter names follow the reference implementation (OpenGait ``gaitpart.py``), so its
state dicts load one-to-one: ``Backbone.forward_block.feature.<i>.conv.weight``, ``Head.fc_bin``,
``TFA.pooling_func.conv1d3x1.<part>.{0,2}.conv.weight`` and
``TFA.pooling_func.conv1d3x3.<part>.{0,2}.conv.weight``.

Speed: the 16 per-part 1-D conv nets of the MCM are evaluated as grouped ``conv1d`` calls whose
weights are stacked from the per-part parameters at every forward (cheap: a few small copies), and
focal convolutions fold their strips into the batch dimension (one conv call per layer).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from gaitbench.nn import (BasicConv2d, FrameWise, Packing, SeparateFCs, horizontal_pyramid_pool, init_parameters, packing,
                          prepare_silhouettes, temporal_max)

__all__ = ["GaitPart", "FocalConv2d", "BasicConv1d", "PartFeatureExtractor", "HorizontalPooling",
           "MicroMotionCapture", "PackedSequenceAggregator"]


class FocalConv2d(nn.Module):
    """Focal convolution: the map is split into ``2**halving`` equal horizontal strips and the same
    bias-free convolution (attribute ``conv``) is applied to every strip separately (zero padding
    at every strip border); the results are stacked back along the height.

    The strips are folded into the batch dimension, so this is one convolution call.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, halving: int = 0):
        super().__init__()
        self.halving = int(halving)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.halving == 0:
            return self.conv(x)
        n, c, h, w = x.shape
        k = 2 ** self.halving
        if h % k:
            raise ValueError(f"FocalConv2d: height {h} is not divisible into {k} strips")
        z = x.reshape(n, c, k, h // k, w).transpose(1, 2).reshape(n * k, c, h // k, w)
        y = self.conv(z)  # [n*k, c', h', w']
        c2, h2, w2 = y.shape[1:]
        return y.reshape(n, k, c2, h2, w2).transpose(1, 2).reshape(n, c2, k * h2, w2)

    def extra_repr(self) -> str:
        return f"halving={self.halving} (strips={2 ** self.halving})"


class BasicConv1d(nn.Module):
    """A bias-free ``nn.Conv1d`` (attribute ``conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PartFeatureExtractor(nn.Module):
    """The frame-level CNN (``feature``: an ``nn.Sequential``), per frame ``[F, c, h, w]``.

    Stage ``i`` is two convolutions with ``channels[i]`` outputs, each followed by a LeakyReLU;
    a convolution is plain when ``halving[i] == 0`` and focal with ``2**halving[i]`` strips
    otherwise. The very first convolution is 5x5 (padding 2), all others 3x3 (padding 1). The first
    ``pooled_stages`` stages end with a 2x2 max pooling.
    """

    def __init__(self, channels: Sequence[int], halving: Sequence[int], in_channels: int = 1,
                 pooled_stages: int = 2):
        super().__init__()
        if len(channels) != len(halving):
            raise ValueError("channels and halving need one entry per stage")
        layers = []
        c_in = in_channels
        for i, (c, hv) in enumerate(zip(channels, halving)):
            for j in range(2):
                k, pad = (5, 2) if i == 0 and j == 0 else (3, 1)
                conv = BasicConv2d(c_in, c, k, 1, pad) if hv == 0 else FocalConv2d(c_in, c, k, 1, pad, halving=hv)
                layers += [conv, nn.LeakyReLU(inplace=True)]
                c_in = c
            if i < pooled_stages:
                layers.append(nn.MaxPool2d(2, 2))
        self.feature = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature(x)


class HorizontalPooling(nn.Module):
    """Per frame: ``[F, c, h, w] -> [F, c, parts]``, mean + max over each of ``parts`` equal
    horizontal strips (top strip first). Parameter-free."""

    def __init__(self, parts: int = 16):
        super().__init__()
        self.parts = int(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return horizontal_pyramid_pool(x, (self.parts,))

    def extra_repr(self) -> str:
        return f"parts={self.parts}"


class MicroMotionCapture(nn.Module):
    """The temporal feature aggregator: one micro-motion capture module per part.

    For part ``p`` with feature sequence ``x`` (``[C, s]``):

    - MTB1: template ``avgpool1d(3, pad 1, padding counted) + maxpool1d(3, pad 1)`` re-weighted by
      ``sigmoid(conv1d3x1[p](x))``, ``conv1d3x1[p] = Conv1d(C, C/sq, 3, pad 1), LeakyReLU,
      Conv1d(C/sq, C, 1)``;
    - MTB2: template over a window of 5 (pad 2), weights ``conv1d3x3[p] = Conv1d(C, C/sq, 3, pad 1),
      LeakyReLU, Conv1d(C/sq, C, 3, pad 1)``;
    - temporal pooling: max over frames of MTB1 + MTB2.

    The per-part nets are stored part by part (the reference's layout) and evaluated as two
    grouped ``conv1d`` calls: the first convolutions of both MTBs of all parts at once
    (``groups=parts``), then all second convolutions (``groups=2*parts``; the 1-wide kernel of MTB1
    is zero-padded to width 3, which gives exactly the same values).

    ``forward(x, lengths=None)``: ``x`` ``[n, parts, C, s]``; with ``lengths``, frames
    ``t >= lengths[i]`` of sample ``i`` must be zero and are treated exactly as the zero / -inf
    padding the sequence would get alone. Returns ``[n, C, parts]``.
    """

    def __init__(self, in_channels: int, squeeze: int = 4, parts: int = 16):
        super().__init__()
        if in_channels % squeeze:
            raise ValueError(f"in_channels {in_channels} is not divisible by squeeze {squeeze}")
        self.parts = int(parts)
        self.in_channels = int(in_channels)
        self.hidden = in_channels // squeeze
        c, h = self.in_channels, self.hidden
        act = lambda: nn.LeakyReLU(inplace=True)  # noqa: E731
        self.conv1d3x1 = nn.ModuleList(
            nn.Sequential(BasicConv1d(c, h, 3, padding=1), act(), BasicConv1d(h, c, 1)) for _ in range(parts))
        self.conv1d3x3 = nn.ModuleList(
            nn.Sequential(BasicConv1d(c, h, 3, padding=1), act(), BasicConv1d(h, c, 3, padding=1))
            for _ in range(parts))

    def grouped_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w1 [parts*2*hidden, C, 3], w2 [parts*2*C, hidden, 3])``, grouped part-major then
        MTB1 before MTB2 (differentiable copies of the per-part parameters)."""
        p, c, h = self.parts, self.in_channels, self.hidden
        a1 = torch.stack([m[0].conv.weight for m in self.conv1d3x1])  # [p, h, c, 3]
        b1 = torch.stack([m[0].conv.weight for m in self.conv1d3x3])
        a2 = F.pad(torch.stack([m[2].conv.weight for m in self.conv1d3x1]), (1, 1))  # [p, c, h, 1] -> 3
        b2 = torch.stack([m[2].conv.weight for m in self.conv1d3x3])  # [p, c, h, 3]
        w1 = torch.stack([a1, b1], 1).reshape(p * 2 * h, c, 3)
        w2 = torch.stack([a2, b2], 1).reshape(p * 2 * c, h, 3)
        return w1, w2

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        n, p, c, s = x.shape
        if p != self.parts or c != self.in_channels:
            raise ValueError(f"MicroMotionCapture expects [n, {self.parts}, {self.in_channels}, s], got {tuple(x.shape)}")
        flat = x.reshape(n, p * c, s)
        w1, w2 = self.grouped_weights()
        w1, w2 = w1.to(flat.dtype), w2.to(flat.dtype)
        hidden = F.leaky_relu(F.conv1d(flat, w1, padding=1, groups=p))  # [n, p*2*h, s]
        if lengths is None:
            max3, max5 = F.max_pool1d(flat, 3, 1, 1), F.max_pool1d(flat, 5, 1, 2)
        else:
            valid = (torch.arange(s, device=x.device)[None, :] < lengths.reshape(n, 1)).unsqueeze(1)  # [n, 1, s]
            # The second convolutions must see zeros after a sequence's end, as they would alone.
            hidden = hidden * valid.to(hidden.dtype)
            # Max pooling pads with -inf: so must the frames after a sequence's end. Outputs at
            # padding positions (-inf when the whole window is padding) are set to 0 so that no
            # inf reaches the products below (0 * inf would make NaN gradients); the final max
            # ignores them anyway.
            pool_in = flat.masked_fill(~valid, float("-inf"))
            max3 = torch.where(valid, F.max_pool1d(pool_in, 3, 1, 1), 0.0)
            max5 = torch.where(valid, F.max_pool1d(pool_in, 5, 1, 2), 0.0)
        scores = torch.sigmoid(F.conv1d(hidden, w2, padding=1, groups=2 * p)).view(n, p, 2, c, s)
        # `flat` is zero after every sequence's end: the average pools count it as padding (the
        # reference's count_include_pad=True), exactly as for the sequence alone.
        t3 = F.avg_pool1d(flat, 3, 1, 1) + max3
        t5 = F.avg_pool1d(flat, 5, 1, 2) + max5
        feat = t3.view(n, p, c, s) * scores[:, :, 0] + t5.view(n, p, c, s) * scores[:, :, 1]
        return temporal_max(feat, lengths, dim=3).transpose(1, 2)  # [n, c, p]

    def extra_repr(self) -> str:
        return f"parts={self.parts}, in_channels={self.in_channels}, hidden={self.hidden}"


class PackedSequenceAggregator(nn.Module):
    """Packs per-frame part features into a zero-padded batch and applies ``pooling_func``.

    ``forward(frames, packing)``: ``frames`` ``[F, C, P]`` are the real frames of all sequences,
    sample-major, as laid out by ``packing`` (:class:`gaitbench.nn.Packing`); returns
    ``pooling_func([n, P, C, s], lengths)``, zeros after each sequence's end.
    """

    def __init__(self, pooling_func: nn.Module):
        super().__init__()
        self.pooling_func = pooling_func

    def forward(self, frames: torch.Tensor, packing: Packing) -> torch.Tensor:
        seq = packing.scatter(frames).reshape(packing.n, packing.s, *frames.shape[1:])
        return self.pooling_func(seq.permute(0, 3, 2, 1), packing.lengths)  # [n, P, C, s]


class GaitPart(nn.Module):
    """GaitPart gait embedding network.

    ``forward(sils, lengths=None)``: ``sils`` float ``[n, s, h, w]`` in [0, 1] (``[n, s, c, h, w]`` if
    ``in_channels > 1``), zero-padded to ``s = max(lengths)`` when ``lengths`` (``[n]``) is given;
    each sequence's result equals that of the sequence alone. Returns
    ``{"embeddings": [n, embed_dim, parts]}``.

    Defaults are the CASIA-B configuration (1,204,000 parameters).
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        halving: Sequence[int] = (0, 2, 3),
        parts: int = 16,
        squeeze: int = 4,
        embed_dim: Optional[int] = None,
        input_pool: int = 1,
        in_channels: int = 1,
    ):
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.halving = tuple(int(h) for h in halving)
        self.parts = int(parts)
        self.input_pool = int(input_pool)
        self.in_channels = int(in_channels)
        c_out = self.channels[-1]
        self.embed_dim = int(embed_dim) if embed_dim else c_out

        # Registration order as in the reference: Backbone, Head, HPP, TFA.
        self.Backbone = FrameWise(PartFeatureExtractor(self.channels, self.halving, self.in_channels))
        self.Head = SeparateFCs(self.parts, c_out, self.embed_dim)
        self.HPP = HorizontalPooling(self.parts)
        self.TFA = PackedSequenceAggregator(MicroMotionCapture(c_out, squeeze, self.parts))
        init_parameters(self)

    def forward(self, sils: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        x = prepare_silhouettes(sils, self.in_channels, self.input_pool, "GaitPart")
        n, s = x.shape[:2]
        pk = packing(lengths, n, s, x.device)  # decided on the host: no device read-back
        # Only real frames go through the frame CNN (sample-major).
        frames = pk.gather(x.flatten(0, 1))
        f = self.HPP(self.Backbone.forward_block(frames))  # [F, C, P]
        f = self.TFA(f, pk)  # [n, C, P]
        return {"embeddings": self.Head(f)}
