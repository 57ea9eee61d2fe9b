"""GaitGL: global and local 3-D convolutional gait features (Lin et al., ICCV 2021 / TPAMI 2022).

Network: a stem, stages of global-local 3-D convolutions (GLConv), each followed by a spatial max
pool, the local temporal aggregation (LTA) or nothing, then temporal max, GeM and separate FCs. The
layout is data (``stem``, ``stages``, ``pools``, ``stem_lta``); module names are those of the
reference implementation (OpenGait ``gaitgl.py``), so its checkpoints map one-to-one:

- ``conv3d``: a ``Sequential`` of ``BasicConv3d`` + LeakyReLU, one per ``stem`` entry (absent with
  ``stem=()``);
- ``LTA``: local temporal aggregation, a (3, 1, 1) 3-D convolution with temporal stride 3 + LeakyReLU,
  either right after the stem (``stem_lta=True``, the ICCV / reference layout) or after the stage
  whose ``pools`` entry is ``"lta"``; there is exactly one;
- ``GLConvA<i>`` for stage ``i`` (0-based) and ``GLConvB<last>`` for the last stage (a bare
  ``GLConv`` when a stage has one layer, else a ``Sequential`` of them); the last layer of the last
  stage concatenates its global and local maps along the height ("GLConv-B") and feeds the head;
- ``MaxPool<i>``: spatial 2x2 max pool after stage ``i`` (``pools[i] == "max"``);
- ``HPP``: GeM pooling over the width of horizontal bins (learnable exponent ``p``, init 6.5); it
  raises a ValueError naming the feature height and the bins when the height does not split into
  them (a silhouette size other than the variant's ``input_size``);
- ``Head0``: separate FCs; with ``bn_head`` also ``Bn`` (BatchNorm1d over channels) and ``Head1``
  (separate FCs to the class logits). The embedding is the BN output (the reference's original
  head); without ``bn_head`` it is the ``Head0`` output (the HID-2020 network: triplet loss only).

Modules are registered in forward order (``self.blocks`` names them), so the state dict follows the
data flow. The default (ICCV, reference) layout is ``conv3d, LTA, GLConvA0, MaxPool0, GLConvA1,
GLConvB2`` (``pools=("max", "none", "none")``, ``stem_lta=True``).

The TPAMI networks (Lin, Zhang, Wang, Li, Yu, "GaitGL: Learning Discriminative Global-Local Feature
Representations for Gait Recognition", TPAMI 2022; the variants are listed in the package docstring):

- CASIA-B (section 4.2): three stages of 1, 1 and 2 GLConvs with 64, 128 and 128 channels, the
  last stage without pooling: ``conv3d, GLConvA0, LTA, GLConvA1, MaxPool1, GLConvB2``
  (``pools=("lta", "max", "none")``, ``stem_lta=False``).
  *Where LTA sits.* Section 3.1 says LTA replaces the first spatial pooling layer (in stage 1),
  section 3.2 the second. We follow section 3.1: its shape equations have stage 1's output at
  ``T_o`` frames and full resolution and stage 2's at half resolution, and in Table 7 "LTA, then
  SP" (mean rank-1 93.6) is the published best while "SP, then LTA" gives 92.2. Section 3.2's
  reading (spatial pooling after stage 1, LTA after stage 2) is ``pools=("max", "lta", "none")``;
  from a recipe: ``--set 'model.pools=["max", "lta", "none"]'``.
- Large (section 4.2; OU-MVLP, GREW, Gait3D): four stages of 2, 2, 2 and 4 GLConvs with 64, 128,
  256 and 512 channels, a spatial pool after stage 3 as well as after stage 1, and LTA in stage 2:
  ``conv3d, GLConvA0, MaxPool0, GLConvA1, LTA, GLConvA2, MaxPool2, GLConvB3``.
- Choices the paper leaves open: one 1 -> 32 stem conv before stage 1 in both networks (the
  preliminary networks, the HID 2020 report's Table 1 and OpenGait's, have one; section 4.2 lists
  only the GLCL stages; ``stem=()`` drops it); the ``Head0`` (embedding) width, not given in the
  paper: 128 for CASIA-B (the last stage's width, as the ICCV network) and 256 for the large
  network (OpenGait's large GaitGL width); GeM bins = the final feature height (one-row bins: 64
  for CASIA-B; for the large network 32 at 64 x 44, 64 at Gait3D's 128 x 88).

The local branch of a ``GLConv`` (``local_conv3d``, one convolution shared by all regions) has two
forms:

- ``local="parts"``: the reference's N-part split: the map is cut into ``parts`` equal horizontal
  strips, each convolved on its own (zero padding at the cuts). The strips are folded into the batch
  dimension, so the whole branch is one convolution call.
- ``local="mask"``: the mask-based local extractor of the TPAMI paper. In training every sample
  draws a pair of complementary binary masks ``M`` and ``1 - M`` over (H, W) (``mask``:
  ``part_horizontal`` / ``part_vertical`` = one random contiguous band of ``floor(drop_ratio * size)``
  rows / columns; ``strip_horizontal`` / ``strip_vertical`` = a random subset of ``round(drop_ratio *
  size)`` rows / columns; ``pixel`` = a random subset of ``round(drop_ratio * H * W)`` pixels; at
  least one row/column/pixel, at most all but one). Masks are drawn afresh per sample, per layer and
  per forward pass, and are shared by all channels and frames. The shared local convolution is
  applied to both masked inputs (folded into the batch: one call) and its activated outputs are
  summed.

  *Restriction* (``mask_restrict=True``, default): each of the two outputs is kept only inside its
  own mask, ``Y = act(conv(X*M))*M + act(conv(X*(1-M)))*(1-M)``, so every output position sees
  only inputs of its own region, exactly as in an N-part split. With fixed top/bottom half masks
  this *is* the 2-part split (tested). The literal sum of the two activated convolutions
  (``mask_restrict=False``) differs from it on the rows next to the cut, where each half's
  convolution leaks into the other half. (Without an activation per branch, the literal sum would
  equal ``conv(X)`` by linearity.)

  *Evaluation* (``mask_eval``): masks are a training-time device. ``"unmasked"`` (default, as the
  GaitMask report says: "during the test stage we directly input the original feature map into the
  mask feature extraction") is one region covering the whole map, i.e. ``act(local_conv(X))``;
  ``"parts"`` is the deterministic ``parts``-strip split instead. Either way evaluation is
  deterministic.

Short sequences: fewer than 3 frames are repeated as in the reference (x3 for 1 frame, x2 for 2).

Variable-length batches (``forward(sils, lengths)``, zero-padded to the longest): every temporal
convolution here is bias-free with zero temporal padding, so a sequence's frames equal those of the
sequence run alone as long as its frames past its own end are zero whenever a temporal convolution
reads them. The model therefore zeroes each sample's invalid frames after every convolution layer
(one broadcast multiply per layer, no per-length regrouping), tracks the valid length through LTA
wherever it sits (``L -> L // 3``, the same windows as alone; the masks after it use the new
length) and masks invalid frames out of the temporal max. The BN head then runs on the whole
batch. Short sequences in a packed batch are repeated per sample.

Speed: on CPU the 3-D maps are kept in ``channels_last_3d`` memory format; oneDNN's backward pass
of a 3x3x3 convolution with few channels is several times faster in it (measured 0.44 s -> 0.09 s
for an 8 -> 16 channel layer of the quick variant). Results are the same up to float rounding.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from gaitbench.nn import SeparateFCs, host_to_device, init_parameters, prepare_silhouettes, read_lengths, temporal_max

__all__ = ["BasicConv3d", "GLConv", "GeMHPP", "GaitGL", "complementary_masks", "MASK_TYPES", "POOL_TYPES"]

MASK_TYPES = ("part_horizontal", "part_vertical", "strip_horizontal", "strip_vertical", "pixel")
LOCAL_TYPES = ("parts", "mask")
MASK_EVAL = ("unmasked", "parts")
POOL_TYPES = ("lta", "max", "none")  # what may follow a stage


def _act() -> nn.Module:
    return nn.LeakyReLU(inplace=True)


class BasicConv3d(nn.Module):
    """A bias-free ``nn.Conv3d`` (attribute ``conv3d``); no norm, no activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(3, 3, 3), stride=(1, 1, 1),
                 padding=(1, 1, 1)):
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(x)


