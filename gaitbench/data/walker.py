"""A procedural, articulated 3-D walking human rendered as CASIA-B-like gait silhouettes.

Real CASIA-B is licensed, so gaitbench renders a dataset of the same layout from this model. It is
built so that a gait-recognition benchmark on it means something:

* identity lives in per-subject body proportions (limb ratios, widths, thickness, posture) and gait
  dynamics (stride, cadence, arm swing, knee flexion, sway, asymmetries) -- absolute height is
  removed by the height normalisation, exactly as in real data;
* repeated walks of one subject differ a little (speed, gait phase, small joint-angle noise,
  walking direction), much less than subjects differ from each other;
* the camera azimuth, a carried bag ('bg') and a coat ('cl') change the silhouettes substantially.

Model. The body is a union of round cones (sphere-swept segments whose radius may change linearly
along the segment; a plain capsule and a sphere are special cases). Under an orthographic camera a
round cone projects exactly onto the 2-D convex hull of its two projected end discs, so every frame
is rasterised analytically from 2-D signed distances, with an anti-aliased edge
``clip(0.5 - distance_in_pixels, 0, 1)`` like the grey edges of real, cubic-resized silhouettes.

Normalisation follows the usual preprocessing of real gait data: each frame is scaled so that the
silhouette's vertical extent spans exactly ``FRAME_HEIGHT`` rows (the extent is known analytically
from the projected discs), centred horizontally on the median column of mass and cut to
``FRAME_WIDTH`` columns (= a 64x64 frame with 10 px removed on each side). ``height=128`` renders
128x88 frames the same way (a 128x128 frame with 20 px removed on each side).

Beyond CASIA-B's studio, a call can place the camera at any azimuth and elevation (GREW's and
Gait3D's unconstrained cameras) and hide part of the walker behind an ``Occlusion`` (Gait3D's
shelves and passers-by); the occluded part is removed *before* the normalisation, as real
preprocessing only ever sees what is visible.

World frame: x is the walking direction, y points to the walker's left, z up; lengths are metres.
Everything is vectorised over frames with numpy; every random draw comes from a generator seeded by
the call's arguments only (never Python's salted ``hash``), so the bytes do not depend on call order
or process. Floating-point transcendental functions are not guaranteed to be bit-identical across
CPUs / numpy builds, so byte-identity is promised on one machine and numpy build.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["WALKER_VERSION", "FRAME_HEIGHT", "FRAME_WIDTH", "CAMERA_ELEVATION_DEG", "Occlusion", "frame_width",
           "random_stream", "subject_params", "render_sequence"]

WALKER_VERSION = "1"  # bump whenever the output bytes change
FRAME_HEIGHT = 64
FRAME_WIDTH = 44
CAMERA_ELEVATION_DEG = 5.0  # the default, small: cameras slightly above the walker, looking horizontally
FPS = 25.0  # the video rate that ``frame_step`` is measured in

_CONDITIONS = {"nm": 1, "bg": 2, "cl": 3}  # fixed codes for seeding (no salted hash())
_TWO_PI = 2.0 * np.pi


# ----------------------------------------------------------------------------------------------
# seeding
# ----------------------------------------------------------------------------------------------

def random_stream(stream: str, *keys: int) -> np.random.Generator:
    """A generator for one named random stream; keys are the integers it depends on. Independent
    of call order and process (no salted ``hash``); the synthetic layouts draw from it too."""
    words = [zlib.crc32(stream.encode("ascii"))]
    for k in keys:
        k = int(k)
        words.extend([k & 0xFFFFFFFF, (k >> 32) & 0xFFFFFFFF, int(k < 0)])  # negatives stay distinct
    return np.random.default_rng(np.random.SeedSequence(words))


# ----------------------------------------------------------------------------------------------
# per-subject parameters
# ----------------------------------------------------------------------------------------------

def subject_params(subject: int, seed: int) -> dict:
    """Deterministic per-subject body proportions and gait dynamics from ``(seed, subject)``.

    Lengths are fractions of stature (``*_frac``), angles in degrees, ``cadence`` in steps/min.
    Ranges are wide on purpose: identity must be recognisable from shape and motion alone.
    The draw order is part of the output bytes -- append new parameters, and bump WALKER_VERSION.
    """
    return dict(_subject_params(int(subject), int(seed)))


@functools.lru_cache(maxsize=4096)  # a dataset renders every subject ~110 times
def _subject_params(subject: int, seed: int) -> tuple:
    rng = random_stream("subject", seed, subject)
    u = rng.uniform
    p = {
        # --- proportions (fractions of stature) ---
        "stature": u(1.55, 1.90),  # metres; sets the physical scale only (height is normalised away)
        "leg_frac": u(0.44, 0.54),  # hip-joint height
        "thigh_frac": u(0.44, 0.56),  # thigh / (thigh + shank)
        "head_frac": u(0.052, 0.070),  # cranium radius
        "neck_frac": u(0.025, 0.060),
        "shoulder_frac": u(0.19, 0.27),  # shoulder-joint separation
        "hip_frac": u(0.085, 0.13),  # hip-joint separation
        "arm_frac": u(0.30, 0.37),  # upper arm + forearm
        "upper_arm_frac": u(0.49, 0.59),  # upper arm / (upper arm + forearm)
        "foot_frac": u(0.135, 0.165),
        "shoulder_drop_frac": u(0.015, 0.05),  # shoulder joints below the neck base
        # --- thickness ---
        "mass": u(0.80, 1.35),  # global girth multiplier
        "chest_width": u(0.85, 1.20),  # torso width relative to depth
        "waist": u(0.80, 1.10),  # waist / chest girth
        "belly": u(0.0, 1.0) ** 2,  # frontal belly protrusion, mostly small
        "hips": u(0.85, 1.20),  # pelvis / buttock girth
        "arm_thickness": u(0.80, 1.20),
        "leg_thickness": u(0.85, 1.20),
        # --- posture ---
        "lean_deg": u(-3.0, 10.0),  # trunk forward lean
        "neck_deg": u(0.0, 25.0),  # neck forward tilt relative to trunk
        "head_forward_frac": u(-0.01, 0.03),
        "shoulder_tilt_deg": u(-3.0, 3.0),  # one shoulder higher
        # --- gait dynamics ---
        "cadence": u(95.0, 125.0),  # steps per minute
        "hip_amp_deg": u(13.0, 24.0),  # hip flexion half-range (stride length)
        "hip_offset_deg": u(4.0, 12.0),  # mean hip flexion
        "knee_swing_deg": u(45.0, 70.0),  # knee flexion peak in swing
        "knee_load_deg": u(3.0, 22.0),  # knee flexion bump after heel strike
        "ankle_push_deg": u(8.0, 25.0),  # plantarflexion at push-off
        "arm_swing_deg": u(5.0, 28.0),  # shoulder flexion half-range
        "arm_offset_deg": u(-4.0, 6.0),
        "elbow_bend_deg": u(5.0, 30.0),  # static elbow flexion
        "elbow_swing_deg": u(3.0, 18.0),  # extra flexion with forward swing
        "arm_abduction_deg": u(3.0, 15.0),  # arms held away from the body
        "hip_sway_frac": u(0.006, 0.030),  # lateral pelvis excursion
        "pelvis_rot_deg": u(2.0, 10.0),  # transverse pelvis rotation
        "pelvis_list_deg": u(1.0, 7.0),  # pelvic obliquity (swing side drops)
        "trunk_rot_deg": u(1.0, 8.0),  # thorax counter-rotation
        "lean_swing_deg": u(0.0, 3.0),  # trunk pitch oscillation at step frequency
        "toe_out_deg": u(0.0, 16.0),
        "step_width_frac": u(0.02, 0.09),  # lateral distance between the feet
        # --- left/right asymmetries (relative) ---
        "asym_hip": u(-0.08, 0.08),
        "asym_knee": u(-0.08, 0.08),
        "asym_arm": u(-0.30, 0.30),
    }
    return tuple((k, float(v)) for k, v in p.items())


# ----------------------------------------------------------------------------------------------
# per-sequence variation
# ----------------------------------------------------------------------------------------------

_NOISE_CHANNELS = ("hip_r", "hip_l", "knee_r", "knee_l", "sh_r", "sh_l", "el_r", "el_l", "lean", "head")
_NOISE_TERMS = 4


@functools.lru_cache(maxsize=256)  # shared by the 11 views of a walk; callers must not mutate it
def _sequence_params(subject: int, condition: str, seed: int, sequence: int) -> dict:
    """Speed, phase, noise and accessories of one walk. Independent of the view: like CASIA-B's
    simultaneous cameras, all views of one (subject, condition, sequence) show the same walk."""
    rng = random_stream("sequence", seed, subject, _CONDITIONS[condition], sequence)
    q = {
        "speed": 1.0 + rng.uniform(-0.07, 0.07),
        "phase0": rng.uniform(0.0, 1.0),
        "direction_deg": float(np.clip(rng.normal(0.0, 2.0), -4.0, 4.0)),
        # smooth joint-angle noise: a few random sinusoids per channel (defined for any time, so
        # frame_step only changes sampling, never the walk itself); std about 1 deg per channel
        "noise_freq": rng.uniform(0.3, 6.0, size=(len(_NOISE_CHANNELS), _NOISE_TERMS)),
        "noise_phase": rng.uniform(0.0, _TWO_PI, size=(len(_NOISE_CHANNELS), _NOISE_TERMS)),
        "noise_amp": rng.uniform(0.3, 1.0, size=(len(_NOISE_CHANNELS), _NOISE_TERMS)),
    }
    # accessories are drawn from their own stream so nm walks never depend on them
    acc = random_stream("accessory", seed, subject, _CONDITIONS[condition], sequence)
    if condition == "bg":
        q["bag_kind"] = int(acc.integers(0, 3))  # 0 shoulder bag, 1 backpack, 2 handbag
        q["bag_side"] = float(acc.choice([-1.0, 1.0]))  # -1 right, +1 left
        q["bag_cross"] = bool(acc.random() < 0.5)  # shoulder bag strap across the body
        q["bag_len"] = acc.uniform(0.08, 0.16)  # fractions of stature
        q["bag_r"] = acc.uniform(0.050, 0.085)
        q["bag_drop"] = acc.uniform(0.00, 0.06)
        q["bag_swing"] = acc.uniform(0.005, 0.02)
        q["bag_lag"] = acc.uniform(0.0, _TWO_PI)
    elif condition == "cl":
        q["coat_thick"] = acc.uniform(0.008, 0.020)  # added girth, fraction of stature
        q["coat_len"] = acc.uniform(0.45, 1.05)  # hem position along the thigh
        q["coat_flare"] = acc.uniform(0.004, 0.025)
        q["coat_follow"] = acc.uniform(0.25, 0.75)  # how closely the skirt follows the thighs
        q["coat_collar"] = acc.uniform(0.0, 0.015)
    return q


# ----------------------------------------------------------------------------------------------
# kinematics
# ----------------------------------------------------------------------------------------------

def _bump(phase: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A periodic Gaussian bump on the gait cycle (phase in cycles)."""
    d = (phase - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


def _rot_z(angle: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate body-frame offsets ``v`` [F, 3] about the vertical by ``angle`` [F] (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1], v[:, 2]], axis=-1)


