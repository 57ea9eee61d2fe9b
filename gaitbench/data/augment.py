"""Training-time data augmentation of silhouette clips, as recipe data (``[augment]``).

The transforms are those OpenGait's configs use for GaitBase and DeepGaitV2
(``opengait/data/transform.py`` at commit 0efafd4), with its probabilities and parameters. Each
acts on one training clip ``[frames, h, w]`` and draws its parameters once per clip, so every
frame of a clip gets the same flip, angle, warp or erased box (the reference applies its
transforms per sequence array):

- ``flip``: horizontal mirror with probability ``prob`` (reference default 0.5).
- ``rotate``: rotation by an angle uniform in ``[-degree, degree]`` degrees (default 10) with
  probability ``prob`` (0.5), bilinear, zeros outside. The reference passes the centre as
  ``(h // 2, w // 2)`` to OpenCV, which reads it as (x, y): the rotation centre is x = h // 2,
  y = w // 2 (x = 32, y = 22 for 64 x 44 frames), not the frame centre. Trained models depend
  on it, so it is kept.
- ``perspective``: with probability ``prob`` (0.5), the four corners of the frame are moved to
  random columns within ``int(w // 44) * 10`` pixels of the sides (the top and bottom rows stay)
  and the frame is warped so that this quadrilateral fills it (a horizontal stretch that varies
  with height), bilinear, zeros outside. It runs on the stored frame *before* the side cut, as
  every reference config lists it before ``BaseSilCuttingTransform``.
- ``erasing``: random erasing (Zhong et al., AAAI 2020) with probability ``prob`` (0.5): up to
  100 tries to draw a box of area ``uniform(sl, sh)`` (0.05, 0.2) of the frame and aspect ratio
  ``uniform(r1, 1 / r1)`` (0.3) that fits; the first that fits is set to 0 in every frame.

Every transform but ``perspective`` runs after the side cut, in the order of ``transforms``.

Determinism: the parameters of a clip are drawn from a generator seeded with the clip's own seed
(the sampler's per-clip seed, which also picks its frames), so a run's augmentations depend only
on ``--seed``: the same with any number of loader workers, and the same after ``--resume``.
Augmentation happens in the training sampler only; evaluation never sees it.

Rotations and warps are computed in float and rounded back to the clip's 8-bit values (an error
below 0.5 / 255, as OpenCV's own 8-bit warps in the reference's perspective transform).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, did_you_mean

TRANSFORMS = ("flip", "rotate", "perspective", "erasing")


def _check_prob(prob: float, where: str) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"{where}.prob: expected a probability in [0, 1], got {prob}")


@dataclass
class FlipConfig:
    prob: float = 0.5

    def validate(self, where: str):
        _check_prob(self.prob, where)


@dataclass
class RotateConfig:
    prob: float = 0.5
    degree: float = 10.0  # the angle is uniform in [-degree, degree]

    def validate(self, where: str):
        _check_prob(self.prob, where)
        if not 0.0 <= self.degree <= 180.0:
            raise ConfigError(f"{where}.degree: expected 0 to 180 degrees, got {self.degree}")


@dataclass
class PerspectiveConfig:
    prob: float = 0.5

    def validate(self, where: str):
        _check_prob(self.prob, where)


@dataclass
class ErasingConfig:
    prob: float = 0.5
    sl: float = 0.05  # smallest erased area, as a fraction of the frame
    sh: float = 0.2  # largest
    r1: float = 0.3  # aspect ratios (h / w) lie in [r1, 1 / r1]

    def validate(self, where: str):
        _check_prob(self.prob, where)
        if not 0.0 < self.sl <= self.sh < 1.0:
            raise ConfigError(f"{where}: expected 0 < sl <= sh < 1, got sl={self.sl}, sh={self.sh}")
        if not 0.0 < self.r1 <= 1.0:
            raise ConfigError(f"{where}.r1: expected 0 < r1 <= 1, got {self.r1}")


@dataclass
class AugmentConfig:
    """The recipe's ``[augment]`` section: ``transforms`` names the transforms applied (none by
    default), in order; ``[augment.<name>]`` tables set their parameters."""

    transforms: list[str] = field(default_factory=list)
    flip: FlipConfig = field(default_factory=FlipConfig)
    rotate: RotateConfig = field(default_factory=RotateConfig)
    perspective: PerspectiveConfig = field(default_factory=PerspectiveConfig)
    erasing: ErasingConfig = field(default_factory=ErasingConfig)

    def validate(self, where: str):
        for name in self.transforms:
            if name not in TRANSFORMS:
                raise ConfigError(f"{where}.transforms: " + did_you_mean(name, TRANSFORMS, "transform"))
        if len(set(self.transforms)) != len(self.transforms):
            raise ConfigError(f"{where}.transforms: each transform may be listed once, got {self.transforms}")
        if "perspective" in self.transforms and self.transforms[0] != "perspective":
            raise ConfigError(f"{where}.transforms: 'perspective' acts on the frame before the side cut, so it "
                              f"must come first, got {self.transforms}")

    @property
    def active(self) -> bool:
        return bool(self.transforms)


# --------------------------------------------------------------------------- geometry


def rotation_matrix(center_x: float, center_y: float, degree: float) -> np.ndarray:
    """The 3x3 forward map of a rotation by ``degree`` (counter-clockwise on screen, y pointing
    down) about (center_x, center_y): OpenCV's ``getRotationMatrix2D`` convention."""
    a, b = math.cos(math.radians(degree)), math.sin(math.radians(degree))
    return np.array([[a, b, (1 - a) * center_x - b * center_y],
                     [-b, a, b * center_x + (1 - a) * center_y],
                     [0.0, 0.0, 1.0]])


