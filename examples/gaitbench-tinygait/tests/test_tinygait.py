"""TinyGait's tests. gaitbench's pytest plugin, installed with gaitbench, gives the marker and the
fixture: one test per variant and clause of the method contract (output shapes, packed batches,
gradients, determinism, a training step)."""

import pytest


@pytest.mark.gaitbench_contract("tinygait", variants=["default", "wide"])
def test_contract(gaitbench_contract):
    gaitbench_contract.check()
