"""Tests of the procedural walker that renders the synthetic CASIA-B-like dataset."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gaitbench.data import walker
from gaitbench.data.walker import FRAME_HEIGHT, FRAME_WIDTH, WALKER_VERSION, render_sequence, subject_params

SUBJECTS = range(1, 9)


def render(subject=1, condition="nm", view=90.0, sequence=1, frames=30, frame_step=1.0, seed=0):
    return render_sequence(subject, condition, view, seed=seed, sequence=sequence, frames=frames,
                           frame_step=frame_step)


def gei(*args, **kwargs) -> np.ndarray:
    """Gait energy image: the mean silhouette over a sequence, in [0, 1]."""
    return render(*args, **kwargs).astype(np.float64).mean(0) / 255.0


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum()))


def median_column(frame: np.ndarray) -> int:
    """The column where the cumulative column mass first reaches half the total."""
    cum = np.cumsum(frame.astype(np.float64).sum(0))
    return int(np.argmax(cum >= 0.5 * cum[-1]))


def row_width(frames: np.ndarray) -> np.ndarray:
    """Per-frame horizontal extent (columns) of the pixels at least half covered."""
    cols = (frames >= 128).any(axis=1)
    return np.array([np.ptp(np.flatnonzero(c)) + 1 if c.any() else 0 for c in cols], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# format
# ---------------------------------------------------------------------------------------------

def test_constants():
    assert (FRAME_HEIGHT, FRAME_WIDTH) == (64, 44)
    assert isinstance(WALKER_VERSION, str) and WALKER_VERSION


# The sha256 of the golden renders below, recorded per WALKER_VERSION. Whoever changes the
# walker's bytes on purpose bumps WALKER_VERSION (cached datasets and fingerprints depend on it)
# and records the new hash here; a refactoring must leave the hash of the current version alone.
GOLDEN_SHA256 = {"1": "e484ea9e96f04014f598cfdada9d90e80b7f07bc3a2e67166a67188823565b57"}

# One short walk per code path: each accessory (shoulder bag plain and across the body, backpack,
# handbag in either hand), the coat, azimuths all round, another elevation and dataset seed,
# 128-high frames, both occlusions, and sub- and super-frame steps.
GOLDEN_RENDERS = [
    dict(subject=1, condition="nm", view_deg=90.0, sequence=1),
    dict(subject=5, condition="bg", view_deg=18.0, sequence=1),  # shoulder bag
    dict(subject=5, condition="bg", view_deg=234.0, sequence=2),  # shoulder bag, strap across
    dict(subject=1, condition="bg", view_deg=0.0, sequence=1),  # backpack
    dict(subject=1, condition="bg", view_deg=126.0, sequence=2),  # handbag, right hand
    dict(subject=2, condition="bg", view_deg=72.0, sequence=1),  # handbag, left hand
    dict(subject=3, condition="cl", view_deg=144.0, sequence=2, frame_step=2.5),
    dict(subject=7, condition="cl", view_deg=180.0, sequence=1, seed=3, elevation_deg=30.0),
    dict(subject=2, condition="nm", view_deg=270.0, sequence=3, height=128, frame_step=0.5),
    dict(subject=4, condition="nm", view_deg=54.0, sequence=1, occlusion=walker.Occlusion("lower", level=0.4)),
    dict(subject=6, condition="bg", view_deg=108.0, sequence=1,
         occlusion=walker.Occlusion("box", top=0.3, bottom=0.6, left=-0.15, right=0.15)),
]


def golden_sha256() -> str:
    digest = hashlib.sha256()
    for kwargs in GOLDEN_RENDERS:
        kwargs = {"seed": 0, "frames": 4, **kwargs}
        x = render_sequence(kwargs.pop("subject"), kwargs.pop("condition"), kwargs.pop("view_deg"), **kwargs)
        digest.update(repr(x.shape).encode("ascii"))
        digest.update(x.tobytes())
    return digest.hexdigest()


def test_bytes_are_pinned_to_the_walker_version():
    """The renders' bytes are part of every synthetic dataset's identity: they change only together
    with WALKER_VERSION. (The walker promises byte-identity on one machine and numpy build; a
    failure without a walker change means this numpy computes sin/cos/exp differently.)"""
    assert WALKER_VERSION in GOLDEN_SHA256, (
        f"WALKER_VERSION {WALKER_VERSION!r} has no recorded hash: add {WALKER_VERSION!r}: {golden_sha256()!r} "
        "to GOLDEN_SHA256")
    assert golden_sha256() == GOLDEN_SHA256[WALKER_VERSION], (
        f"the walker's bytes changed but WALKER_VERSION is still {WALKER_VERSION!r}: if the change is meant, "
        f"bump WALKER_VERSION and record {golden_sha256()!r} for it in GOLDEN_SHA256; if not, undo it")


@pytest.mark.parametrize("condition", ["nm", "bg", "cl"])
@pytest.mark.parametrize("view", [0.0, 18.0, 90.0, 162.0, 180.0])
def test_shape_dtype_and_range(condition, view):
    x = render(3, condition, view, sequence=2, frames=7, frame_step=2.5)
    assert x.shape == (7, FRAME_HEIGHT, FRAME_WIDTH)
    assert x.dtype == np.uint8
    assert x.max() == 255
    # anti-aliased edges: grey values exist, but most foreground is solid
    grey = ((x > 0) & (x < 255)).sum()
    assert grey > 0
    assert (x == 255).sum() > grey


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        render(condition="xx")
    with pytest.raises(ValueError):
        render(frames=0)
    with pytest.raises(ValueError):
        render(frame_step=0.0)


def test_every_frame_is_height_normalised_and_centred():
    for subject, condition, view in [(1, "nm", 90.0), (2, "bg", 0.0), (3, "cl", 126.0), (4, "bg", 54.0)]:
        for sequence in (1, 2):
            x = render(subject, condition, view, sequence=sequence, frames=24, frame_step=1.5)
            assert (x.reshape(len(x), -1).sum(1) > 0).all()
            # the silhouette spans all 64 rows: it touches the top and the bottom row in every frame
            assert (x[:, 0].max(axis=1) >= 200).all()
            assert (x[:, -1].max(axis=1) >= 200).all()
            # nothing is cut off at the top or bottom, and the frame is not blank in between
            assert (x.max(axis=2) > 0).all()
            # the median column of mass is the centre column
            for frame in x:
                assert abs(median_column(frame) - FRAME_WIDTH // 2) <= 1


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------

def test_deterministic_and_call_order_independent():
    a = render(5, "bg", 72.0, sequence=2, frames=10)
    render(6, "cl", 18.0, sequence=1, frames=5)  # other calls in between (and warm caches)
    b = render(5, "bg", 72.0, sequence=2, frames=10)
    assert a.tobytes() == b.tobytes()
    walker._subject_params.cache_clear()
    walker._sequence_params.cache_clear()
    assert render(5, "bg", 72.0, sequence=2, frames=10).tobytes() == a.tobytes()


def test_deterministic_across_processes():
    """Python's str hash is salted per process: the bytes must not depend on it."""
    code = (
        "import hashlib, sys\n"
        "from gaitbench.data.walker import render_sequence\n"
        "x = render_sequence(7, 'cl', 36.0, seed=3, sequence=2, frames=6, frame_step=2.0)\n"
        "sys.stdout.write(hashlib.sha256(x.tobytes()).hexdigest())\n"
    )
    x = render(7, "cl", 36.0, seed=3, sequence=2, frames=6, frame_step=2.0)
    here = hashlib.sha256(x.tobytes()).hexdigest()
    root = str(Path(walker.__file__).resolve().parents[2])
    for hash_seed in ("1", "2"):
        env = {"PYTHONHASHSEED": hash_seed, "PYTHONPATH": root, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout == here


def test_arguments_change_the_output():
    base = render(1, "nm", 90.0, sequence=1, frames=8)
    for other in (render(2, "nm", 90.0, sequence=1, frames=8),  # subject
                  render(1, "nm", 90.0, sequence=2, frames=8),  # repeat
                  render(1, "nm", 108.0, sequence=1, frames=8),  # view
                  render(1, "nm", 90.0, sequence=1, frames=8, seed=1)):  # dataset seed
        assert not np.array_equal(base, other)


def test_frame_step_only_changes_sampling():
    """The walk is a function of time: every other frame at step 1 is the walk at step 2."""
    dense = render(4, "nm", 54.0, sequence=3, frames=20, frame_step=1.0)
    sparse = render(4, "nm", 54.0, sequence=3, frames=10, frame_step=2.0)
    diff = np.abs(dense[::2].astype(int) - sparse.astype(int))
    assert diff.max() <= 1
    # and a longer step covers more of the gait cycle
    assert not np.array_equal(dense[:10], sparse)


def test_subject_params():
    a, b = subject_params(1, 0), subject_params(1, 0)
    assert a == b and a is not b
    assert all(isinstance(v, float) for v in a.values())
    for key in ("leg_frac", "thigh_frac", "shoulder_frac", "hip_frac", "mass", "head_frac", "lean_deg",
                "cadence", "hip_amp_deg", "arm_swing_deg", "knee_swing_deg", "hip_sway_frac", "elbow_bend_deg"):
        assert key in a
    many = [subject_params(s, 0) for s in range(1, 41)]
    assert len({p["leg_frac"] for p in many}) == 40
    assert subject_params(1, 1) != a
    # substantial between-subject spread in proportions and dynamics
    for key, min_spread in (("leg_frac", 0.05), ("shoulder_frac", 0.04), ("mass", 0.3), ("cadence", 15.0),
                            ("arm_swing_deg", 10.0)):
        values = np.array([p[key] for p in many])
        assert np.ptp(values) >= min_spread, key


# ---------------------------------------------------------------------------------------------
# the rasteriser is exact
# ---------------------------------------------------------------------------------------------

def test_rasteriser_matches_brute_force_round_cones():
    """Coverage equals clip(0.5 - d) with d the distance to the union of discs swept along each
    segment with linearly changing radius (= the hull of the two end discs)."""
    rng = np.random.default_rng(0)
    f_n, c_n, h, w = 6, 3, 32, 40
    ax, ay = rng.uniform(8, 32, (f_n, c_n)), rng.uniform(8, 24, (f_n, c_n))
    bx, by = ax + rng.normal(0, 6, (f_n, c_n)), ay + rng.normal(0, 6, (f_n, c_n))
    ra, rb = rng.uniform(0.3, 5, (f_n, c_n)), rng.uniform(0.3, 5, (f_n, c_n))
    bx[0, 0], by[0, 0] = ax[0, 0], ay[0, 0]  # a sphere
    bx[1, 0], by[1, 0], ra[1, 0], rb[1, 0] = ax[1, 0] + 0.5, ay[1, 0], 5.0, 1.0  # one disc inside the other
    args = [v.astype(np.float32) for v in (ax, ay, bx, by, ra, rb)]
    ax, ay, bx, by, ra, rb = (v.astype(np.float64) for v in args)
    cov = walker._rasterise(*args, h, w)
    lam = np.linspace(0.0, 1.0, 1001)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    for f in range(f_n):
        d = np.full((h, w), np.inf)
        for c in range(c_n):
            cx = ax[f, c] + lam * (bx[f, c] - ax[f, c])
            cy = ay[f, c] + lam * (by[f, c] - ay[f, c])
            r = ra[f, c] + lam * (rb[f, c] - ra[f, c])
            d = np.minimum(d, (np.hypot(xx[..., None] - cx, yy[..., None] - cy) - r).min(-1))
        np.testing.assert_allclose(cov[f], np.clip(0.5 - d, 0, 1), atol=2e-3)


# ---------------------------------------------------------------------------------------------
# conditions, views, identity
# ---------------------------------------------------------------------------------------------

def test_coat_adds_mass():
    ratios = []
    for subject in SUBJECTS:
        for view in (0.0, 90.0, 144.0):
            nm = render(subject, "nm", view, sequence=1, frames=12, frame_step=2.5).astype(np.float64).sum()
            cl = render(subject, "cl", view, sequence=1, frames=12, frame_step=2.5).astype(np.float64).sum()
            ratios.append(cl / nm)
    ratios = np.array(ratios)
    assert ratios.mean() > 1.12
    assert (ratios > 1.03).mean() >= 0.9


def test_bag_changes_the_silhouettes():
    """A bag moves the GEI much further from a normal walk than another normal walk does."""
    within, bag = [], []
    for subject in SUBJECTS:
        for view in (36.0, 90.0):
            nm1 = gei(subject, "nm", view, sequence=1, frames=12, frame_step=2.5)
            nm2 = gei(subject, "nm", view, sequence=2, frames=12, frame_step=2.5)
            within.append(dist(nm1, nm2))
            bag.append(np.mean([dist(nm1, gei(subject, "bg", view, sequence=q, frames=12, frame_step=2.5))
                                for q in (1, 2)]))
    assert np.mean(bag) > 2.0 * np.mean(within)
    assert (np.array(bag) > np.array(within)).mean() >= 0.85


def test_side_view_is_wider_than_front_view():
    """Legs spread along the walking direction: wide from the side, narrow from the front."""
    side, front = [], []
    for subject in SUBJECTS:
        side.append(row_width(render(subject, "nm", 90.0, sequence=1, frames=30)[:, 48:]).mean())
        front.append(row_width(render(subject, "nm", 0.0, sequence=1, frames=30)[:, 48:]).mean())
    side, front = np.array(side), np.array(front)
    assert side.mean() > 1.5 * front.mean()
    assert (side > front).all()
    # and the whole silhouette is wider on average too
    whole_side = np.mean([row_width(render(s, "nm", 90.0, frames=30)).mean() for s in SUBJECTS])
    whole_front = np.mean([row_width(render(s, "nm", 0.0, frames=30)).mean() for s in SUBJECTS])
    assert whole_side > whole_front


def test_views_change_the_silhouettes():
    g = {v: gei(2, "nm", v, sequence=1, frames=12, frame_step=2.5) for v in (0.0, 36.0, 90.0)}
    repeat = gei(2, "nm", 90.0, sequence=2, frames=12, frame_step=2.5)
    assert dist(g[90.0], g[0.0]) > 2.0 * dist(g[90.0], repeat)
    assert dist(g[36.0], g[0.0]) > dist(g[90.0], repeat)


@pytest.mark.parametrize("view", [0.0, 90.0])
def test_identity_is_recognisable_from_gait_energy_images(view):
    """Same subject, another walk: closer than any other subject's walk (on average, and by
    nearest-neighbour identification)."""
    subjects = list(range(1, 11))
    gallery = np.stack([gei(s, "nm", view, sequence=1, frames=12, frame_step=2.5) for s in subjects])
    probe = np.stack([gei(s, "nm", view, sequence=4, frames=12, frame_step=2.5) for s in subjects])
    d = np.sqrt(((probe[:, None] - gallery[None]) ** 2).sum(axis=(-1, -2)))
    within = np.diag(d)
    between = d[~np.eye(len(subjects), dtype=bool)]
    assert within.mean() < 0.5 * between.mean()
    assert (d.argmin(axis=1) == np.arange(len(subjects))).mean() >= 0.8


def test_repeated_walks_vary():
    """Repeats of one condition are not copies: speed, phase and noise differ."""
    a = render(3, "nm", 90.0, sequence=1, frames=16)
    b = render(3, "nm", 90.0, sequence=2, frames=16)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 2.0
    # but as gait energy images they stay close
    assert dist(a.mean(0) / 255.0, b.mean(0) / 255.0) < dist(a.mean(0) / 255.0,
                                                           render(4, "nm", 90.0, frames=16).mean(0) / 255.0)


def test_render_speed():
    """The requirement is well under 10 ms per frame; it is usually ~0.3 ms."""
    render(1, "cl", 90.0, frames=30)  # warm-up
    start = time.perf_counter()
    for view in (0.0, 90.0, 180.0):
        render(2, "cl", view, sequence=2, frames=30)
    per_frame = (time.perf_counter() - start) / 90
    assert per_frame < 0.010


# ---------------------------------------------------------------------------------------------
# cameras beyond CASIA-B's studio, occlusion, 128-high frames (the GREW and Gait3D layouts)
# ---------------------------------------------------------------------------------------------

def assert_normalised(x: np.ndarray, height: int = FRAME_HEIGHT) -> None:
    """Every frame spans all rows (touches the top and bottom row) and is centred on its median
    column of mass."""
    assert x.dtype == np.uint8 and x.shape[1:] == (height, walker.frame_width(height))
    assert (x[:, 0].max(axis=1) >= 200).all() and (x[:, -1].max(axis=1) >= 200).all()
    for frame in x:
        assert abs(median_column(frame) - x.shape[2] // 2) <= 1


def test_explicit_defaults_give_the_default_bytes():
    """The CASIA-B datasets already generated stay valid: the new options at their defaults change
    nothing."""
    for condition, view in (("nm", 90.0), ("bg", 18.0), ("cl", 144.0)):
        a = render(4, condition, view, sequence=2, frames=9, frame_step=2.5)
        b = render_sequence(4, condition, view, seed=0, sequence=2, frames=9, frame_step=2.5,
                            elevation_deg=walker.CAMERA_ELEVATION_DEG, height=64, occlusion=None)
        assert a.tobytes() == b.tobytes()


def test_frame_width():
    assert walker.frame_width(64) == 44 and walker.frame_width(128) == 88
    for bad in (0, 32, 100, 64.5):
        with pytest.raises(ValueError, match="multiple of 64"):
            walker.frame_width(bad)
    with pytest.raises(ValueError, match="multiple of 64"):
        render_sequence(1, "nm", 90.0, seed=0, sequence=1, frames=2, height=96)


def test_any_azimuth():
    """Azimuths are angles: a full turn changes nothing, and 270 (the walker's right side) is
    another view than 90 -- close to its mirror image, not a copy (the walker is asymmetric)."""
    for view in (0.0, 90.0, 233.5):
        assert np.abs(render(2, "nm", view + 360.0, frames=8).astype(int) - render(2, "nm", view, frames=8)).max() <= 1
    side = render(2, "nm", 90.0, frames=10).astype(float)
    other = render(2, "nm", 270.0, frames=10).astype(float)
    assert_normalised(render(2, "nm", 270.0, frames=10))
    assert np.abs(other - side).mean() > 10.0
    assert np.abs(other[:, :, ::-1] - side).mean() < np.abs(render(2, "nm", 0.0, frames=10) - side).mean()


@pytest.mark.parametrize("elevation", [0.0, 20.0, 45.0])
def test_elevation(elevation):
    x = render_sequence(3, "nm", 126.0, seed=0, sequence=1, frames=8, frame_step=2.5, elevation_deg=elevation)
    assert_normalised(x)
    low = render(3, "nm", 126.0, frames=8, frame_step=2.5)  # the default, 5 degrees
    assert np.abs(x.astype(int) - low).mean() > (1.0 if elevation == 0.0 else 5.0)
    with pytest.raises(ValueError, match="elevation"):
        render_sequence(3, "nm", 0.0, seed=0, sequence=1, frames=2, elevation_deg=90.0)


def test_128_high_frames_are_the_64_high_frames_at_twice_the_resolution():
    small = render(2, "bg", 72.0, frames=10, frame_step=2.5)
    big = render_sequence(2, "bg", 72.0, seed=0, sequence=1, frames=10, frame_step=2.5, height=128)
    assert big.shape == (10, 128, 88)
    assert_normalised(big, 128)
    pooled = big.astype(float).reshape(10, 64, 2, 44, 2).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 8.0  # edges move by at most a pixel


def test_lower_body_occlusion_is_removed_before_normalisation():
    """What stays visible is scaled to the full frame height: the head gets bigger."""
    def head_width(x):
        top = x[:, :6] >= 128
        return np.mean([np.ptp(np.flatnonzero(f.any(0))) + 1 for f in top])

    plain = render(2, "nm", 90.0, frames=10, frame_step=2.5)
    hidden = render_sequence(2, "nm", 90.0, seed=0, sequence=1, frames=10, frame_step=2.5,
                             occlusion=walker.Occlusion("lower", level=0.4))
    assert_normalised(hidden)
    assert head_width(hidden) > 1.4 * head_width(plain)


def test_box_occlusion_cuts_a_hole():
    plain = render(2, "nm", 90.0, frames=10, frame_step=2.5).astype(float)
    box = walker.Occlusion("box", top=0.3, bottom=0.6, left=-0.15, right=0.15)
    holed = render_sequence(2, "nm", 90.0, seed=0, sequence=1, frames=10, frame_step=2.5, occlusion=box)
    assert_normalised(holed)
    rows_plain, rows_holed = plain.sum(2), holed.astype(float).sum(2)
    r0, r1 = round(0.3 * 64), round(0.6 * 64)
    assert rows_holed[:, r0:r1].sum() < 0.2 * rows_plain[:, r0:r1].sum()
    # the rest of the body is still there (re-centring may push a little out of the frame)
    assert rows_holed[:, :r0].sum() > 0.95 * rows_plain[:, :r0].sum()
    assert rows_holed[:, r1:].sum() > 0.95 * rows_plain[:, r1:].sum()


@pytest.mark.parametrize("kwargs", [dict(kind="side"), dict(kind="lower", level=0.0), dict(kind="lower", level=0.9),
                                    dict(kind="box", top=0.0, bottom=0.5, left=0.0, right=0.1),
                                    dict(kind="box", top=0.3, bottom=0.5, left=0.1, right=0.1)])
def test_bad_occlusions_are_rejected(kwargs):
    with pytest.raises(ValueError):
        walker.Occlusion(**kwargs)
