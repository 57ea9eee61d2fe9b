"""Docs stay honest: every hook is documented with its exact signature and has a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from gaitbench import hookspecs

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items()
               if inspect.isfunction(f) and hasattr(f, "gaitbench_spec"))


def test_there_are_hooks():
    assert {"register_methods", "register_protocols", "register_stages", "register_commands", "train_start",
            "train_step_end", "evaluate_end"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_with_signature(hook):
    doc = (REPO / "docs" / "writing-plugins.md").read_text()
    signature = f"{hook}{inspect.signature(getattr(hookspecs, hook))}"
    assert f"### `{signature}`" in doc, f"docs/writing-plugins.md needs a heading ### `{signature}`"


def test_every_documented_hook_exists():
    doc = (REPO / "docs" / "writing-plugins.md").read_text()
    documented = re.findall(r"^### `(\w+)\(", doc, re.M)
    assert sorted(set(documented) - set(HOOKS) - {"check_method"}) == []  # no heading for a hook that is gone


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert re.search(rf"def test_hook_{hook}\b", tests), f"add a test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip()


def test_readme_starts_with_the_three_commands():
    head = (REPO / "README.md").read_text().split("\n")[:8]
    text = "\n".join(head)
    assert 'pip install -e ".[test]"' in text
    assert "gaitbench run --method gaitset --protocol casiab" in text
    assert re.search(r"^pytest\b", text, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"' in ci and re.search(r"^pytest\s*$", ci, re.M)


def test_smallest_plugin_section_is_the_new_plugin_template():
    from gaitbench.scaffold import DOCS_BEGIN, DOCS_END, docs_section

    doc = (REPO / "docs" / "writing-plugins.md").read_text()
    shown = doc.split(DOCS_BEGIN + "\n", 1)[1].split(DOCS_END, 1)[0]
    assert shown == docs_section(), ("docs/writing-plugins.md shows other files than `gaitbench new-plugin` writes: "
                                     "run python -m gaitbench.scaffold docs/writing-plugins.md")
