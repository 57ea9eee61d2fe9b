"""Every recipe of every built-in method builds the optimizer its source prescribes: the class and
the flags, written down here from the reference configs and papers, independently of the recipe
files (a recipe that drifts from its source, or a factory that turns "SGD, momentum 0.9" into
Nesterov SGD, fails here). A new recipe needs a row."""

from __future__ import annotations

import pytest
import torch

from gaitbench.plugins import get_plugins
from gaitbench.training.recipe import resolve_recipe
from gaitbench.training.trainer import build_optimizer

SGD = "SGD"
ADAM = "Adam"
# (method, recipe): (optimizer class, lr, weight decay, SGD momentum or None, source)
EXPECTED = {
    ("gaitset", "casiab"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/gaitset/gaitset.yaml"),
    ("gaitset", "oumvlp"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitset/gaitset_OUMVLP.yaml"),
    ("gaitset", "grew"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitset/gaitset_GREW.yaml"),
    # the config's "momentum: 0.9" is dropped by torch's Adam in OpenGait (an unknown argument)
    ("gaitset", "gait3d"): (ADAM, 1e-3, 5e-4, None, "OpenGait configs/gaitset/gaitset_gait3d_parsing.yaml"),
    ("gaitset", "quick"): (ADAM, 1e-3, 0.0, None, "gaitbench's CPU recipe"),
    ("gaitpart", "casiab"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitpart/gaitpart.yaml"),
    ("gaitpart", "oumvlp"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitpart/gaitpart_OUMVLP.yaml"),
    ("gaitpart", "grew"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitpart/gaitpart_GREW.yaml"),
    ("gaitpart", "gait3d"): (ADAM, 1e-3, 5e-4, None, "OpenGait configs/gaitpart/gaitpart_gait3d_parsing.yaml"),
    ("gaitpart", "quick"): (ADAM, 1e-3, 0.0, None, "gaitbench's CPU recipe"),
    ("gaitgl", "casiab"): (ADAM, 1e-4, 5e-4, None, "OpenGait configs/gaitgl/gaitgl.yaml"),
    ("gaitgl", "oumvlp"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitgl/gaitgl_OUMVLP.yaml"),
    ("gaitgl", "grew"): (ADAM, 1e-4, 0.0, None, "OpenGait configs/gaitgl/gaitgl_GREW.yaml"),
    ("gaitgl", "gait3d"): (ADAM, 1e-3, 5e-4, None, "OpenGait configs/gaitgl/gaitgl_gait3d_parsing.yaml"),
    # GaitGL TPAMI Sec. 4.2: Adam, lr 1e-4 on CASIA-B (weight decay from OpenGait's gaitgl.yaml);
    # SGD, lr 0.1 on OU-MVLP, GREW and Gait3D (momentum and weight decay as OpenGait's SGD configs)
    ("gaitgl", "tpami"): (ADAM, 1e-4, 5e-4, None, "GaitGL TPAMI Sec. 4.2"),
    ("gaitgl", "tpami-oumvlp"): (SGD, 0.1, 5e-4, 0.9, "GaitGL TPAMI Sec. 4.2"),
    ("gaitgl", "tpami-grew"): (SGD, 0.1, 5e-4, 0.9, "GaitGL TPAMI Sec. 4.2"),
    ("gaitgl", "tpami-gait3d"): (SGD, 0.1, 5e-4, 0.9, "GaitGL TPAMI Sec. 4.2"),
    # the HID reports: "All experiments take Adam as the optimizer, and the learning rate is 1e-4"
    ("gaitgl", "hid2020"): (ADAM, 1e-4, 0.0, None, "GaitGL HID 2020 report Sec. 2.2"),
    ("gaitgl", "hid2020-oumvlp"): (ADAM, 1e-4, 0.0, None, "GaitGL HID 2020 report Sec. 2.2"),
    ("gaitgl", "quick"): (ADAM, 1e-3, 0.0, None, "gaitbench's CPU recipe"),
    ("gaitgl", "quick-hid"): (ADAM, 2e-3, 0.0, None, "gaitbench's CPU recipe for the synthetic HID set"),
    ("gaitmask", "hid2021"): (ADAM, 1e-4, 0.0, None, "GaitMask HID 2021 report Sec. 1.3"),
    ("gaitmask", "hid2021-oumvlp"): (ADAM, 1e-4, 0.0, None, "GaitMask HID 2021 report Sec. 1.3"),
    ("gaitmask", "quick"): (ADAM, 1e-3, 0.0, None, "gaitbench's CPU recipe"),
    ("gaitmask", "quick-hid"): (ADAM, 3e-3, 0.0, None, "gaitbench's CPU recipe for the synthetic HID set"),
    ("gaitbase", "casiab"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/gaitbase/gaitbase_da_casiab.yaml"),
    ("gaitbase", "oumvlp"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/gaitbase/gaitbase_oumvlp.yaml"),
    ("gaitbase", "grew"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/gaitbase/gaitbase_da_grew.yaml"),
    ("gaitbase", "gait3d"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/gaitbase/gaitbase_da_gait3d.yaml"),
    ("gaitbase", "quick"): (SGD, 0.05, 5e-4, 0.9, "gaitbench's CPU recipe"),
    ("deepgaitv2", "casiab"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/deepgaitv2/DeepGaitV2_casiab.yaml"),
    ("deepgaitv2", "oumvlp"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/deepgaitv2/DeepGaitV2_oumvlp.yaml"),
    ("deepgaitv2", "grew"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/deepgaitv2/DeepGaitV2_grew.yaml"),
    ("deepgaitv2", "gait3d"): (SGD, 0.1, 5e-4, 0.9, "OpenGait configs/deepgaitv2/DeepGaitV2_gait3d.yaml"),
    ("deepgaitv2", "quick"): (SGD, 0.05, 5e-4, 0.9, "gaitbench's CPU recipe"),
}


def all_recipes():
    return sorted((name, recipe) for name, method in get_plugins().methods().items()
                  for recipe in method.recipe_names())


def test_every_recipe_has_a_reference_row():
    assert all_recipes() == sorted(EXPECTED)


@pytest.mark.parametrize("method,recipe_name", sorted(EXPECTED))
def test_recipe_builds_the_reference_optimizer(method, recipe_name):
    kind, lr, weight_decay, momentum, source = EXPECTED[(method, recipe_name)]
    recipe = resolve_recipe(get_plugins().method(method), recipe_name)
    opt = build_optimizer(torch.nn.Linear(3, 2), recipe)
    group = opt.param_groups[0]
    assert type(opt) is getattr(torch.optim, kind), (source, type(opt))
    assert (group["lr"], group["weight_decay"]) == pytest.approx((lr, weight_decay)), source
    assert len(opt.param_groups) == 1  # weight decay on every parameter, as the reference's optimizers
    if kind == SGD:
        # classical momentum, as torch.optim.SGD(momentum=0.9) in the reference: not Nesterov
        assert (group["momentum"], group["nesterov"], group["dampening"]) == (momentum, False, 0), source
    else:
        assert (group["betas"], group["eps"], group["amsgrad"]) == ((0.9, 0.999), 1e-8, False), source


def test_nesterov_is_available_when_asked_for_and_refused_for_adam():
    from gaitbench.errors import ConfigError

    recipe = resolve_recipe(get_plugins().method("gaitset"), "casiab", ["optimizer.nesterov=true"])
    assert build_optimizer(torch.nn.Linear(3, 2), recipe).param_groups[0]["nesterov"] is True
    with pytest.raises(ConfigError, match="nesterov"):
        resolve_recipe(get_plugins().method("gaitgl"), "casiab", ["optimizer.nesterov=true"])
