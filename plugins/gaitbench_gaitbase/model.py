"""GaitBase: OpenGait's ResNet-like baseline (Fan et al., "OpenGait: Revisiting Gait Recognition
Towards Better Practicality", CVPR 2023).

The network follows OpenGait's ``opengait/modeling/models/baseline.py`` with the ``ResNet9``
backbone of ``opengait/modeling/backbones/resnet.py`` (commit 0efafd4), written here without
torchvision:

- per frame (``Backbone``, a frame-wise wrapper): a bias-free 3x3 conv ``in -> c0``, BatchNorm,
  ReLU (an optional 3x3/2 max pool, off in every GaitBase config), then four stages of
  torchvision-style basic residual blocks (3x3 conv, BN, ReLU, 3x3 conv, BN, identity or
  1x1-conv + BN shortcut when the stride or the width changes, ReLU) with ``layers`` blocks,
  ``channels`` widths and ``strides``;
- temporal max over the frames (set pooling), horizontal pyramid pooling (mean + max of ``bins``
  strips), separate FCs ``c3 -> embed_dim`` per part (``FCs``) and a BNNeck per part
  (``BNNecks``: BatchNorm1d over all parts, cosine classifier).

Outputs: ``embeddings`` = the FCs output, the BNNeck *input*, used by the triplet loss and by
evaluation as OpenGait's Baseline does (``embed = embed_1``); ``logits`` = the BNNeck's cosine
scores ``[n, classes, parts]`` (every config scales them by 16 in the cross-entropy).

Module and parameter names are OpenGait's (``Backbone.forward_block.conv1.conv.weight``,
``Backbone.forward_block.layer2.0.downsample.0.weight``, ``FCs.fc_bin``, ``BNNecks.bn1d.*``...),
so its checkpoints load one-to-one.

Variable-length batches: the backbone is per frame, so only the real frames of a padded batch go
through it and the temporal max ignores the padding; in eval mode a sequence embeds as it does
alone. (In training mode BatchNorm statistics are over the frames in the batch, as in the
reference, whose training clips all have the same length.)
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn

from gaitbench.nn import (
    BasicConv2d,
    FrameWise,
    SeparateBNNecks,
    SeparateFCs,
    horizontal_pyramid_pool,
    init_parameters,
    packing,
    prepare_silhouettes,
    temporal_max,
)

__all__ = ["BasicBlock", "ResNet9", "GaitBase"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """A residual block with two 3x3 convolutions (the layout of torchvision's ``BasicBlock``:
    ``conv1``, ``bn1``, ``conv2``, ``bn2``, optional ``downsample``)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Module:
    """``blocks`` basic blocks; the first carries the stride and, when the stride or the width
    changes, a 1x1-conv + BN shortcut. Zero blocks is the identity (as the reference allows)."""
    if blocks < 1:
        return nn.Identity()
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet9(nn.Module):
    """The per-frame backbone: ``conv1`` (3x3, bias-free), ``bn1``, ReLU, optional max pool,
    ``layer1..4``. ``[f, in, h, w] -> [f, channels[3], h', w']``."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), layers: Sequence[int] = (1, 2, 2, 1),
                 strides: Sequence[int] = (1, 2, 2, 1), maxpool: bool = True, in_channels: int = 1):
        super().__init__()
        if len(channels) != 4 or len(layers) != 4 or len(strides) != 4:
            raise ValueError("channels, layers and strides need 4 entries each (one per stage)")
        self.maxpool_flag = bool(maxpool)
        self.conv1 = BasicConv2d(in_channels, channels[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = channels[0]
        for i, (planes, blocks, stride) in enumerate(zip(channels, layers, strides), start=1):
            setattr(self, f"layer{i}", _stage(inplanes, planes, int(blocks), int(stride)))
            if blocks >= 1:
                inplanes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool_flag:
            x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class GaitBase(nn.Module):
    """GaitBase (OpenGait ``Baseline`` with ``ResNet9``).

    ``forward(sils, lengths=None)``: ``sils`` float ``[n, s, h, w]`` in [0, 1], zero-padded to
    ``s = max(lengths)`` when ``lengths`` (``[n]``) is given. Returns ``{"embeddings": [n,
    embed_dim, sum(bins)], "logits": [n, num_classes, sum(bins)]}``.
    """

    def __init__(self, channels: Sequence[int] = (64, 128, 256, 512), layers: Sequence[int] = (1, 1, 1, 1),
                 strides: Sequence[int] = (1, 2, 2, 1), maxpool: bool = False, bins: Sequence[int] = (16,),
                 embed_dim: int = 256, num_classes: int = 74, in_channels: int = 1, input_pool: int = 1,
                 input_size: Sequence[int] = (64, 44)):
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        self.in_channels, self.input_pool = int(in_channels), int(input_pool)
        self.input_size = tuple(int(v) for v in input_size)
        parts = sum(self.bins)
        self.Backbone = FrameWise(ResNet9(channels, layers, strides, maxpool, in_channels))
        self.FCs = SeparateFCs(parts, channels[3], embed_dim)
        self.BNNecks = SeparateBNNecks(parts, embed_dim, num_classes)
        init_parameters(self)

    def forward(self, sils: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        x = prepare_silhouettes(sils, self.in_channels, self.input_pool, "GaitBase")  # [n, s, c, h, w]
        n, s = x.shape[:2]
        pk = packing(lengths, n, s, x.device)  # decided on the host
        f = self.Backbone.forward_block(pk.gather(x.flatten(0, 1)))  # real frames only
        f = pk.scatter(f).reshape(n, s, *f.shape[1:]).transpose(1, 2)  # [n, c, s, h, w]
        outs = temporal_max(f, None if pk.full else pk.lengths)  # [n, c, h, w]
        feat = horizontal_pyramid_pool(outs, self.bins)  # [n, c, p]
        embed = self.FCs(feat)
        _, logits = self.BNNecks(embed)
        return {"embeddings": embed, "logits": logits}
