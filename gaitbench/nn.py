"""Small, method-agnostic neural-network building blocks shared by plugins.

Conventions: a batch of silhouette sequences is laid out as ``[n, c, s, h, w]``
(samples, channels, frames, height, width); part-based features as
``[n, c, p]`` (p = number of horizontal parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

__all__ = [
    "SeparateFCs",
    "SeparateBNNecks",
    "horizontal_pyramid_pool",
    "FrameWise",
    "BasicConv2d",
    "temporal_max",
    "TemporalMax",
    "init_parameters",
    "Packing",
    "packing",
    "host_to_device",
    "read_lengths",
    "parameter_count",
    "to_channels_last",
]


class SeparateFCs(nn.Module):
    """One independent linear map (no bias) per part.

    ``x [n, c_in, p] -> [n, c_out, p]``; the weight ``fc_bin`` has shape
    ``[p, c_in, c_out]``. With ``norm=True`` each output column of ``fc_bin``
    is L2-normalised over the input dimension before use.
    """

    def __init__(self, parts: int, in_channels: int, out_channels: int, norm: bool = False):
        super().__init__()
        self.parts = parts
        self.norm = norm
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts, in_channels, out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.fc_bin, dim=1) if self.norm else self.fc_bin
        # .contiguous(): a strided bmm operand falls back to a very slow CPU kernel.
        out = x.permute(2, 0, 1).contiguous().matmul(w)  # [p, n, c_out]
        return out.permute(1, 2, 0).contiguous()

    def extra_repr(self) -> str:
        p, i, o = self.fc_bin.shape
        return f"parts={p}, in_channels={i}, out_channels={o}, norm={self.norm}"


class SeparateBNNecks(nn.Module):
    """A BNNeck head per part (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
    Re-identification", CVPRW 2019), as OpenGait's ``SeparateBNNecks`` with ``parallel_BN1d``.

    ``x [n, c, p]`` -> ``(feature [n, c, p], logits [n, classes, p])``: one ``BatchNorm1d`` over all
    ``c * p`` values (``bn1d``), then per part a classifier ``fc_bin [p, c, classes]``. With
    ``norm=True`` (the reference's default) the normalised feature and each class column of
    ``fc_bin`` are L2-normalised over ``c``, so the logits are cosine similarities (a loss scales
    them) and the returned feature is the L2-normalised BN output.
    """

    def __init__(self, parts: int, in_channels: int, classes: int, norm: bool = True):
        super().__init__()
        self.parts, self.norm = parts, norm
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts, in_channels, classes)))
        self.bn1d = nn.BatchNorm1d(in_channels * parts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, p = x.shape
        feature = self.bn1d(x.reshape(n, c * p)).reshape(n, c, p).permute(2, 0, 1)  # [p, n, c]
        w = self.fc_bin
        if self.norm:
            feature = F.normalize(feature, dim=-1)
            w = F.normalize(w, dim=1)
        logits = feature.contiguous().matmul(w)  # [p, n, classes]
        return feature.permute(1, 2, 0).contiguous(), logits.permute(1, 2, 0).contiguous()

    def extra_repr(self) -> str:
        p, c, k = self.fc_bin.shape
        return f"parts={p}, in_channels={c}, classes={k}, norm={self.norm}"


def horizontal_pyramid_pool(x: torch.Tensor, bins: Sequence[int]) -> torch.Tensor:
    """Horizontal pyramid pooling: ``[n, c, h, w] -> [n, c, sum(bins)]``.

    For each ``b`` in ``bins`` the map is split into ``b`` equal horizontal
    strips (``h`` must be divisible by ``b``); each strip gives mean + max.
    Parts are concatenated in the order of ``bins``, top strip first.
    """
    n, c = x.shape[:2]
    feats = []
    for b in bins:
        z = x.reshape(n, c, b, -1)
        feats.append(z.mean(-1) + z.amax(-1))
    return torch.cat(feats, -1)


class FrameWise(nn.Module):
    """Apply a 2-D module to every frame: ``[n, c, s, h, w] -> [n, c', s, h', w']``."""

    def __init__(self, forward_block: nn.Module):
        super().__init__()
        self.forward_block = forward_block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, s, h, w = x.shape
        y = self.forward_block(x.transpose(1, 2).reshape(n * s, c, h, w))
        return y.reshape(n, s, *y.shape[1:]).transpose(1, 2).contiguous()


class BasicConv2d(nn.Module):
    """A bias-free ``nn.Conv2d`` (attribute ``conv``); no norm, no activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def temporal_max(x: torch.Tensor, lengths: Optional[torch.Tensor] = None, dim: int = 2) -> torch.Tensor:
    """Max over the frame dimension ``dim``; returns the values only.

    If ``lengths`` (``[n]``, integer) is given, ``x`` is a zero-padded batch and
    frames ``t >= lengths[i]`` of sample ``i`` are ignored (every length must be >= 1).
    """
    if lengths is None:
        return x.amax(dim)
    dim = dim % x.dim()
    n, s = x.shape[0], x.shape[dim]
    valid = torch.arange(s, device=x.device)[None, :] < lengths.to(x.device).reshape(n, 1)
    shape = [1] * x.dim()
    shape[0], shape[dim] = n, s
    return x.masked_fill(~valid.reshape(shape), float("-inf")).amax(dim)


class TemporalMax(nn.Module):
    """Parameter-free module wrapper of :func:`temporal_max`."""

    def __init__(self, dim: int = 2):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return temporal_max(x, lengths, self.dim)


def init_parameters(module: nn.Module) -> nn.Module:
    """Xavier-uniform conv/linear weights with zero biases; BatchNorm weight ~ N(1, 0.02), bias 0.

    Other parameters (e.g. ``SeparateFCs.fc_bin``) keep their own init.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def prepare_silhouettes(sils: torch.Tensor, in_channels: int = 1, input_pool: int = 1,
                        name: str = "model") -> torch.Tensor:
    """Model input as float ``[n, s, c, h, w]``: accepts ``[n, s, h, w]`` (c = 1) or
    ``[n, s, c, h, w]``; average-pools every frame by ``input_pool`` (reduced CPU variants)."""
    if sils.dim() == 4:
        sils = sils.unsqueeze(2)
    if sils.dim() != 5 or sils.shape[2] != in_channels:
        raise ValueError(f"{name} expects sils [n, s, h, w] (or [n, s, {in_channels}, h, w]), "
                         f"got {tuple(sils.shape)}")
    x = sils.float()
    if input_pool > 1:
        n, s = x.shape[:2]
        x = F.avg_pool2d(x.flatten(0, 1), input_pool)
        x = x.reshape(n, s, *x.shape[1:])
    return x


def parameter_count(module: nn.Module) -> int:
    """How many parameters (elements) ``module`` has."""
    return sum(p.numel() for p in module.parameters())


def to_channels_last(model: nn.Module) -> nn.Module:
    """The model's weights in channels-last memory format (``channels_last_3d`` for a network with
    3-D convolutions), which lets cuDNN pick its NHWC / NDHWC kernels."""
    is_3d = any(isinstance(m, nn.Conv3d) for m in model.modules())
    return model.to(memory_format=torch.channels_last_3d if is_3d else torch.channels_last)


def host_to_device(array, device) -> torch.Tensor:
    """A host (numpy) array on ``device``; to CUDA through pinned memory without blocking."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def read_lengths(lengths, n: int, s: int) -> Optional[np.ndarray]:
    """``lengths`` of a zero-padded batch of ``n`` sequences of up to ``s`` frames as a host
    int64 array (``None`` stays ``None``), each checked to lie in ``[1, s]`` (``ValueError``
    otherwise). A CUDA tensor is read back once, which waits for the device: pass host lengths."""
    if lengths is None:
        return None
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu()
    host = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if host.shape != (n,):
        raise ValueError(f"lengths must have one entry per sequence ({n}), got {host.shape[0]}")
    if (host < 1).any() or (host > s).any():
        raise ValueError("lengths must lie in [1, s_max]")
    return host


@dataclass(frozen=True)
class Packing:
    """The layout of a zero-padded batch of ``n`` sequences of up to ``s`` frames, decided on the
    host from the lengths (built by :func:`packing`).

    Every choice a model makes from the lengths (is every sequence full length? which frames are
    real?) is a host value here, and the device only receives index tensors copied without
    blocking: a packed forward never waits for the device to answer a question about its input.

    ``host``: the lengths as numpy ``[n]``, ``None`` when every sequence has all ``s`` frames;
    ``lengths``: the same on the device; ``index``: flat positions ``i * s + t`` of the real
    frames, sequence-major (``[F]`` on the device)."""

    n: int
    s: int
    host: Optional[np.ndarray] = None
    lengths: Optional[torch.Tensor] = None
    index: Optional[torch.Tensor] = None

    @property
    def full(self) -> bool:
        return self.host is None

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``[n * s, ...]`` -> the real frames ``[F, ...]`` (all of them when ``full``)."""
        return x if self.full else x.index_select(0, self.index)

    def scatter(self, frames: torch.Tensor) -> torch.Tensor:
        """The real frames ``[F, ...]`` -> ``[n * s, ...]``, zeros after each sequence's end."""
        if self.full:
            return frames
        out = frames.new_zeros(self.n * self.s, *frames.shape[1:])
        return out.index_copy(0, self.index, frames)


def packing(lengths, n: int, s: int, device) -> Packing:
    """The :class:`Packing` of a batch with ``lengths`` (numpy, list or tensor; ``None``: all
    full), checked and read as :func:`read_lengths` does."""
    host = read_lengths(lengths, n, s)
    if host is None or (host == s).all():
        return Packing(n, s)
    index = np.flatnonzero(np.arange(s)[None, :] < host[:, None])
    return Packing(n, s, host, host_to_device(host, device), host_to_device(index, device))