def complementary_masks(kind: str, n: int, h: int, w: int, drop_ratio: float,
                        device=None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One random binary mask ``M`` ``[n, 1, 1, h, w]`` per sample; its complement is ``1 - M``.

    ``M`` marks the dropped region (see the module docstring for the five kinds).
    """
    if kind not in MASK_TYPES:
        raise ValueError(f"mask must be one of {MASK_TYPES}, got {kind!r}")
    rand = lambda *shape: torch.rand(*shape, device=device, generator=generator)  # noqa: E731
    if kind in ("part_horizontal", "part_vertical", "strip_horizontal", "strip_vertical"):
        size = h if kind.endswith("horizontal") else w
        if kind.startswith("part"):
            k = min(max(int(drop_ratio * size), 1), size - 1)
            start = (rand(n) * (size - k + 1)).long().clamp_(max=size - k)  # uniform in [0, size - k]
            pos = torch.arange(size, device=device)
            sel = (pos[None] >= start[:, None]) & (pos[None] < start[:, None] + k)  # [n, size]
        else:
            k = min(max(int(round(drop_ratio * size)), 1), size - 1)
            sel = rand(n, size).argsort(1).argsort(1) < k  # k distinct random rows/columns
        sel = sel.float()
        m = sel[:, :, None].expand(n, h, w) if kind.endswith("horizontal") else sel[:, None, :].expand(n, h, w)
    else:
        k = min(max(int(round(drop_ratio * h * w)), 1), h * w - 1)
        m = (rand(n, h * w).argsort(1).argsort(1) < k).float().reshape(n, h, w)
    return m.reshape(n, 1, 1, h, w).contiguous()


class GLConv(nn.Module):
    """Global-local 3-D convolution layer.

    ``fm_sign=False`` ("A"): ``act(global(X)) + local(X)``; ``fm_sign=True`` ("B"):
    ``cat([act(global(X)), local(X)], height)`` (twice the height). ``local(X)`` is activated.
    """

    def __init__(self, in_channels: int, out_channels: int, parts: int = 2, fm_sign: bool = False,
                 local: str = "parts", mask: str = "strip_vertical", drop_ratio: float = 0.5,
                 mask_eval: str = "unmasked", mask_restrict: bool = True):
        super().__init__()
        if local not in LOCAL_TYPES:
            raise ValueError(f"local must be one of {LOCAL_TYPES}, got {local!r}")
        if local == "mask":
            if mask not in MASK_TYPES:
                raise ValueError(f"mask must be one of {MASK_TYPES}, got {mask!r}")
            if mask_eval not in MASK_EVAL:
                raise ValueError(f"mask_eval must be one of {MASK_EVAL}, got {mask_eval!r}")
            if not 0.0 < drop_ratio < 1.0:
                raise ValueError(f"drop_ratio must lie in (0, 1), got {drop_ratio}")
        if parts < 1:
            raise ValueError("parts must be >= 1")
        self.parts, self.fm_sign, self.local = int(parts), bool(fm_sign), local
        self.mask, self.drop_ratio = mask, float(drop_ratio)
        self.mask_eval, self.mask_restrict = mask_eval, bool(mask_restrict)
        self.global_conv3d = BasicConv3d(in_channels, out_channels)
        self.local_conv3d = BasicConv3d(in_channels, out_channels)
        self.act = _act()

    def extra_repr(self) -> str:
        s = f"fm_sign={self.fm_sign}, local={self.local!r}, parts={self.parts}"
        if self.local == "mask":
            s += (f", mask={self.mask!r}, drop_ratio={self.drop_ratio}, mask_eval={self.mask_eval!r}, "
                  f"mask_restrict={self.mask_restrict}")
        return s

    # -- local branch ------------------------------------------------------------------------
    def local_parts(self, x: torch.Tensor, parts: Optional[int] = None) -> torch.Tensor:
        """The N-part split with the strips folded into the batch (one conv call), activated."""
        parts = self.parts if parts is None else parts
        n, c, t, h, w = x.shape
        if parts == 1:
            return self.act(self.local_conv3d(x))
        if h % parts:
            raise ValueError(f"GLConv: feature height {h} is not divisible into {parts} parts")
        hp = h // parts
        z = x.reshape(n, c, t, parts, hp, w).permute(0, 3, 1, 2, 4, 5).reshape(n * parts, c, t, hp, w)
        y = self.local_conv3d(z)
        c2 = y.shape[1]
        y = y.reshape(n, parts, c2, t, hp, w).permute(0, 2, 3, 1, 4, 5).reshape(n, c2, t, h, w)
        return self.act(y)

    def local_masked(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The pair of complementary masks ``m`` / ``1 - m`` (``[n, 1, 1, h, w]``), activated."""
        n = x.shape[0]
        y = self.local_conv3d(torch.cat([x * m, x * (1.0 - m)], 0))
        if self.mask_restrict:
            return self.act(y[:n] * m + y[n:] * (1.0 - m))
        return F.leaky_relu(y[:n]) + F.leaky_relu(y[n:])  # not in place: both are views of y

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.local == "parts":
            return self.local_parts(x)
        if not self.training:
            if self.mask_eval == "parts":
                return self.local_parts(x)
            return self.act(self.local_conv3d(x))
        n, _, _, h, w = x.shape
        m = complementary_masks(self.mask, n, h, w, self.drop_ratio, device=x.device).to(x.dtype)
        return self.local_masked(x, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.act(self.global_conv3d(x))
        loc = self.local_features(x)
        if self.fm_sign:
            return torch.cat([g, loc], 3)
        return g + loc


class GeMHPP(nn.Module):
    """Generalized-mean pooling over the width of horizontal bins: ``[n, c, h, w] -> [n, c, sum(bins)]``.

    Per bin ``b`` the map is viewed as ``b`` strips of ``h / b`` rows; each strip gives
    ``mean(clamp(x, eps) ** p) ** (1 / p)``; ``p`` is one learnable scalar (init 6.5).
    ``input_size`` (the network's expected silhouette size) only serves the error message.
    """

    def __init__(self, bins: Sequence[int] = (64,), p: float = 6.5, eps: float = 1e-6,
                 input_size: Optional[Sequence[int]] = None):
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        self.eps = eps
        self.input_size = tuple(input_size) if input_size is not None else None
        self.p = nn.Parameter(torch.ones(1) * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h = x.shape[:3]
        feats = []
        for b in self.bins:
            if h % b:
                # a reshape would not fail when h * w happens to divide: it would mix rows silently
                size = f" ({self.input_size[0]} x {self.input_size[1]})" if self.input_size else ""
                raise ValueError(f"GeMHPP: feature height {h} is not divisible by the bin count {b} "
                                 f"(bins {self.bins}); the network expects its variant's input size{size}")
            z = x.reshape(n, c, b, -1).clamp(min=self.eps).pow(self.p).mean(-1)
            feats.append(z.pow(1.0 / self.p))
        return torch.cat(feats, -1)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, eps={self.eps}"


def _stage(layers: Sequence[nn.Module]) -> nn.Module:
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def _lta(channels: int) -> nn.Module:
    """Local temporal aggregation: a (3, 1, 1) conv with temporal stride 3, channels unchanged."""
    return nn.Sequential(BasicConv3d(channels, channels, kernel_size=(3, 1, 1), stride=(3, 1, 1),
                                     padding=(0, 0, 0)), _act())


class GaitGL(nn.Module):
    """GaitGL gait embedding network (see the module docstring).

    ``forward(sils, lengths=None)``: ``sils`` float ``[n, s, h, w]`` in [0, 1], zero-padded to
    ``s = max(lengths)`` when ``lengths`` (``[n]``) is given. Returns ``{"embeddings": [n, C, P]}``
    plus ``"logits": [n, num_classes, P]`` with ``bn_head``.

    Architecture arguments (lists are accepted for every sequence, as recipes pass them):

    - ``stem``: channels of the initial 3x3x3 convs (``conv3d``); may be empty unless ``stem_lta``;
    - ``stages``: one non-empty sequence per stage of its GLConvs' output widths; the last layer of
      the last stage is GLConv-B;
    - ``pools``: what follows each stage, ``"max"`` (spatial 2x2 max pool), ``"lta"`` or ``"none"``;
      the last entry must be ``"none"`` (the GLConv-B map feeds the head directly);
    - ``stem_lta``: LTA right after the stem (the ICCV / reference layout); exactly one LTA overall;
    - ``parts`` (strips of the N-part split), ``bins`` (GeM bins), ``embed_dim`` (Head0 output;
      default = last stage width), ``input_pool`` (average-pool the silhouettes first);
    - ``input_size``: the (height, width) the variant expects, kept as ``self.input_size`` for the
      harness; not checked in ``forward``.

    The defaults are the ICCV CASIA-B network: A0 | max pool | A1 | B2 with LTA after the stem.
    """

    def __init__(
        self,
        stem: Sequence[int] = (32,),
        stages: Sequence[Sequence[int]] = ((64,), (128,), (128,)),
        parts: int = 8,
        bins: Sequence[int] = (64,),
        embed_dim: Optional[int] = None,
        num_classes: int = 74,
        bn_head: bool = True,
        input_pool: int = 1,
        local: str = "parts",
        mask: str = "strip_vertical",
        drop_ratio: float = 0.5,
        mask_eval: str = "unmasked",
        mask_restrict: bool = True,
        gem_p: float = 6.5,
        pools: Sequence[str] = ("max", "none", "none"),
        stem_lta: bool = True,
        input_size: Sequence[int] = (64, 44),
    ):
        super().__init__()
        stem, stages, pools = self._check_layout(stem, stages, pools, stem_lta)
        if len(input_size) != 2 or any(int(v) < 1 for v in input_size):
            raise ValueError(f"input_size must be (height, width), got {input_size!r}")
        self.stem, self.stages, self.pools, self.stem_lta = stem, stages, pools, bool(stem_lta)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_pool = int(input_pool)
        self.bn_head = bool(bn_head)
        self.num_classes = int(num_classes)
        self.local = local
        gl_kwargs = dict(parts=parts, local=local, mask=mask, drop_ratio=drop_ratio, mask_eval=mask_eval,
                         mask_restrict=mask_restrict)

        # Modules are registered in forward order (state_dict order = data flow); ``blocks`` names them.
        blocks: list[str] = []
        c = 1
        if stem:
            layers: list[nn.Module] = []
            for co in stem:
                layers += [BasicConv3d(c, co), _act()]
                c = co
            self.conv3d = nn.Sequential(*layers)
            blocks.append("conv3d")
        if self.stem_lta:
            self.LTA = _lta(c)
            blocks.append("LTA")
        last = len(stages) - 1
        for si, widths in enumerate(stages):
            mods = []
            for li, co in enumerate(widths):
                mods.append(GLConv(c, co, fm_sign=si == last and li == len(widths) - 1, **gl_kwargs))
                c = co
            name = f"GLConvB{si}" if si == last else f"GLConvA{si}"
            self.add_module(name, _stage(mods))
            blocks.append(name)
            if pools[si] == "max":
                self.add_module(f"MaxPool{si}", nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2)))
                blocks.append(f"MaxPool{si}")
            elif pools[si] == "lta":
                self.LTA = _lta(c)
                blocks.append("LTA")
        self.blocks = tuple(blocks)

        self.HPP = GeMHPP(bins, p=gem_p, input_size=self.input_size)
        p = sum(self.HPP.bins)
        embed_dim = int(embed_dim or c)
        self.Head0 = SeparateFCs(p, c, embed_dim)
        if self.bn_head:
            self.Bn = nn.BatchNorm1d(embed_dim)
            self.Head1 = SeparateFCs(p, embed_dim, self.num_classes)
        init_parameters(self)

    @staticmethod
    def _check_layout(stem, stages, pools, stem_lta):
        """Validate the layout arguments; return them as tuples."""
        if isinstance(pools, str) or isinstance(stages, (str, int)):
            raise ValueError("stages must be a sequence of width sequences and pools a sequence of names")
        stem = tuple(int(c) for c in stem)
        stages = tuple(tuple(int(c) for c in s) for s in stages)
        pools = tuple(pools)
        if not stages or any(len(s) < 1 for s in stages):
            raise ValueError(f"stages must be one or more non-empty sequences of GLConv widths, got {stages}")
        if any(c < 1 for c in stem + sum(stages, ())):
            raise ValueError(f"channel counts must be positive: stem {stem}, stages {stages}")
        if len(pools) != len(stages):
            raise ValueError(f"pools needs one entry per stage: {len(stages)} stages, {len(pools)} pools {pools}")
        bad = [p for p in pools if p not in POOL_TYPES]
        if bad:
            raise ValueError(f"pools entries must be one of {POOL_TYPES}, got {bad}")
        n_lta = int(bool(stem_lta)) + pools.count("lta")
        if n_lta != 1:
            raise ValueError(f"the network has exactly one LTA, got {n_lta} (stem_lta={bool(stem_lta)}, "
                             f"pools={pools})")
        if pools[-1] != "none":
            raise ValueError(f"the last stage ends with GLConv-B, whose height-concatenated map feeds the "
                             f"head: pools[-1] must be 'none', got {pools[-1]!r}")
        if stem_lta and not stem:
            raise ValueError("stem must have at least one conv when LTA follows it (stem_lta=True)")
        return stem, stages, pools

    # -- helpers -------------------------------------------------------------------------------
    def _prepare(self, sils: torch.Tensor) -> torch.Tensor:
        """-> float ``[n, s, h, w]`` (input-pooled); accepts ``[n, s, h, w]`` or ``[n, s, 1, h, w]``."""
        return prepare_silhouettes(sils, 1, self.input_pool, type(self).__name__)[:, :, 0]

    @staticmethod
    def _time_mask(lengths: Optional[torch.Tensor], t: int, x: torch.Tensor) -> Optional[torch.Tensor]:
        if lengths is None:
            return None
        valid = torch.arange(t, device=x.device)[None, :] < lengths[:, None]
        return valid.to(x.dtype).reshape(-1, 1, t, 1, 1)

    @staticmethod
    def _run(module: nn.Module, x: torch.Tensor, tmask: Optional[torch.Tensor]) -> torch.Tensor:
        """Apply a layer or a Sequential; zero invalid frames after every convolution layer."""
        children = list(module) if isinstance(module, nn.Sequential) else [module]
        for m in children:
            x = m(x)
            if tmask is not None and isinstance(m, (BasicConv3d, GLConv)):
                x = x * tmask.to(x.dtype)
        return x

    def _aggregate(self, x: torch.Tensor, lens: Optional[torch.Tensor]):
        """LTA with the length bookkeeping: returns the map, the new lengths and their time mask."""
        x = self.LTA(x)
        if lens is None:
            return x, None, None
        lens = lens // 3  # LTA windows [3j, 3j + 3) lie inside the sequence iff j < L // 3
        tmask = self._time_mask(lens, x.shape[2], x)
        return x * tmask.to(x.dtype), lens, tmask

    def _layout(self, x: torch.Tensor, lengths) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Apply the short-sequence repetition; return ``[n, 1, T, h, w]`` and the valid lengths
        (``None`` when every sample uses all ``T`` frames)."""
        n, s = x.shape[:2]
        host = read_lengths(lengths, n, s)  # decided on the host: no device read-back
        if host is not None and (host == host[0]).all():
            x, host = x[:, : int(host[0])], None
            s = x.shape[1]
        if host is None:
            if s < 3:
                x = x.repeat(1, 3 if s == 1 else 2, 1, 1)
            return x.unsqueeze(1), None
        eff = np.where(host == 1, 3, np.where(host == 2, 4, host))
        t = max(s, int(eff.max()))
        if (host < 3).any() or t > s:
            idx = host_to_device(np.arange(t)[None, :] % host[:, None], x.device)  # frame t -> t mod L
            x = x[torch.arange(n, device=x.device)[:, None], idx]
        eff = host_to_device(eff, x.device)
        x = x.unsqueeze(1) * self._time_mask(eff, t, x)
        return x, eff

    # -- forward -------------------------------------------------------------------------------
    def forward(self, sils: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        x, lens = self._layout(self._prepare(sils), lengths)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last_3d)

        # stem, stages and their pooling in forward order; LTA shortens the valid lengths
        tmask = self._time_mask(lens, x.shape[2], x)
        for name in self.blocks:
            if name == "LTA":
                x, lens, tmask = self._aggregate(x, lens)
            else:
                x = self._run(getattr(self, name), x, tmask)

        x = temporal_max(x, lens)  # [n, c, h, w]
        gait = self.Head0(self.HPP(x))  # [n, embed, p]
        if not self.bn_head:
            return {"embeddings": gait}
        bnft = self.Bn(gait)
        return {"embeddings": bnft, "logits": self.Head1(bnft)}