def _sagittal(angle: np.ndarray, lateral: np.ndarray | float = 0.0) -> np.ndarray:
    """Unit-ish direction hanging down, rotated forward by ``angle`` (rad), with a lateral part."""
    lat = np.broadcast_to(np.asarray(lateral, dtype=np.float64), angle.shape)
    return np.stack([np.sin(angle), lat, -np.cos(angle)], axis=-1)


def _vec(x, y, z, n: int) -> np.ndarray:
    """A [n, 3] array of per-frame vectors; each component a scalar or an [n] array."""
    out = np.empty((n, 3), dtype=np.float64)  # filled in place: cheaper than broadcast + stack
    out[:, 0], out[:, 1], out[:, 2] = x, y, z
    return out


# ----------------------------------------------------------------------------------------------
# the body: proportions and timing, then one function per body part adding its round cones
# ----------------------------------------------------------------------------------------------

_DEG = np.pi / 180.0


@dataclass(frozen=True)
class _Gait:
    """The timing of one walk at the sampled times ``t`` [F] (seconds)."""

    t: np.ndarray
    phase_r: np.ndarray  # gait cycles of the right leg; 0 = right heel strike
    phase_l: np.ndarray  # the left leg, half a cycle later
    cyc_r: np.ndarray  # phase_r in radians
    stride: float  # stride-length factor of this walk's speed
    q: dict  # the walk's parameters (its joint-angle noise)

    @property
    def frames(self) -> int:
        return self.t.shape[0]

    def noise(self, channel: str) -> np.ndarray:
        """Smooth joint-angle noise of one channel of ``_NOISE_CHANNELS`` (radians) [F]."""
        i = _NOISE_CHANNELS.index(channel)
        f, ph, a = self.q["noise_freq"][i], self.q["noise_phase"][i], self.q["noise_amp"][i]
        return (a[None] * np.sin(_TWO_PI * f[None] * self.t[:, None] + ph[None])).sum(1) * _DEG