def perspective_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography (``h33 = 1``) that maps the four points ``src`` to ``dst`` (``[4, 2]``)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def warp(clip: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """``clip`` ``[frames, h, w]`` warped by the 3x3 map ``forward`` (source pixel -> destination
    pixel, pixel centres at integer coordinates): each destination pixel takes the bilinear
    interpolation of the source at ``forward^-1`` of its position, zero outside the frame; the
    same warp for every frame. Returns float32."""
    frames, h, w = clip.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src = np.linalg.inv(forward) @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    sx, sy = src[0] / src[2], src[1] / src[2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    flat = clip.reshape(frames, h * w).astype(np.float32)
    out = np.zeros((frames, h * w), np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            weight = (wx * wy * inside).astype(np.float32)
            index = np.where(inside, yi * w + xi, 0)
            out += flat[:, index] * weight
    return out.reshape(frames, h, w)


def _to_dtype(values: np.ndarray, dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


# --------------------------------------------------------------------------- the transforms


def flip(clip: np.ndarray, rng: np.random.Generator, cfg: FlipConfig) -> np.ndarray:
    if rng.uniform() >= cfg.prob:
        return clip
    return clip[..., ::-1]


def rotate(clip: np.ndarray, rng: np.random.Generator, cfg: RotateConfig) -> np.ndarray:
    if rng.uniform() >= cfg.prob:
        return clip
    h, w = clip.shape[-2:]
    degree = rng.uniform(-cfg.degree, cfg.degree)
    # the reference's centre argument (h // 2, w // 2), read by OpenCV as (x, y)
    return _to_dtype(warp(clip, rotation_matrix(h // 2, w // 2, degree)), clip.dtype)


def perspective(clip: np.ndarray, rng: np.random.Generator, cfg: PerspectiveConfig) -> np.ndarray:
    if rng.uniform() >= cfg.prob:
        return clip
    h, w = clip.shape[-2:]
    cut = int(w // 44) * 10
    if cut < 1:  # frames narrower than 44 px: no margin to move the corners in
        return clip
    left, right = (0, cut), (w - cut, w)
    tl, tr = rng.integers(*left), rng.integers(*right)
    bl, br = rng.integers(*left), rng.integers(*right)
    src = np.array([[tl, 0], [tr, 0], [br, h], [bl, h]], float)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    return _to_dtype(warp(clip, perspective_matrix(src, dst)), clip.dtype)


def erasing(clip: np.ndarray, rng: np.random.Generator, cfg: ErasingConfig) -> np.ndarray:
    if rng.uniform() >= cfg.prob:
        return clip
    h, w = clip.shape[-2:]
    area = h * w
    for _ in range(100):
        target = rng.uniform(cfg.sl, cfg.sh) * area
        aspect = rng.uniform(cfg.r1, 1 / cfg.r1)
        eh, ew = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if ew < w and eh < h:
            y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            clip = clip.copy()
            clip[:, y:y + eh, x:x + ew] = 0
            return clip
    return clip


_APPLY = {"flip": flip, "rotate": rotate, "perspective": perspective, "erasing": erasing}


class Augmenter:
    """Applies a recipe's ``[augment]`` section to training clips. Picklable (loader workers get
    a copy) and stateless: a clip's augmentation is a function of the clip and its seed."""

    # mixed into each clip's seed so the augmentation stream differs from the frame-position one
    STREAM = 0xA6

    def __init__(self, config: AugmentConfig):
        self.config = config

    def rng(self, seed: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([int(seed), self.STREAM]))

    def before_cut(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The transforms that act on the stored frame (``perspective``)."""
        if self.config.transforms[:1] == ["perspective"]:
            clip = perspective(clip, rng, self.config.perspective)
        return clip

    def after_cut(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for name in self.config.transforms:
            if name != "perspective":
                clip = _APPLY[name](clip, rng, getattr(self.config, name))
        return clip
