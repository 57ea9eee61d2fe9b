"""gaitbench's pytest plugin: the method contract as tests, for any method plugin's test suite.

Installed with gaitbench (entry point ``gaitbench`` in the ``pytest11`` group), so a plugin's test
file needs no import::

    import pytest

    @pytest.mark.gaitbench_contract("tinygait", variants=["default", "wide"])
    def test_contract(gaitbench_contract):
        gaitbench_contract.check()

A test that takes the ``gaitbench_contract`` fixture runs once per variant and clause
(``test_contract[wide-padding]``); the marker (on the test, its class or the module's
``pytestmark``) takes the arguments of :func:`gaitbench.testing.check_method`:

- ``method``: the registered name; ``variants``: a list (default: every variant of the method);
- ``skip``: ``{clause: reason}`` for clauses the method opts out of: they show as skipped tests
  with the reason; ``only``: the clauses to run (default: all);
- ``model_kwargs``, ``recipe``, ``seed``: passed on to ``check_method``.

pytest loads this module at every start-up: it imports neither torch nor the kit until a contract
test runs. ``pytest -p no:gaitbench`` leaves it out.
"""

from __future__ import annotations

from typing import Any

import pytest

MARKER = "gaitbench_contract"
FIXTURE = "gaitbench_contract"
_OPTIONS = ("model_kwargs", "recipe", "seed")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(method, variants=None, *, skip=None, only=None, model_kwargs=None, recipe=None, seed=0): "
        f"run the gaitbench method contract in the tests that take the {FIXTURE} fixture, one test per variant "
        "and clause")


class ContractClause:
    """One clause of the method contract for one variant: what the ``gaitbench_contract`` fixture
    gives a test. ``check()`` runs it (``gaitbench.testing.check_method(..., only=[clause])``)."""

    def __init__(self, method: str, variant: str, clause: str, options: dict[str, Any], skipped: str | None):
        self.method, self.variant, self.clause = method, variant, clause
        self.options, self.skipped = options, skipped

    def check(self) -> None:
        __tracebackhide__ = True  # pytest shows the violation, not this plugin's frames
        from .contract import check_method

        check_method(self.method, self.variant, only=[self.clause], **self.options)

    def __repr__(self) -> str:
        return f"<contract clause {self.clause!r} of {self.method} [{self.variant}]>"


def _usage_error(message: str):
    """A collection error that shows ``message`` only (no traceback of this plugin)."""
    pytest.fail(message, pytrace=False)


def _contract_marker(metafunc):
    """``(method, variants, clauses, skip, options)`` from the test's marker."""
    from ..errors import GaitbenchError, did_you_mean
    from .clauses import select_clauses

    where = metafunc.definition.nodeid
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        _usage_error(f"{where} takes the {FIXTURE} fixture: mark it @pytest.mark.{MARKER}('<method>', variants=[...])")
    args, options = list(marker.args), dict(marker.kwargs)
    method = args.pop(0) if args else options.pop("method", None)
    if args:
        options.setdefault("variants", args.pop(0))
    if not isinstance(method, str) or args:
        _usage_error(f"{where}: @pytest.mark.{MARKER} takes the method name and optionally its variants, e.g. "
                     f"@pytest.mark.{MARKER}('tinygait', variants=['default'])")
    variants, skip, only = options.pop("variants", None), options.pop("skip", None) or {}, options.pop("only", None)
    for key in options:
        if key not in _OPTIONS:
            _usage_error(f"{where}: @pytest.mark.{MARKER}: "
                         + did_you_mean(key, ("variants", "skip", "only", *_OPTIONS), "argument"))
    problem = None  # reported outside the except blocks: the message alone, no chained exception
    try:
        clauses = select_clauses(only)
        select_clauses(None, skip)  # the names, and a reason for every clause left out
        if variants is None:
            from ..plugins import get_plugins

            variants = list(get_plugins().method(method).variants)
    except (TypeError, ValueError, GaitbenchError) as exc:
        problem = str(exc)
    if problem:
        _usage_error(f"{where}: @pytest.mark.{MARKER}: {problem}")
    if isinstance(variants, str):
        variants = [variants]
    return method, list(variants), clauses, dict(skip), options


def pytest_generate_tests(metafunc):
    if FIXTURE not in metafunc.fixturenames:
        return
    method, variants, clauses, skip, options = _contract_marker(metafunc)
    params = [pytest.param(ContractClause(method, variant, clause, options, skip.get(clause)),
                           id=f"{variant}-{clause}")
              for variant in variants for clause in clauses]
    metafunc.parametrize(FIXTURE, params, indirect=True)


@pytest.fixture
def gaitbench_contract(request) -> ContractClause:
    """One clause of the method contract for one variant (see :mod:`gaitbench.testing.pytest_plugin`);
    a clause the marker's ``skip`` leaves out is skipped with its reason."""
    case = request.param
    if case.skipped:
        pytest.skip(f"{case.method} [{case.variant}] opts out of clause '{case.clause}': {case.skipped}")
    return case