def _gait(p: dict, q: dict, t: np.ndarray) -> _Gait:
    speed = q["speed"]
    cadence = p["cadence"] * np.sqrt(speed)  # faster walks: both quicker and longer steps
    phase_r = q["phase0"] + t * cadence / 120.0
    return _Gait(t=t, phase_r=phase_r, phase_l=phase_r + 0.5, cyc_r=_TWO_PI * phase_r, stride=np.sqrt(speed), q=q)


class _Lengths(NamedTuple):
    """Segment lengths of one subject (metres)."""

    stature: float
    ankle_h: float  # ankle-joint height above the sole
    leg: float  # hip joint to ankle joint
    thigh: float
    shank: float
    head_r: float  # cranium radius
    neck: float
    trunk: float  # pelvis centre to neck base
    upper_arm: float
    forearm: float
    hand: float
    foot: float
    half_hip: float  # half the hip-joint separation
    half_sh: float  # half the shoulder-joint separation


def _lengths(p: dict) -> _Lengths:
    S = p["stature"]
    ankle_h = 0.04 * S
    leg = p["leg_frac"] * S - ankle_h
    head_r = p["head_frac"] * S
    neck = p["neck_frac"] * S
    arm = p["arm_frac"] * S
    return _Lengths(
        stature=S, ankle_h=ankle_h, leg=leg, thigh=leg * p["thigh_frac"], shank=leg * (1.0 - p["thigh_frac"]),
        head_r=head_r, neck=neck, trunk=S - p["leg_frac"] * S - 2.1 * head_r - neck,
        upper_arm=arm * p["upper_arm_frac"], forearm=arm * (1.0 - p["upper_arm_frac"]), hand=0.085 * S,
        foot=p["foot_frac"] * S, half_hip=0.5 * p["hip_frac"] * S, half_sh=0.5 * p["shoulder_frac"] * S)


class _Radii(NamedTuple):
    """Radii of the body's round cones (metres), grown by a coat where it covers the body. Pairs are
    (proximal end, distal end)."""

    coat: float  # the girth a coat adds (0 without one)
    trunk: float
    chest_off: float  # lateral offset of the two trunk cones
    pelvis: float
    belly: float
    upper_arm: tuple[float, float]
    forearm: tuple[float, float]
    hand: tuple[float, float]
    thigh: tuple[float, float]
    shank: tuple[float, float]
    foot: tuple[float, float]  # (heel, toe)
    neck: float
    shoulder: float


def _radii(p: dict, q: dict, coat: bool) -> _Radii:
    S = p["stature"]
    ct = q["coat_thick"] * S if coat else 0.0
    m = p["mass"]
    ka, kl = p["arm_thickness"] * np.sqrt(m), p["leg_thickness"] * m
    return _Radii(
        coat=ct,
        trunk=0.052 * S * m + ct,
        chest_off=0.040 * S * p["chest_width"] * np.sqrt(m),
        pelvis=0.050 * S * m * p["hips"] + 1.3 * ct,
        belly=0.045 * S * m * (0.8 + 0.4 * p["belly"]) + ct,
        upper_arm=(0.026 * S * ka + 0.8 * ct, 0.020 * S * ka + 0.8 * ct),
        forearm=(0.019 * S * ka + 0.8 * ct, 0.014 * S * ka + 1.2 * ct),  # coat cuffs widen
        hand=(0.012 * S, 0.011 * S),
        thigh=(0.042 * S * kl + ct, 0.026 * S * kl),
        shank=(0.026 * S * np.sqrt(kl), 0.016 * S * np.sqrt(kl)),
        foot=(0.019 * S, 0.015 * S),
        neck=0.026 * S * np.sqrt(m) + (q["coat_collar"] * S if coat else 0.0),
        shoulder=0.030 * S * m + ct,
    )


