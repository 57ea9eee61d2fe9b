"""Training-time augmentation (gaitbench/data/augment.py): the recipe section, each transform's
geometry and parameters, determinism under a seed, and that it touches training clips only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitbench.config import from_mapping
from gaitbench.data import augment as A
from gaitbench.data.sampling import TripletSampler
from gaitbench.errors import ConfigError


def config(**data) -> A.AugmentConfig:
    return from_mapping(A.AugmentConfig, data, "recipe x.toml [augment]")


def person(frames=6, h=64, w=64) -> np.ndarray:
    """A blocky uint8 figure off the centre, so flips, rotations and warps all change it."""
    clip = np.zeros((frames, h, w), np.uint8)
    clip[:, 8:56, 24:34] = 255
    clip[:, 20:30, 34:44] = 200
    return clip


# --------------------------------------------------------------------------- the recipe section


def test_defaults_are_off_and_parameters_are_the_references():
    cfg = A.AugmentConfig()
    assert not cfg.active and cfg.transforms == []
    # OpenGait's class defaults (opengait/data/transform.py at commit 0efafd4)
    assert (cfg.flip.prob, cfg.rotate.prob, cfg.rotate.degree, cfg.perspective.prob) == (0.5, 0.5, 10.0, 0.5)
    assert (cfg.erasing.prob, cfg.erasing.sl, cfg.erasing.sh, cfg.erasing.r1) == (0.5, 0.05, 0.2, 0.3)


@pytest.mark.parametrize("data, message", [
    ({"transforms": ["flipp"]}, "unknown transform 'flipp'; did you mean 'flip'?"),
    ({"transforms": ["flip", "flip"]}, "each transform may be listed once"),
    ({"transforms": ["flip", "perspective"]}, "'perspective' acts on the frame before the side cut"),
    ({"rotate": {"prob": 1.5}}, "[augment].rotate.prob: expected a probability in [0, 1], got 1.5"),
    ({"erasing": {"sl": 0.3, "sh": 0.2}}, "expected 0 < sl <= sh < 1"),
    ({"rotate": {"angle": 3}}, "unknown key 'angle'"),
])
def test_mistakes_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        config(**data)
    assert message in str(err.value)


def test_recipes_carry_the_section(tmp_path):
    from gaitbench.training.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text('[augment]\ntransforms = ["perspective", "flip"]\n[augment.flip]\nprob = 0.2\n')
    r = load_recipe(path, ["augment.rotate.degree=5"])
    assert r.augment.transforms == ["perspective", "flip"] and r.augment.flip.prob == 0.2
    assert r.augment.rotate.degree == 5 and r.augment.active


# --------------------------------------------------------------------------- the transforms


def test_flip_mirrors_every_frame_or_nothing():
    clip = person()
    assert np.array_equal(A.flip(clip, np.random.default_rng(0), A.FlipConfig(prob=1.0)), clip[..., ::-1])
    assert A.flip(clip, np.random.default_rng(0), A.FlipConfig(prob=0.0)) is clip


def test_rotation_matrix_is_opencvs_convention():
    # OpenCV's getRotationMatrix2D((cx, cy), 90, 1) = [[0, 1, cx - cy], [-1, 0, cx + cy]]
    m = A.rotation_matrix(32, 22, 90.0)
    np.testing.assert_allclose(m[:2], [[0, 1, 10], [-1, 0, 54]], atol=1e-12)
    # the centre stays; a point right of it moves up (counter-clockwise on screen)
    np.testing.assert_allclose(m @ [32, 22, 1], [32, 22, 1], atol=1e-12)
    np.testing.assert_allclose(m @ [42, 22, 1], [32, 12, 1], atol=1e-12)


def test_warp_moves_pixels_where_the_map_says_and_fills_zeros():
    clip = person(frames=2)
    shift = np.array([[1, 0, 3], [0, 1, -2], [0, 0, 1]], float)  # 3 right, 2 up
    out = A.warp(clip, shift)
    assert out.shape == clip.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :-2, 3:], clip[:, 2:, :-3], atol=1e-4)
    assert (out[:, :, :3] == 0).all() and (out[:, -2:, :] == 0).all()
    np.testing.assert_allclose(A.warp(clip, np.eye(3)), clip, atol=1e-4)


def test_rotate_turns_the_clip_about_the_references_centre():
    clip = np.zeros((3, 64, 44), np.uint8)
    clip[:, 22, 40] = 255  # 8 px right of the reference's centre (x 32, y 22)
    rng = np.random.default_rng(5)
    out = A.rotate(clip, rng, A.RotateConfig(prob=1.0, degree=90.0))
    assert out.dtype == np.uint8 and out.shape == clip.shape
    # the same draws: one for the probability, one for the angle
    r = np.random.default_rng(5)
    r.uniform()
    angle = np.radians(r.uniform(-90.0, 90.0))
    y, x = np.unravel_index(out[0].argmax(), out[0].shape)
    assert abs(x - (32 + 8 * np.cos(angle))) <= 1 and abs(y - (22 - 8 * np.sin(angle))) <= 1
    assert (out[0] == out[1]).all() and (out[1] == out[2]).all()  # one angle per clip


def test_perspective_maps_the_drawn_corners_onto_the_frame():
    src = np.array([[7, 0], [57, 0], [60, 64], [3, 64]], float)
    dst = np.array([[0, 0], [64, 0], [64, 64], [0, 64]], float)
    h = A.perspective_matrix(src, dst)
    for s, d in zip(src, dst):
        p = h @ [*s, 1]
        np.testing.assert_allclose(p[:2] / p[2], d, atol=1e-9)
    clip = person()
    out = A.perspective(clip, np.random.default_rng(1), A.PerspectiveConfig(prob=1.0))
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert not np.array_equal(out, clip)
    # a stretch about the middle: the figure gets wider, never narrower
    assert (out[0] > 0).sum() > (clip[0] > 0).sum()


def test_erasing_blanks_one_box_of_the_drawn_size_in_every_frame():
    clip = np.full((4, 64, 44), 255, np.uint8)
    cfg = A.ErasingConfig(prob=1.0)
    for seed in range(20):
        out = A.erasing(clip, np.random.default_rng(seed), cfg)
        zero = out[0] == 0
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        area = zero.sum()
        assert area == len(rows) * len(cols)  # one rectangle
        assert 0.05 * 64 * 44 * 0.8 <= area <= 0.2 * 64 * 44 * 1.2  # the drawn area, up to rounding
        assert all(np.array_equal(out[k] == 0, zero) for k in range(4))
    assert (clip == 255).all()  # the input is not modified


def test_probability_is_respected():
    clip = person()
    cfg = A.FlipConfig(prob=0.2)
    flipped = sum(not np.array_equal(A.flip(clip, np.random.default_rng(s), cfg), clip) for s in range(2000))
    assert 0.17 < flipped / 2000 < 0.23


# --------------------------------------------------------------------------- in the sampler


def _sampler(store, augment=None, seed=0):
    rows = np.arange(len(store))
    return TripletSampler(store, rows, P=3, K=2, frames=6, order="ordered", seed=seed, min_frames=4, augment=augment)


EVERYTHING = {"transforms": ["perspective", "flip", "rotate", "erasing"], "flip": {"prob": 0.5},
              "rotate": {"prob": 0.5}, "perspective": {"prob": 0.5}, "erasing": {"prob": 0.5}}


def test_a_clips_augmentation_is_a_function_of_its_seed():
    aug = A.Augmenter(config(**{**EVERYTHING, "erasing": {"prob": 1.0}}))
    clip = person()

    def run(seed):
        rng = aug.rng(seed)
        return aug.after_cut(aug.before_cut(clip, rng)[..., 10:-10], rng)

    assert np.array_equal(run(1), run(1))
    assert sum(not np.array_equal(run(1), run(s)) for s in range(2, 7)) == 5


def test_augmented_batches_are_a_function_of_the_seed(small_synth):
    store, _ = small_synth
    aug = A.Augmenter(config(**EVERYTHING))
    plain = _sampler(store).next_batch()
    a = [_sampler(store, aug).next_batch() for _ in range(2)]
    assert a[0].sils.shape == plain.sils.shape == (6, 6, 64, 44) and a[0].sils.dtype == np.uint8
    assert np.array_equal(a[0].sils, a[1].sils)  # same seed, same augmentation
    assert np.array_equal(a[0].labels, plain.labels) and np.array_equal(a[0].indices, plain.indices)
    assert not np.array_equal(a[0].sils, plain.sils)  # the same clips, augmented
    other = _sampler(store, aug, seed=1).next_batch()
    assert not np.array_equal(other.sils, a[0].sils)


def test_workers_get_the_same_augmentation(small_synth):
    store, _ = small_synth
    aug = A.Augmenter(config(**EVERYTHING))
    inline = _sampler(store, aug)
    expected = [inline.next_batch().sils for _ in range(2)]
    pooled = TripletSampler(store, np.arange(len(store)), P=3, K=2, frames=6, order="ordered", seed=0,
                            min_frames=4, augment=aug, workers=1)
    try:
        got = [pooled.next_batch().sils for _ in range(2)]
    finally:
        pooled.close()
    assert all(np.array_equal(x, y) for x, y in zip(expected, got))


def test_augmentation_touches_training_clips_only(small_synth, tmp_path, monkeypatch):
    """A run counts its augmented clips: exactly P x K per training step, none at evaluation; the
    recipe's section is recorded in result.json."""
    from gaitbench.run import RunSettings, execute

    store, partition = small_synth
    calls = []
    original = A.Augmenter.after_cut
    monkeypatch.setattr(A.Augmenter, "after_cut", lambda self, clip, rng: calls.append(1) or original(self, clip, rng))
    out = tmp_path / "run"
    execute(RunSettings(method="gaitbase", protocol="casiab", data_root=str(store.root), partition=str(partition),
                        recipe="quick", iterations=2, progress=False, out=str(out),
                        overrides=["sampler.P=2", "sampler.K=2", "sampler.frames=4"]), echo=lambda s: None)
    assert len(calls) == 2 * 2 * 2
    result = json.loads((out / "result.json").read_text())
    recorded = result["config"]["augment"]
    assert recorded["transforms"] == ["rotate", "erasing"]
    assert recorded["rotate"]["prob"] == 0.3 and recorded["erasing"]["prob"] == 0.3
