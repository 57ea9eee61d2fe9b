"""The method-contract kit and the helpers of method tests, gaitbench's own and third-party ones.

- :func:`check_method` runs the method contract (:data:`CLAUSES`) on a registered method and raises
  :class:`ContractViolation`, an ``AssertionError``, naming the method, variant and clause; each
  clause is also a function on a model (``check_outputs``, ``check_padding``, ``check_full_lengths``,
  ``check_gradients``, ``check_eval_determinism``) or on a method (``check_training_step``).
- The pytest plugin (:mod:`gaitbench.testing.pytest_plugin`, entry point ``gaitbench`` in the
  ``pytest11`` group) runs the contract from a marker::

      @pytest.mark.gaitbench_contract("tinygait", variants=["default", "wide"])
      def test_contract(gaitbench_contract):
          gaitbench_contract.check()

- Helpers: ``random_silhouettes``, ``moving_blobs``, ``hid_like_embeddings``, ``parameter_count``,
  and ``single_thread``, an autouse fixture for the module that imports it::

      from gaitbench.testing import random_silhouettes, single_thread  # noqa: F401 (an autouse fixture)

Names are imported when first used, so that loading the pytest plugin (at every pytest start-up)
imports neither torch nor pytest's fixtures here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "CLAUSES": ".clauses",
    "CLASSES": ".contract",
    "PADDING_LENGTHS": ".contract",
    "RELATIVE_TOLERANCE": ".contract",
    "ContractViolation": ".contract",
    "check_eval_determinism": ".contract",
    "check_full_lengths": ".contract",
    "check_gradients": ".contract",
    "check_method": ".contract",
    "check_outputs": ".contract",
    "check_padding": ".contract",
    "check_training_step": ".contract",
    "HidLikeEmbeddings": ".helpers",
    "hid_like_embeddings": ".helpers",
    "moving_blobs": ".helpers",
    "parameter_count": ".helpers",
    "random_silhouettes": ".helpers",
    "single_thread": ".helpers",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports on first use
    from .clauses import CLAUSES  # noqa: F401
    from .contract import (CLASSES,  # noqa: F401 PADDING_LENGTHS, RELATIVE_TOLERANCE, ContractViolation, check_eval_determinism,
                           check_full_lengths, check_gradients, check_method, check_outputs, check_padding,
                           check_training_step)
    from .helpers import (HidLikeEmbeddings, hid_like_embeddings,  # noqa: F401 moving_blobs, parameter_count, random_silhouettes,
                          single_thread)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