class _Cones:
    """The body's round cones in drawing order: end centres [F, 3] and end radii (metres)."""

    def __init__(self):
        self._cones = []

    def add(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float | None = None) -> None:
        """A cone from ``a`` to ``b``; a capsule (one radius) when ``rb`` is left out."""
        self._cones.append((a, b, ra, ra if rb is None else rb))

    def arrays(self, n: int):
        """``A, B`` [n, C, 3] end centres and ``RA, RB`` [n, C] end radii."""
        cones = self._cones
        A = np.stack([c[0] for c in cones], axis=1)
        B = np.stack([c[1] for c in cones], axis=1)
        RA = np.broadcast_to(np.array([c[2] for c in cones], dtype=np.float64), (n, len(cones)))
        RB = np.broadcast_to(np.array([c[3] for c in cones], dtype=np.float64), (n, len(cones)))
        return A, B, RA, RB


class _Pelvis(NamedTuple):
    centre: np.ndarray  # [F, 3]
    rotation: np.ndarray  # transverse rotation about the vertical (radians) [F]
    obliquity: np.ndarray  # list: the swing-side hip drops (radians) [F]


def _pelvis(p: dict, gait: _Gait) -> _Pelvis:
    """Sway towards the stance leg, transverse rotation, list."""
    S, cyc_r = p["stature"], gait.cyc_r
    sway = -p["hip_sway_frac"] * S * np.sin(cyc_r - 0.3)
    psi = p["pelvis_rot_deg"] * _DEG * np.cos(cyc_r)  # right hip forward at right heel strike
    lst = p["pelvis_list_deg"] * _DEG * np.sin(cyc_r)  # swing-side hip drops in single support
    return _Pelvis(_vec(0.0, sway, 0.0, gait.frames), psi, lst)


class _Thorax(NamedTuple):
    lean: np.ndarray  # forward pitch of the trunk (radians) [F]
    spine: np.ndarray  # unit vector from the pelvis up to the neck base [F, 3]
    neck_base: np.ndarray  # [F, 3]
    rotation: np.ndarray  # transverse rotation about the vertical (radians) [F]


def _thorax(p: dict, length: _Lengths, gait: _Gait, pelvis: _Pelvis, backpack: bool) -> _Thorax:
    lean = (p["lean_deg"] * _DEG + p["lean_swing_deg"] * _DEG * np.cos(2.0 * gait.cyc_r + 0.5) + gait.noise("lean"))
    if backpack:  # a loaded backpack pulls the trunk forward
        lean = lean + 3.0 * _DEG
    spine = _vec(np.sin(lean), 0.0, np.cos(lean), gait.frames)  # pointing up, tilted forward by `lean`
    chi = -p["trunk_rot_deg"] * _DEG * np.cos(gait.cyc_r)  # thorax counter-rotates against the pelvis
    return _Thorax(lean, spine, pelvis.centre + length.trunk * spine, chi)


def _add_torso(cones: _Cones, p: dict, length: _Lengths, radius: _Radii, gait: _Gait, pelvis: _Pelvis,
               thorax: _Thorax) -> None:
    """The trunk as two round cones side by side (wider than deep, like a real torso), and the belly."""
    S, n = length.stature, gait.frames
    for side in (-1.0, 1.0):
        low = pelvis.centre + _rot_z(pelvis.rotation, _vec(-0.005 * S, side * radius.chest_off * 0.9, 0.06 * S, n))
        high = thorax.neck_base + _rot_z(thorax.rotation, _vec(-0.005 * S, side * radius.chest_off, -0.05 * S, n))
        cones.add(low, high, radius.trunk * p["waist"], radius.trunk)
    # the belly protrudes forward in side views
    fwd = radius.trunk - radius.belly + 0.025 * S * p["belly"]
    cones.add(pelvis.centre + _vec(fwd + 0.01 * S, 0.0, 0.07 * S, n),
              pelvis.centre + thorax.spine * (0.22 * S) + _vec(fwd * 0.6, 0.0, 0.0, n), radius.belly, radius.belly * 0.9)


def _shoulder_joints(p: dict, length: _Lengths, gait: _Gait, thorax: _Thorax) -> dict[float, np.ndarray]:
    """The shoulder joints by side (-1 right, +1 left), turning with the thorax."""
    S, n = length.stature, gait.frames
    shoulder_z = -p["shoulder_drop_frac"] * S
    tilt = np.sin(p["shoulder_tilt_deg"] * _DEG) * length.half_sh
    return {side: thorax.neck_base + _rot_z(thorax.rotation, _vec(0.0, side * length.half_sh, shoulder_z + side * tilt, n))
            for side in (-1.0, 1.0)}


def _add_neck_and_head(cones: _Cones, p: dict, length: _Lengths, radius: _Radii, gait: _Gait,
                       thorax: _Thorax) -> None:
    S, n = length.stature, gait.frames
    neck_ang = thorax.lean + p["neck_deg"] * _DEG + gait.noise("head")
    neck_top = thorax.neck_base + length.neck * _vec(np.sin(neck_ang), 0.0, np.cos(neck_ang), n)
    cranium = neck_top + _vec(p["head_forward_frac"] * S, 0.0, 1.05 * length.head_r, n)
    jaw = cranium + _vec(0.35 * length.head_r, 0.0, -0.55 * length.head_r, n)
    cones.add(thorax.neck_base, neck_top, radius.neck)
    cones.add(jaw, cranium, 0.72 * length.head_r, length.head_r)


