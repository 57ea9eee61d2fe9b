"""DeepGaitV2 (Fan, Yu, Wang, Yu, "Exploring Deep Models for Practical Gait Recognition", arXiv
2303.03301): a deep residual network with 2-D, pseudo-3-D or 3-D blocks.

The network follows OpenGait's ``opengait/modeling/models/deepgaitv2.py`` and its blocks
``BasicBlock2D``, ``BasicBlockP3D``, ``BasicBlock3D`` in ``opengait/modeling/modules.py``
(commit 0efafd4), written here from that description:

- ``layer0``: per frame, a bias-free 3x3 conv ``in -> c0``, BatchNorm2d, ReLU;
- ``layer1``: per frame, ``layers[0]`` 2-D basic residual blocks of width ``c0``;
- ``layer2..4``: ``layers[1..3]`` blocks of the chosen ``mode`` with widths ``c1..c3`` and spatial
  strides 2, 2, 1 (the first block of a stage strides and, when the stride or the width changes,
  has a 1x1 conv + BN shortcut):
  - ``2d``: 2-D basic blocks per frame (2-D shortcut);
  - ``p3d``: a 3x3 conv + BN + ReLU per frame, then ``relu(out + BN3d(conv3d_{3x1x1}(out)))``
    (a temporal 3x1x1 shortcut, ``shortcut3d``/``sbn``), a 3x3 conv + BN per frame, the residual
    (3-D 1x1x1 conv + BN3d shortcut when needed) and ReLU;
  - ``3d``: 3x3x3 convs (stride 1 in time) with BatchNorm3d, 3-D 1x1x1 shortcut;
- temporal max, horizontal pooling into ``bins`` strips (mean + max; 16 in the reference),
  separate FCs ``c3 -> c2`` and a BNNeck per part (BatchNorm1d, cosine classifier).

Outputs: ``embeddings`` = the FCs output (the BNNeck input), used by the triplet loss and, as in
every OpenGait DeepGaitV2 config (``use_emb2`` unset), by evaluation; with ``use_emb2=True`` the
evaluation embedding is the BNNeck output (normalised BN feature) as OpenGait's option does, and
training still uses the FCs output. ``logits``: the BNNeck's cosine scores.

Parameter and module names are OpenGait's (``layer0.forward_block.0.weight``,
``layer2.0.conv1.forward_block.0.weight``, ``layer2.0.shortcut3d.weight``, ``FCs.fc_bin``,
``BNNecks.bn1d.*``...), so its checkpoints load one-to-one.

Variable-length batches: the temporal convolutions (P3D's 3x1x1 shortcut, the 3-D blocks' 3x3x3)
pad time with zeros, so a sequence alone sees zeros past its last frame. In a padded batch the
frames past a sequence's end are set to zero before every temporal convolution and left out of
the temporal max, so in eval mode each sequence embeds as it does alone. (BatchNorm in training
mode sees the whole batch, as in the reference, whose training clips have one length.)
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn

from gaitbench.nn import (
    FrameWise,
    SeparateBNNecks,
    SeparateFCs,
    horizontal_pyramid_pool,
    init_parameters,
    packing,
    prepare_silhouettes,
    temporal_max,
)

__all__ = ["BasicBlock2D", "BasicBlockP3D", "BasicBlock3D", "DeepGaitV2", "MODES"]

MODES = ("2d", "p3d", "3d")


def _conv3x3(cin: int, cout: int, stride=1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class _Masked:
    """Zeroes the frames past each sequence's end of ``[n, c, s, h, w]`` maps (``mask`` ``[n, 1,
    s, 1, 1]``, ``None`` for a batch of full-length sequences)."""

    @staticmethod
    def apply(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return x if mask is None else x * mask


class BasicBlock2D(nn.Module):
    """2-D residual block (``conv1``, ``bn1``, ``conv2``, ``bn2``, optional ``downsample``) on
    ``[frames, c, h, w]``."""

    def __init__(self, inplanes: int, planes: int, stride=1, downsample: Optional[nn.Module] = None):
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
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class BasicBlockP3D(nn.Module):
    """Pseudo-3-D residual block on ``[n, c, s, h, w]``: 2-D convs per frame with a temporal
    3x1x1 convolution shortcut after the first."""

    def __init__(self, inplanes: int, planes: int, stride=1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = FrameWise(nn.Sequential(_conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes),
                                             nn.ReLU(inplace=True)))
        self.conv2 = FrameWise(nn.Sequential(_conv3x3(planes, planes), nn.BatchNorm2d(planes)))
        self.shortcut3d = nn.Conv3d(planes, planes, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False)
        self.sbn = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = _Masked.apply(self.conv1(x), mask)
        out = self.relu(out + self.sbn(self.shortcut3d(out)))
        out = self.conv2(out)
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class BasicBlock3D(nn.Module):
    """3-D residual block on ``[n, c, s, h, w]``: two 3x3x3 convs with BatchNorm3d."""

    def __init__(self, inplanes: int, planes: int, stride=(1, 1, 1), downsample: Optional[nn.Module] = None):
        super().__init__()
        stride = tuple(stride) if isinstance(stride, (tuple, list)) else (1, stride, stride)
        if stride[0] not in (1, 2, 3):
            raise ValueError(f"temporal stride must be 1, 2 or 3, got {stride[0]}")
        tp = 1 if stride[0] in (1, 2) else 0  # the reference's temporal padding rule
        self.conv1 = nn.Conv3d(inplanes, planes, (3, 3, 3), stride=stride, padding=(tp, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, (3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(_Masked.apply(x, mask))))
        out = self.bn2(self.conv2(_Masked.apply(out, mask)))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _Stage(nn.Sequential):
    """A stage of P3D / 3-D blocks; passes the padding mask to each block."""

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        for block in self:
            x = block(x, mask)
        return x


BLOCKS = {"2d": BasicBlock2D, "p3d": BasicBlockP3D, "3d": BasicBlock3D}


class DeepGaitV2(nn.Module):
    """DeepGaitV2 (OpenGait ``DeepGaitV2``).

    ``forward(sils, lengths=None)``: ``sils`` float ``[n, s, h, w]`` in [0, 1], zero-padded to
    ``s = max(lengths)`` when ``lengths`` (``[n]``) is given. Returns ``{"embeddings": [n, c2,
    sum(bins)], "logits": [n, num_classes, sum(bins)]}``.
    """

    def __init__(self, mode: str = "p3d", channels: Sequence[int] = (64, 128, 256, 512),
                 layers: Sequence[int] = (1, 1, 1, 1), bins: Sequence[int] = (16,), num_classes: int = 74,
                 in_channels: int = 1, use_emb2: bool = False, input_pool: int = 1,
                 input_size: Sequence[int] = (64, 44)):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if len(channels) != 4 or len(layers) != 4:
            raise ValueError("channels and layers need 4 entries each (one per stage)")
        self.mode, self.use_emb2 = mode, bool(use_emb2)
        self.bins = tuple(int(b) for b in bins)
        self.in_channels, self.input_pool = int(in_channels), int(input_pool)
        self.input_size = tuple(int(v) for v in input_size)
        strides = [(1, 1), (1, 2, 2), (1, 2, 2), (1, 1, 1)] if mode == "3d" else [(1, 1), (2, 2), (2, 2), (1, 1)]
        self.inplanes = channels[0]
        self.layer0 = FrameWise(nn.Sequential(_conv3x3(in_channels, channels[0]), nn.BatchNorm2d(channels[0]),
                                              nn.ReLU(inplace=True)))
        self.layer1 = FrameWise(self._make_layer("2d", channels[0], strides[0], layers[0]))
        for i in (1, 2, 3):
            stage = self._make_layer(mode, channels[i], strides[i], layers[i])
            setattr(self, f"layer{i + 1}", FrameWise(stage) if mode == "2d" else stage)
        parts = sum(self.bins)
        self.FCs = SeparateFCs(parts, channels[3], channels[2])
        self.BNNecks = SeparateBNNecks(parts, channels[2], num_classes)
        del self.inplanes
        init_parameters(self)

    def _make_layer(self, mode: str, planes: int, stride, blocks: int) -> nn.Module:
        downsample = None
        if max(stride) > 1 or self.inplanes != planes:
            if mode == "2d":
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=tuple(stride), bias=False),
                                           nn.BatchNorm2d(planes))
            else:  # p3d strides only in space; 3d's stride is (t, h, w)
                s3 = (1, *stride) if mode == "p3d" else tuple(stride)
                downsample = nn.Sequential(nn.Conv3d(self.inplanes, planes, 1, stride=s3, bias=False),
                                           nn.BatchNorm3d(planes))
        block = BLOCKS[mode]
        rest = (1, 1, 1) if mode == "3d" else (1, 1)
        layers = [block(self.inplanes, planes, tuple(stride), downsample)]
        self.inplanes = planes
        layers += [block(planes, planes, rest) for _ in range(1, blocks)]
        return nn.Sequential(*layers) if mode == "2d" else _Stage(*layers)

    def forward(self, sils: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        x = prepare_silhouettes(sils, self.in_channels, self.input_pool, "DeepGaitV2")  # [n, s, c, h, w]
        n, s = x.shape[:2]
        pk = packing(lengths, n, s, x.device)  # decided on the host
        mask = None
        if not pk.full:
            mask = (torch.arange(s, device=x.device)[None, :] < pk.lengths.reshape(n, 1)).to(x.dtype)
            mask = mask.reshape(n, 1, s, 1, 1)
        x = x.transpose(1, 2)  # [n, c, s, h, w]
        x = self.layer1(self.layer0(x))
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x) if self.mode == "2d" else layer(x, mask)
        outs = temporal_max(x, None if pk.full else pk.lengths)  # [n, c, h, w]
        feat = horizontal_pyramid_pool(outs, self.bins)
        embed = self.FCs(feat)
        bn_feat, logits = self.BNNecks(embed)
        if self.use_emb2 and not self.training:
            return {"embeddings": bn_feat, "logits": logits}
        return {"embeddings": embed, "logits": logits}
