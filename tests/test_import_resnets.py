"""OpenGait checkpoints of GaitBase and DeepGaitV2 import into gaitbench models that compute what
OpenGait's own code computes.

The reference embeddings in ``fixtures/opengait_resnets.npz`` were produced by OpenGait's
``Baseline`` (ResNet9 backbone) and ``DeepGaitV2`` classes (``opengait/modeling/models/baseline.py``,
``deepgaitv2.py`` at commit 0efafd4), built from the configs' ``model_cfg`` and run outside this
repository, one sequence per forward as OpenGait evaluates, with the weights of
:func:`reference_state` (drawn from the state-dict layout alone, so this test rebuilds them
without OpenGait) loaded strictly. Here the same weights, saved in OpenGait's checkpoint format,
go through ``import_opengait`` and gaitbench's forward must agree within 1e-5 relative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gaitbench
from gaitbench.checkpoint_import import import_opengait
from gaitbench.errors import GaitbenchError
from gaitbench.plugins import get_plugins

GOLDEN = Path(__file__).with_name("fixtures") / "opengait_resnets.npz"

# case: (method, variant, extra model kwargs (a block type OpenGait has no config for), OpenGait model_cfg)
CASES = {
    "gaitbase-casiab": ("gaitbase", "casiab", {}),
    "deepgaitv2-casiab": ("deepgaitv2", "casiab", {}),
    "deepgaitv2-casiab-2d": ("deepgaitv2", "casiab", {"mode": "2d"}),
    "deepgaitv2-casiab-3d": ("deepgaitv2", "casiab", {"mode": "3d"}),
    "deepgaitv2-gait3d": ("deepgaitv2", "gait3d", {}),
}


def reference_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Random, well-scaled weights for a state-dict layout ``{key: shape}`` (keys sorted, one
    generator): He-scaled convolutions, 1/sqrt(in)-scaled part FCs, BatchNorm affine parameters
    and running statistics near 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100, dtype=torch.long)
        elif key.endswith("running_var") or (len(shape) == 1 and key.endswith("weight")):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1:  # BN bias, running mean
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif key.endswith("fc_bin"):
            state[key] = torch.randn(shape, generator=g) / shape[1] ** 0.5
        else:  # convolutions [out, in, k...]
            state[key] = torch.randn(shape, generator=g) * (2.0 / int(np.prod(shape[1:]))) ** 0.5
    return state


def reference_input() -> torch.Tensor:
    return (torch.rand(2, 10, 64, 44, generator=torch.Generator().manual_seed(7)) > 0.5).float()


def _model(case: str):
    method, variant, kwargs = CASES[case]
    return gaitbench.create_model(method, variant, **kwargs)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("case", ["gaitbase-casiab", "deepgaitv2-casiab", "deepgaitv2-gait3d"])
def test_import_gives_opengaits_embeddings(case, golden, tmp_path):
    method, variant, _ = CASES[case]
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in _model(case).state_dict().items()}
    state = reference_state(shapes, seed=sorted(CASES).index(case))
    ckpt = tmp_path / "opengait.pt"
    torch.save({"model": state, "optimizer": {}, "scheduler": {}, "iteration": 1234}, ckpt)
    info = import_opengait(ckpt, get_plugins().method(method), variant, tmp_path / "gb.pt")
    assert info["keys"] == len(shapes) and info["iteration"] == 1234
    model = gaitbench.load_model(tmp_path / "gb.pt").eval()
    sils = reference_input()
    with torch.no_grad():
        ours = model(sils)["embeddings"].numpy()
        # a padded batch gives the same as one sequence per forward
        packed = model(torch.cat([sils[:, :7], torch.ones(2, 3, 64, 44)], 1)[[1, 0]], torch.tensor([7, 7]))
    theirs = golden[case]
    assert ours.shape == theirs.shape == (2, 256, 16)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-5
    alone = model(sils[:1, :7])["embeddings"].detach().numpy()
    assert np.abs(packed["embeddings"][1].detach().numpy() - alone[0]).max() / np.abs(alone).max() <= 1e-5


@pytest.mark.parametrize("case", ["deepgaitv2-casiab-2d", "deepgaitv2-casiab-3d"])
def test_the_2d_and_3d_block_types_compute_opengaits(case, golden):
    """DeepGaitV2's other block types (no OpenGait config; ``mode`` changed in its model_cfg)."""
    model = _model(case)
    state = reference_state({k: tuple(v.shape) for k, v in model.state_dict().items()},
                            seed=sorted(CASES).index(case))
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        ours = model.eval()(reference_input())["embeddings"].numpy()
    theirs = golden[case]
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() <= 1e-5


def test_a_checkpoint_of_another_depth_is_refused(tmp_path):
    """A DeepGaitV2 GREW/Gait3D checkpoint (1-4-4-1 blocks) is not a CASIA-B one (1-1-1-1): the
    import names the blocks that are left over, and writes nothing."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in _model("deepgaitv2-gait3d").state_dict().items()}
    ckpt = tmp_path / "gait3d.pt"
    torch.save({"model": reference_state(shapes, 0)}, ckpt)
    with pytest.raises(GaitbenchError) as err:
        import_opengait(ckpt, get_plugins().method("deepgaitv2"), "casiab", tmp_path / "gb.pt")
    assert "does not match deepgaitv2 [casiab]" in str(err.value) and "unexpected (" in str(err.value)
    assert "layer2.1.conv1.forward_block.0.weight" in str(err.value)
    assert not (tmp_path / "gb.pt").exists()