def _leg_angles(p: dict, gait: _Gait, side: float, phase: np.ndarray, channels: tuple[str, str]):
    """Hip flexion, knee flexion and ankle angle (radians) [F] of one leg over its gait cycle."""
    hip_noise, knee_noise = channels
    cyc = _TWO_PI * phase
    hip = (p["hip_offset_deg"] + p["hip_amp_deg"] * gait.stride * (1.0 + side * p["asym_hip"])
           * np.cos(cyc + _TWO_PI * 0.05)) * _DEG + gait.noise(hip_noise)
    # the knee flexes a little as the leg takes the load after heel strike, and much more in swing
    knee = (3.0 + p["knee_load_deg"] * _bump(phase, 0.13, 0.06)
            + p["knee_swing_deg"] * (1.0 + side * p["asym_knee"]) * _bump(phase, 0.72, 0.12)) * _DEG
    knee = knee + gait.noise(knee_noise)
    ankle = (-5.0 * _bump(phase, 0.03, 0.04) + 10.0 * _bump(phase, 0.40, 0.12)
             - p["ankle_push_deg"] * _bump(phase, 0.62, 0.05) + 10.0 * _bump(phase, 0.82, 0.08)) * _DEG
    return hip, knee, ankle


def _foot(p: dict, length: _Lengths, radius: _Radii, side: float, ankle: np.ndarray, pitch: np.ndarray):
    """Heel and toe centres [F, 3] of a foot pitched by ``pitch`` (radians, toes up positive) and
    turned out by the subject's toe-out angle."""
    toe_out = side * p["toe_out_deg"] * _DEG
    ex = np.stack([np.cos(pitch) * np.cos(toe_out), np.cos(pitch) * np.sin(toe_out), np.sin(pitch)], -1)
    ez = np.stack([-np.sin(pitch), np.zeros(ankle.shape[0]), np.cos(pitch)], -1)
    r_heel, r_toe = radius.foot
    heel = ankle - 0.14 * length.foot * ex - (length.ankle_h - r_heel) * ez
    toe = ankle + 0.58 * length.foot * ex - (length.ankle_h - r_toe) * ez
    return heel, toe


def _add_leg(cones: _Cones, p: dict, length: _Lengths, radius: _Radii, gait: _Gait, pelvis: _Pelvis, side: float,
             phase: np.ndarray, channels: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Thigh, shank and foot of one leg (``side`` -1 right, +1 left) at its gait ``phase``;
    returns the hip joint and the thigh's direction [F, 3] (the coat follows them)."""
    S, n = length.stature, gait.frames
    hip_a, knee_a, ankle_a = _leg_angles(p, gait, side, phase, channels)
    lat_in = (0.5 * p["step_width_frac"] * S - length.half_hip) / length.leg  # adduction: feet under the body
    hip_j = pelvis.centre + _rot_z(pelvis.rotation,
                                   _vec(0.0, side * length.half_hip, side * np.sin(pelvis.obliquity) * length.half_hip, n))
    d_thigh = _sagittal(hip_a, side * lat_in)
    knee_j = hip_j + length.thigh * d_thigh
    shank_a = hip_a - knee_a
    ankle_j = knee_j + length.shank * _sagittal(shank_a, side * lat_in)
    heel, toe = _foot(p, length, radius, side, ankle_j, pitch=shank_a + ankle_a)
    cones.add(hip_j, knee_j, *radius.thigh)
    cones.add(knee_j, ankle_j, *radius.shank)
    cones.add(heel, toe, *radius.foot)
    return hip_j, d_thigh


def _add_buttocks(cones: _Cones, length: _Lengths, radius: _Radii, gait: _Gait, pelvis: _Pelvis,
                  hips: dict[float, np.ndarray]) -> None:
    """The pelvis / buttocks: one capsule across the hip joints."""
    S, n = length.stature, gait.frames
    cones.add(hips[-1.0] + _rot_z(pelvis.rotation, _vec(-0.012 * S, 0.0, 0.02 * S, n)),
              hips[1.0] + _rot_z(pelvis.rotation, _vec(-0.012 * S, 0.0, 0.02 * S, n)), radius.pelvis)


def _arm_carriage(p: dict, gait: _Gait, side: float, coat: bool, handbag: bool) -> tuple[float, float, float]:
    """Swing amplitude, abduction and static elbow bend (degrees) of one arm."""
    amp = p["arm_swing_deg"] * gait.stride * (1.0 + side * p["asym_arm"])
    abd = p["arm_abduction_deg"]
    elbow0 = p["elbow_bend_deg"]
    if coat:
        amp *= 0.85
        abd += 4.0  # sleeves hold the arms out a little
    if handbag:  # the arm hangs, swings little, held off the leg
        amp *= 0.25
        abd += 7.0
        elbow0 *= 0.5
    return amp, abd, elbow0


def _add_arm(cones: _Cones, p: dict, length: _Lengths, radius: _Radii, gait: _Gait, shoulder: np.ndarray,
             side: float, phase: np.ndarray, channels: tuple[str, str], coat: bool, handbag: bool) -> np.ndarray:
    """Upper arm, forearm and hand of one arm swinging with ``phase``; returns the hand's end [F, 3]."""
    shoulder_noise, elbow_noise = channels
    swing = np.cos(_TWO_PI * phase + _TWO_PI * 0.03)
    amp, abd, elbow0 = _arm_carriage(p, gait, side, coat, handbag)
    sh_a = (p["arm_offset_deg"] + amp * swing) * _DEG + gait.noise(shoulder_noise)
    el_a = (elbow0 + p["elbow_swing_deg"] * 0.5 * (1.0 + swing)) * _DEG + gait.noise(elbow_noise)
    lat = side * np.sin(abd * _DEG)
    elbow_j = shoulder + length.upper_arm * _sagittal(sh_a, lat)
    wrist = elbow_j + length.forearm * _sagittal(sh_a + el_a, 0.5 * lat)
    hand_end = wrist + length.hand * _sagittal(sh_a + el_a + 8.0 * _DEG, 0.3 * lat)
    cones.add(shoulder, elbow_j, *radius.upper_arm)
    cones.add(elbow_j, wrist, *radius.forearm)
    cones.add(wrist, hand_end, *radius.hand)
    return hand_end


def _add_coat(cones: _Cones, q: dict, length: _Lengths, radius: _Radii, gait: _Gait, pelvis: _Pelvis,
              hips: dict[float, np.ndarray], thighs: dict[float, np.ndarray]) -> None:
    """A skirt below the hips loosely following the thighs, and a panel between them."""
    S, n = length.stature, gait.frames
    follow = q["coat_follow"]
    hem_r = radius.thigh[1] + q["coat_flare"] * S + radius.coat
    hems = []
    for side in (-1.0, 1.0):
        d = follow * thighs[side] + (1.0 - follow) * np.array([0.0, 0.0, -1.0])
        d[:, 1] += side * 0.06  # the skirt flares outwards
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        top = hips[side] + _vec(0.0, side * 0.01 * S, 0.03 * S, n)
        hem = hips[side] + q["coat_len"] * length.thigh * d
        cones.add(top, hem, radius.thigh[0] + 0.01 * S, hem_r)
        hems.append(hem)
    centre = 0.5 * (hems[0] + hems[1])
    cones.add(pelvis.centre + _vec(0.0, 0.0, -0.01 * S, n), centre + _vec(0.0, 0.0, 0.02 * S, n),
              radius.pelvis * 0.9, 0.5 * hem_r + 0.01 * S)


def _add_flat_bag(cones: _Cones, centre: np.ndarray, bag_length: float, bag_radius: float, thick: float) -> None:
    """Three stacked horizontal capsules: a flat bag's rounded-rectangle profile."""
    n = centre.shape[0]
    along = _vec(0.5 * bag_length, 0.0, 0.0, n)
    for dz in (-0.45 * bag_radius, 0.0, 0.45 * bag_radius):
        lift = _vec(0.0, 0.0, dz, n)
        cones.add(centre + lift - along, centre + lift + along, thick)


def _add_bag(cones: _Cones, q: dict, length: _Lengths, radius: _Radii, gait: _Gait, kind: int, side: float,
             pelvis: _Pelvis, thorax: _Thorax, shoulders: dict, hips: dict, hands: dict) -> None:
    """The carried bag: ``kind`` 0 a shoulder bag, 1 a backpack, 2 a handbag; ``side`` the hip or
    hand it hangs at (-1 right, +1 left)."""
    S, n = length.stature, gait.frames
    bag_length, bag_radius = q["bag_len"] * S, q["bag_r"] * S
    sw = q["bag_swing"] * S * np.sin(gait.cyc_r + q["bag_lag"])
    if kind == 0:  # shoulder bag hanging at one hip, swinging a little
        centre = hips[side] + _rot_z(pelvis.rotation, _vec(sw, side * (radius.pelvis + 0.4 * bag_radius),
                                                           -q["bag_drop"] * S, n))
        _add_flat_bag(cones, centre, bag_length, bag_radius, 0.55 * bag_radius)
        strap_from = shoulders[-side if q["bag_cross"] else side]
        cones.add(strap_from, centre + _vec(0.0, 0.0, bag_radius, n), 0.006 * S)
    elif kind == 1:  # backpack: two cones behind the trunk, following the thorax
        for s in (-1.0, 1.0):
            top = thorax.neck_base + _rot_z(thorax.rotation,
                                            _vec(-(radius.trunk + 0.8 * bag_radius), s * 0.035 * S, -0.06 * S, n))
            bottom = top - thorax.spine * (0.12 * S + 0.8 * bag_length)
            cones.add(top, bottom, 0.85 * bag_radius, bag_radius)
    else:  # handbag held in one hand, hanging from a short handle
        centre = hands[side] + _vec(0.3 * sw, side * 0.01 * S, -(0.04 * S + bag_radius), n)
        _add_flat_bag(cones, centre, bag_length, bag_radius, 0.5 * bag_radius)
        cones.add(hands[side], centre, 0.005 * S)


def _body(p: dict, q: dict, condition: str, t: np.ndarray):
    """Round cones of the walker at times ``t`` [F] (seconds).

    Returns ``A, B`` [F, C, 3] end centres and ``RA, RB`` [F, C] end radii (metres).
    """
    bag = q.get("bag_kind", -1) if condition == "bg" else -1
    bag_side = q.get("bag_side", 0.0)
    coat = condition == "cl"
    gait = _gait(p, q, t)
    length, radius = _lengths(p), _radii(p, q, coat)
    pelvis = _pelvis(p, gait)
    thorax = _thorax(p, length, gait, pelvis, backpack=bag == 1)

    cones = _Cones()
    _add_torso(cones, p, length, radius, gait, pelvis, thorax)
    shoulders = _shoulder_joints(p, length, gait, thorax)
    cones.add(shoulders[-1.0], shoulders[1.0], radius.shoulder)
    _add_neck_and_head(cones, p, length, radius, gait, thorax)
    hips, thighs = {}, {}
    for side, phase, channels in ((-1.0, gait.phase_r, ("hip_r", "knee_r")), (1.0, gait.phase_l, ("hip_l", "knee_l"))):
        hips[side], thighs[side] = _add_leg(cones, p, length, radius, gait, pelvis, side, phase, channels)
    _add_buttocks(cones, length, radius, gait, pelvis, hips)
    # each arm swings in counter-phase to the leg of its side
    hands = {}
    for side, phase, channels in ((-1.0, gait.phase_l, ("sh_r", "el_r")), (1.0, gait.phase_r, ("sh_l", "el_l"))):
        handbag = bag == 2 and side == bag_side
        hands[side] = _add_arm(cones, p, length, radius, gait, shoulders[side], side, phase, channels, coat, handbag)
    if coat:
        _add_coat(cones, q, length, radius, gait, pelvis, hips, thighs)
    if bag >= 0:
        _add_bag(cones, q, length, radius, gait, bag, bag_side, pelvis, thorax, shoulders, hips, hands)
    return cones.arrays(gait.frames)


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------

def _camera(view_deg: float, elevation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Image right and up axes of an orthographic camera at azimuth ``view_deg`` (0: in front of
    the walker, 90: at its left side, 180: behind, 270: at its right side) looking down on the
    walker from ``elevation_deg`` above the horizontal."""
    th, el = np.deg2rad(view_deg), np.deg2rad(elevation_deg)
    right = np.array([-np.sin(th), np.cos(th), 0.0])
    up = np.array([-np.sin(el) * np.cos(th), -np.sin(el) * np.sin(th), np.cos(el)])
    return right, up


def frame_width(height: int) -> int:
    """Columns of a normalised frame ``height`` rows high: the square frame of real preprocessing
    less the load-time side cut of 10 px per 64 (64 -> 44, 128 -> 88)."""
    if int(height) != height or height < 64 or height % 64:
        raise ValueError(f"frame height must be a multiple of 64 (64, 128, ...), got {height!r}")
    return int(height) // 64 * 44


@dataclass(frozen=True)
class Occlusion:
    """Something between the camera and the walker, hiding part of the body in every frame.

    ``kind='lower'``: everything below ``level`` (a fraction of the walker's projected height,
    measured from its lowest point) is hidden -- a counter, a trolley, a crowd. What stays visible
    is what gets scaled to the frame height, as preprocessing crops rows to the visible silhouette.

    ``kind='box'``: a rectangle is cut out of the body: rows ``top``..``bottom`` (fractions of the
    frame height, within 0.1..0.9 so the head and the feet still set the vertical extent) and
    columns ``left``..``right`` (in frame heights, relative to the silhouette's median column);
    the frame is then re-centred on what is left.
    """

    kind: str
    level: float = 0.0
    top: float = 0.0
    bottom: float = 0.0
    left: float = 0.0
    right: float = 0.0

    def __post_init__(self):
        if self.kind == "lower":
            if not 0.0 < self.level <= 0.8:
                raise ValueError(f"a lower-body occlusion hides 0 < level <= 0.8 of the body, got {self.level}")
        elif self.kind == "box":
            if not (0.1 <= self.top < self.bottom <= 0.9 and self.left < self.right):
                raise ValueError("a box occlusion needs 0.1 <= top < bottom <= 0.9 and left < right, got "
                                 f"{self.top, self.bottom, self.left, self.right}")
        else:
            raise ValueError(f"unknown occlusion kind {self.kind!r}; expected 'lower' or 'box'")


def _rasterise(ax, ay, bx, by, ra, rb, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage [F, height, width] of the union of 2-D round cones.

    All inputs are [F, C] in pixel units (x right, y down, pixel (i, j) centred at (j+.5, i+.5)).
    Each cone is evaluated only in its own bounding box (batched over frames), and the minimum
    signed distance is kept per pixel; coverage is ``clip(0.5 - d, 0, 1)``.
    """
    f_n, c_n = ax.shape
    dist = np.full(f_n * height * width, np.float32(4.0), dtype=np.float32)
    frame_base = np.arange(f_n, dtype=np.int64) * (height * width)
    for c in range(c_n):
        a_x, a_y, b_x, b_y, r_a, r_b = (v[:, c] for v in (ax, ay, bx, by, ra, rb))
        # bounding box of pixels whose centre is within 0.5 px of the shape
        x0 = np.floor(np.minimum(a_x - r_a, b_x - r_b) - 0.5).astype(np.int64)
        x1 = np.ceil(np.maximum(a_x + r_a, b_x + r_b) + 0.5).astype(np.int64)
        y0 = np.floor(np.minimum(a_y - r_a, b_y - r_b) - 0.5).astype(np.int64)
        y1 = np.ceil(np.maximum(a_y + r_a, b_y + r_b) + 0.5).astype(np.int64)
        qw = int(min(width, (x1 - x0).max()))
        qh = int(min(height, (y1 - y0).max()))
        x0 = np.maximum(np.minimum(x0, width - qw), 0)
        y0 = np.maximum(np.minimum(y0, height - qh), 0)
        jj = np.arange(qw, dtype=np.float32)
        ii = np.arange(qh, dtype=np.float32)
        # pixel centres relative to end a, in the cone's frame (t along the axis, s across it)
        px = (x0.astype(np.float32) + 0.5 - a_x)[:, None] + jj[None]  # [F, qw]
        py = (y0.astype(np.float32) + 0.5 - a_y)[:, None] + ii[None]  # [F, qh]
        dx, dy = b_x - a_x, b_y - a_y
        length = np.sqrt(dx * dx + dy * dy)
        short = length < 1e-4
        length = np.where(short, np.float32(1e-4), length)
        ux = np.where(short, np.float32(1.0), dx / length)
        uy = np.where(short, np.float32(0.0), dy / length)
        # tangent lines of the hull: sin(beta) = (ra - rb) / L; when one disc contains the other
        # the hull is just the larger disc (handled below)
        sin_b = (r_a - r_b) / length
        contained = np.abs(sin_b) >= 1.0
        sin_b = np.where(contained, np.float32(0.0), sin_b)
        cos_b = np.sqrt(1.0 - sin_b * sin_b)
        pxu, pxv = (px * ux[:, None])[:, None, :], (px * uy[:, None])[:, None, :]
        pyu, pyv = (py * uy[:, None])[:, :, None], (py * ux[:, None])[:, :, None]
        t = pxu + pyu  # [F, qh, qw]
        s = np.abs(pxv - pyv)
        e3 = (slice(None), None, None)
        r_a3, r_b3, l3, sb3, cb3 = r_a[e3], r_b[e3], length[e3], sin_b[e3], cos_b[e3]
        w = t * cb3 - s * sb3  # position along the tangent line
        d_side = t * sb3 + s * cb3 - r_a3
        s2 = s * s
        d_a = np.sqrt(t * t + s2) - r_a3
        tb = t - l3
        d_b = np.sqrt(tb * tb + s2) - r_b3
        d = np.where(w < 0.0, d_a, np.where(w > l3 * cb3, d_b, d_side))
        if contained.any():
            d = np.where(contained[e3], np.minimum(d_a, d_b), d)
        # flat indices of each frame's box: its corner plus the box's offsets (one full-size add)
        box = np.arange(qh, dtype=np.int64)[:, None] * width + np.arange(qw, dtype=np.int64)[None, :]
        idx = (frame_base + y0 * width + x0)[:, None, None] + box[None]
        dist[idx] = np.minimum(dist[idx], d)
    cov = np.clip(np.float32(0.5) - dist, 0.0, 1.0)
    return cov.reshape(f_n, height, width)


def _median_column(cov: np.ndarray) -> np.ndarray:
    """Per frame, the first column where the cumulative column mass reaches half the total."""
    cum = np.cumsum(cov.sum(axis=1), axis=1)
    return np.argmax(cum >= 0.5 * cum[:, -1:], axis=1)


def render_sequence(subject: int, condition: str, view_deg: float, *, seed: int, sequence: int, frames: int,
                    frame_step: float = 1.0, elevation_deg: float = CAMERA_ELEVATION_DEG,
                    height: int = FRAME_HEIGHT, occlusion: Occlusion | None = None) -> np.ndarray:
    """uint8 array [frames, height, frame_width(height)] (default [frames, 64, 44]) of normalised
    silhouettes of one walk.

    condition: 'nm' (normal), 'bg' (carrying a bag), 'cl' (wearing a coat).
    view_deg: camera azimuth in degrees, any angle (CASIA-B: 0 walking towards the camera, 90 side
    view, 180 walking away; 270 is the other side). elevation_deg: how far above the horizontal the
    camera looks down on the walker. sequence: the repeat index (nm-01..06 -> 1..6); it varies
    speed, gait phase, noise, walking direction and, for bg/cl, the bag or coat. frame_step: gait
    time per output frame in 25-fps video frames. height: 64 or 128 (a multiple of 64).
    occlusion: an ``Occlusion`` hiding part of the body, or None. The same arguments always give
    the same bytes.
    """
    if condition not in _CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {sorted(_CONDITIONS)}")
    frames = int(frames)
    if frames < 1:
        raise ValueError("frames must be >= 1")
    if not frame_step > 0:
        raise ValueError("frame_step must be positive")
    if not -90.0 < elevation_deg < 90.0:
        raise ValueError(f"elevation_deg must be within (-90, 90), got {elevation_deg}")
    width_out = frame_width(height)
    height = int(height)
    p = dict(_subject_params(int(subject), int(seed)))
    q = _sequence_params(int(subject), condition, int(seed), int(sequence))
    t = np.arange(frames, dtype=np.float64) * (float(frame_step) / FPS)
    A, B, RA, RB = _body(p, q, condition, t)

    # a slightly different walking direction is the same as a slightly different camera azimuth
    right, up = _camera(float(view_deg) + q["direction_deg"], float(elevation_deg))
    au, av, bu, bv = A @ right, A @ up, B @ right, B @ up
    top = np.maximum(av + RA, bv + RB).max(1)
    bottom = np.minimum(av - RA, bv - RB).min(1)
    left = np.minimum(au - RA, bu - RB).min(1)
    extent = np.maximum(au + RA, bu + RB).max(1)
    if occlusion is not None and occlusion.kind == "lower":
        # the hidden part no longer counts: the visible rows are scaled to the frame height, and
        # the rasteriser leaves everything below the last row out
        bottom = bottom + occlusion.level * (top - bottom)
    scale = height / (top - bottom)  # pixels per metre, per frame: height -> `height` rows

    # pixel coordinates: x from the silhouette's left edge (+1 px margin), y down from its top
    sc = scale[:, None]
    f32 = np.float32
    ax_, bx_ = ((au - left[:, None]) * sc + 1.0).astype(f32), ((bu - left[:, None]) * sc + 1.0).astype(f32)
    ay_, by_ = ((top[:, None] - av) * sc).astype(f32), ((top[:, None] - bv) * sc).astype(f32)
    ra_, rb_ = (RA * sc).astype(f32), (RB * sc).astype(f32)
    canvas = int(np.ceil(((extent - left) * scale).max())) + 3
    cov = _rasterise(ax_, ay_, bx_, by_, ra_, rb_, height, canvas)
    if occlusion is not None and occlusion.kind == "box":
        centre = _median_column(cov)
        lo = centre + int(round(occlusion.left * height))
        hi = centre + int(round(occlusion.right * height))
        col = np.arange(canvas)[None, :]
        hidden = (col >= lo[:, None]) & (col < hi[:, None])  # [F, canvas]
        r0, r1 = int(round(occlusion.top * height)), int(round(occlusion.bottom * height))
        cov[:, r0:r1] = np.where(hidden[:, None, :], np.float32(0.0), cov[:, r0:r1])

    # centre on the median column of mass, then keep `width_out` columns around it
    median = _median_column(cov)
    half = width_out // 2
    padded = np.pad(cov, ((0, 0), (0, 0), (half, half)))
    cols = median[:, None] + np.arange(width_out)[None]  # padded index of column (median - half + k)
    out = np.take_along_axis(padded, np.broadcast_to(cols[:, None, :], (frames, height, width_out)), axis=2)
    return np.rint(out * 255.0).astype(np.uint8)
