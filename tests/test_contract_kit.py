"""The method-contract kit (gaitbench.testing): a correct toy method passes every clause, and each
way of breaking the contract fails the clause it breaks, with a message naming the method, the
variant and the clause."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gaitbench
from gaitbench.errors import ConfigError
from gaitbench.plugins import build_plugin_manager
from gaitbench.testing import (CLAUSES, ContractViolation, check_eval_determinism, check_gradients, check_method,
                               check_outputs, check_padding, check_training_step)
from gaitbench.testing import single_thread  # noqa: F401  (autouse: one intra-op thread)

from .conftest import REPO


pytest_plugins = ["pytester"]

SIZE = (16, 12)  # the toys declare their own input size, as GaitGL's Gait3D network does

QUICK = """name = "quick"
[sampler]
P = 2
K = 2
frames = 4
[optimizer]
name = "adam"
lr = 1e-2
"""


# --------------------------------------------------------------------------- toy methods


class Toy(nn.Module):
    """A method that keeps the contract: a frame conv, a max over each sequence's real frames,
    two strips, a separate FC per strip and, with ``num_classes``, a classifier."""

    def __init__(self, channels=4, parts=2, embed_dim=6, num_classes=None, input_size=SIZE):
        super().__init__()
        self.parts = parts
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.fc = nn.Parameter(torch.randn(parts, channels, embed_dim) * 0.5)
        self.head = nn.Parameter(torch.randn(parts, embed_dim, num_classes)) if num_classes else None

    def valid(self, lengths, t):
        return torch.arange(t)[None, :] < lengths[:, None]

    def pool(self, x, lengths):  # [n, t, c, h, w] -> [n, c, h, w]
        if lengths is not None:
            x = x.masked_fill(~self.valid(lengths, x.shape[1])[:, :, None, None, None], float("-inf"))
        return x.max(1).values

    def embed(self, sils, lengths):
        n, t, h, w = sils.shape
        x = F.leaky_relu(self.conv(sils.reshape(n * t, 1, h, w))).view(n, t, -1, h, w)
        strips = self.pool(x, lengths).flatten(2).view(n, -1, self.parts, h * w // self.parts)
        return torch.einsum("ncp,pcd->ndp", strips.mean(-1) + strips.amax(-1), self.weights())

    def weights(self):
        return self.fc

    def forward(self, sils, lengths=None):
        emb = self.embed(sils, lengths)
        out = {"embeddings": emb}
        if self.head is not None:
            out["logits"] = torch.einsum("ndp,pdk->nkp", emb, self.head)
        return out


class ReturnsTensor(Toy):
    def forward(self, sils, lengths=None):
        return self.embed(sils, lengths)


class FlatEmbeddings(Toy):
    def forward(self, sils, lengths=None):
        return {"embeddings": self.embed(sils, lengths).flatten(1)}


class IntegerEmbeddings(Toy):
    def forward(self, sils, lengths=None):
        return {"embeddings": (self.embed(sils, lengths) * 100).long()}


class LogitsPerSequence(Toy):
    def forward(self, sils, lengths=None):
        out = super().forward(sils, lengths)
        out["logits"] = out["logits"].mean(-1, keepdim=True)  # [N, classes, 1]: not the embeddings' P
        return out


class FixedClassCount(Toy):
    def __init__(self, num_classes=None, **kw):
        super().__init__(num_classes=3, **kw)  # ignores the class count it is given


class PartsGrowWithFrames(Toy):
    def forward(self, sils, lengths=None):
        emb = self.embed(sils, lengths)
        return {"embeddings": emb.repeat(1, 1, sils.shape[1])}


class IgnoresLengths(Toy):
    def forward(self, sils, lengths=None):
        return super().forward(sils, None)


class MeanOverPadding(Toy):
    def pool(self, x, lengths):  # masks the padding to zero, then divides by the padded length
        if lengths is not None:
            x = x * self.valid(lengths, x.shape[1])[:, :, None, None, None]
        return x.mean(1)


class DropsLastFrameWithLengths(Toy):
    def pool(self, x, lengths):
        return super().pool(x, None if lengths is None else lengths - 1 + (lengths == 1).long())


class UnusedParameter(Toy):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.spare = nn.Parameter(torch.zeros(3))


class DetachedFC(Toy):
    def weights(self):
        return self.fc.detach()


class NoLengthsArgument(Toy):
    def forward(self, sils):
        return super().forward(sils)


class InfiniteGradient(Toy):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, sils, lengths=None):
        out = super().forward(sils, lengths)
        out["embeddings"] = out["embeddings"] + torch.sqrt(self.gate)  # sqrt(0): value 0, gradient inf
        return out


class ZeroGradient(Toy):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.offset = nn.Parameter(torch.ones(1))

    def forward(self, sils, lengths=None):
        out = super().forward(sils, lengths)
        out["embeddings"] = out["embeddings"] + 0.0 * self.offset
        return out


class FrozenConv(Toy):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv.weight.requires_grad_(False)


class DropoutInEval(Toy):
    def forward(self, sils, lengths=None):
        out = super().forward(sils, lengths)
        out["embeddings"] = F.dropout(out["embeddings"], 0.5, training=True)
        return out


class CountsCalls(Toy):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, sils, lengths=None):
        self.calls += 1
        return super().forward(sils, lengths)


class UnseededInit(Toy):
    def __init__(self, **kw):
        super().__init__(**kw)
        rng = np.random.default_rng()  # fresh entropy: no run seed reaches it
        self.fc.data = torch.from_numpy(rng.standard_normal(tuple(self.fc.shape)).astype(np.float32))


def toy_methods(recipes: Path) -> list[gaitbench.Method]:
    """Every toy, registered as a method named ``toy-<what it does>``, each with the variant
    ``default`` of input size 16 x 12."""

    def method(name, model, **kw):
        return gaitbench.Method(name=name, description=f"toy: {name}", paper="none", build_model=model,
                                variants=kw.pop("variants", {"default": {"input_size": SIZE}}),
                                default_variant="default", recipes=kw.pop("recipes", recipes), **kw)

    def only_conv(model, recipe):
        return [{"params": list(model.conv.parameters())}]

    return [
        method("toy", Toy, variants={"default": {"input_size": SIZE}, "wide": {"input_size": SIZE, "channels": 8}}),
        method("toy-classifier", Toy, class_count_arg="num_classes"),
        method("toy-returns-tensor", ReturnsTensor),
        method("toy-flat-embeddings", FlatEmbeddings),
        method("toy-integer-embeddings", IntegerEmbeddings),
        method("toy-logits-per-sequence", LogitsPerSequence, class_count_arg="num_classes"),
        method("toy-fixed-class-count", FixedClassCount, class_count_arg="num_classes"),
        method("toy-parts-grow-with-frames", PartsGrowWithFrames),
        method("toy-ignores-lengths", IgnoresLengths),
        method("toy-mean-over-padding", MeanOverPadding),
        method("toy-drops-last-frame", DropsLastFrameWithLengths),
        method("toy-unused-parameter", UnusedParameter),
        method("toy-detached-fc", DetachedFC),
        method("toy-no-lengths-argument", NoLengthsArgument),
        method("toy-infinite-gradient", InfiniteGradient),
        method("toy-zero-gradient", ZeroGradient),
        method("toy-frozen-conv", FrozenConv),
        method("toy-dropout-in-eval", DropoutInEval),
        method("toy-counts-calls", CountsCalls),
        method("toy-unseeded-init", UnseededInit),
        method("toy-nan-regularizer", Toy, regularizer=lambda trainer, outputs: torch.tensor(float("nan"))),
        method("toy-groups-leave-out-fc", Toy, param_groups=only_conv),
        method("toy-no-quick-recipe", Toy, recipes=recipes / "elsewhere"),
    ]


class ToyPlugin:
    def __init__(self, recipes: Path):
        self.recipes = recipes

    @gaitbench.hookimpl
    def register_methods(self, register):
        for m in toy_methods(self.recipes):
            register(m)


def toy_plugins(root: Path):
    """A plugin manager with the toys only (their recipes written under ``root``)."""
    recipes = root / "recipes"
    recipes.mkdir(exist_ok=True)
    (recipes / "quick.toml").write_text(QUICK)
    (recipes / "standstill.toml").write_text(QUICK.replace('"quick"', '"standstill"').replace("1e-2", "0.0"))
    return build_plugin_manager(extra=[("toys", ToyPlugin(recipes))], entry_points=False)


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    return toy_plugins(tmp_path_factory.mktemp("toys"))


# --------------------------------------------------------------------------- the kit on the toys


def test_a_method_that_keeps_the_contract_passes_every_clause(toys):
    assert list(CLAUSES) == ["outputs", "padding", "full_lengths", "gradients", "eval_determinism", "training_step"]
    assert check_method("toy", plugins=toys) == list(CLAUSES)
    assert check_method("toy", "wide", plugins=toys) == list(CLAUSES)
    assert check_method("toy-classifier", plugins=toys) == list(CLAUSES)  # logits [N, 4, P] checked too


# (method, clause it breaks, what the message says)
BROKEN = [
    ("toy-returns-tensor", "outputs", "train mode, 2 sequences of 4 frames: forward returned Tensor, not a dict with "
                                      "'embeddings'"),
    ("toy-flat-embeddings", "outputs", "'embeddings' has shape [2, 12], not [N=2, C, P] (a single vector per "
                                       "sequence is [N, C, 1])"),
    ("toy-integer-embeddings", "outputs", "'embeddings' has dtype torch.int64, not a floating-point type"),
    ("toy-logits-per-sequence", "outputs", "'logits' has 1 parts, 'embeddings' 2"),
    ("toy-fixed-class-count", "outputs", "'logits' has 3 classes; the model was built with 4"),
    ("toy-parts-grow-with-frames", "outputs", "the shape of 'embeddings' depends on the input (eval mode, 1 sequence "
                                              "of 1 frame: [N, 6, 2]; eval mode, 3 sequences of 2 frames: [N, 6, 4]"),
    ("toy-ignores-lengths", "padding", "in a batch with lengths [7, 1, 2, 4], padded to 7 frames with ones, "
                                       "sequences embed differently from alone (sequence 1 (1 frame): 'embeddings' "
                                       "off by"),
    ("toy-mean-over-padding", "padding", "sequence 1 (1 frame): 'embeddings' off by"),
    ("toy-drops-last-frame", "full_lengths", "3 sequences of 5 frames give other 'embeddings' with lengths [5, 5, 5] "
                                             "than without lengths"),
    ("toy-unused-parameter", "gradients", "without lengths: no gradient reaches 1 of 4 parameters (spare)"),
    ("toy-detached-fc", "gradients", "without lengths: no gradient reaches 1 of 3 parameters (fc): unused in forward, "
                                     "or detached?; with lengths [5, 1, 3]: no gradient reaches 1 of 3 parameters (fc)"),
    ("toy-zero-gradient", "gradients", "the gradient is zero everywhere for 1 of 4 parameters (offset)"),
    ("toy-infinite-gradient", "gradients", "NaN or infinite gradient for 1 of 4 parameters (gate)"),
    ("toy-frozen-conv", "gradients", "requires_grad=False (the trainer never updates them) for 1 of 3 parameters "
                                     "(conv.weight)"),
    ("toy-dropout-in-eval", "eval_determinism", "without lengths, two eval-mode forwards of one input give different "
                                                "'embeddings'"),
    ("toy-counts-calls", "eval_determinism", "an eval-mode forward changed the model's state (calls)"),
    ("toy-unseeded-init", "eval_determinism", "two models built from one seed differ in fc: initialisation draws "
                                              "from a source the seed does not set"),
    ("toy-nan-regularizer", "training_step", "one step of recipe 'quick' gives a NaN or infinite loss"),
    ("toy-groups-leave-out-fc", "training_step", "the optimizer does not hold 1 of 3 parameters (fc): they never "
                                                 "train"),
    ("toy-no-quick-recipe", "training_step", "recipe 'quick': unknown recipe of method 'toy-no-quick-recipe' 'quick'"),
]


@pytest.mark.parametrize("name,clause,says", BROKEN, ids=[b[0][4:] for b in BROKEN])
def test_each_broken_toy_fails_its_clause_with_a_clear_message(toys, name, clause, says):
    with pytest.raises(ContractViolation) as caught:
        check_method(name, plugins=toys, only=[clause])
    message = str(caught.value)
    assert isinstance(caught.value, AssertionError) and caught.value.clauses == [clause]
    assert message.startswith(f"method '{name}' [variant 'default'] breaks the method contract, clause '{clause}' "
                              f"({CLAUSES[clause]}): ")
    assert says in message, message
    # the whole contract reports the same clause (outputs first: a toy that breaks it stops there)
    with pytest.raises(ContractViolation) as whole:
        check_method(name, plugins=toys)
    assert clause in whole.value.clauses


def test_the_training_step_must_move_the_weights(toys):
    with pytest.raises(ContractViolation, match=r"clause 'training_step' .*: one step of recipe 'standstill' "
                                                r"\(loss [0-9.]+\) changes no weight"):
        check_method("toy", plugins=toys, only=["training_step"], recipe="standstill")


def test_every_violation_is_reported_and_outputs_stops_the_rest(toys):
    with pytest.raises(ContractViolation) as caught:
        check_method("toy-drops-last-frame", plugins=toys)
    assert caught.value.clauses == ["padding", "full_lengths"]
    assert str(caught.value).startswith("method 'toy-drops-last-frame' [variant 'default'] breaks 2 clauses of the "
                                        "method contract:\n- 'padding' (")
    with pytest.raises(ContractViolation) as caught:
        check_method("toy-returns-tensor", plugins=toys)
    assert caught.value.clauses == ["outputs"]
    assert str(caught.value).endswith("(not checked, as they read these outputs: padding, full_lengths, gradients, "
                                      "eval_determinism, training_step)")


def test_a_model_that_raises_breaks_the_clause_it_raised_in(toys):
    with pytest.raises(ContractViolation) as caught:
        check_method("toy-no-lengths-argument", plugins=toys)  # forward(sils): the embedding step passes lengths
    assert caught.value.clauses == ["padding", "full_lengths", "gradients", "eval_determinism"]
    message = str(caught.value)
    assert message.startswith("method 'toy-no-lengths-argument' [variant 'default'] breaks 4 clauses of the method "
                              "contract:\n- 'padding' (")
    assert message.count("raised TypeError: NoLengthsArgument.forward() got an unexpected keyword argument "
                         "'lengths'") == 4
    assert isinstance(caught.value.__cause__, TypeError)  # the model's own traceback is kept


def test_opting_out_is_explicit(toys):
    assert check_method("toy-ignores-lengths", plugins=toys,
                        skip={"padding": "toy: embeds whole clips only"}) == [c for c in CLAUSES if c != "padding"]
    assert check_method("toy", plugins=toys, only=["padding", "outputs"]) == ["outputs", "padding"]
    with pytest.raises(ValueError, match=r"skip\['padding'\]: say why"):
        check_method("toy-ignores-lengths", plugins=toys, skip={"padding": " "})
    with pytest.raises(TypeError, match="skip maps each contract clause left out to the reason"):
        check_method("toy-ignores-lengths", plugins=toys, skip={"padding"})
    with pytest.raises(ValueError, match="unknown contract clause 'paddings'; did you mean 'padding'"):
        check_method("toy", plugins=toys, only=["paddings"])
    with pytest.raises(ConfigError, match="unknown variant of method 'toy' 'wider'; did you mean 'wide'"):
        check_method("toy", "wider", plugins=toys)


def test_clauses_run_on_a_model_too():
    check_outputs(Toy(), input_size=SIZE)
    check_gradients(Toy(num_classes=5), input_size=SIZE)
    with pytest.raises(ContractViolation, match=r"^model IgnoresLengths breaks the method contract, clause 'padding'"):
        check_padding(IgnoresLengths(), input_size=SIZE)
    with pytest.raises(ContractViolation, match=r"^my toy breaks the method contract, clause 'eval_determinism'"):
        check_eval_determinism(DropoutInEval(), input_size=SIZE, where="my toy")


def test_global_state_is_restored(toys):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # check_method runs on one thread, then restores the caller's count
        random.seed(5), np.random.seed(5), torch.manual_seed(5)
        expected = random.random(), np.random.random(), torch.rand(1)
        random.seed(5), np.random.seed(5), torch.manual_seed(5)
        check_method("toy", plugins=toys)
        assert torch.get_num_threads() == 2
        assert (random.random(), np.random.random()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
        random.seed(5), np.random.seed(5), torch.manual_seed(5)
        check_training_step(toys.method("toy"))  # a clause function that seeds a model build
        assert (random.random(), np.random.random()) == expected[:2] and torch.equal(torch.rand(1), expected[2])
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the pytest plugin


def test_pytest_plugin_is_registered_and_cheap():
    from importlib.metadata import entry_points

    assert "gaitbench.testing.pytest_plugin" in {ep.value for ep in entry_points(group="pytest11")}
    code = ("import sys, gaitbench.testing.pytest_plugin\n"
            "print(sorted(m for m in ('torch', 'numpy', 'gaitbench.testing.contract') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# The inner session's plugins are the toys, from collection on (the marker reads the variants then).
CONFTEST = """
from gaitbench.plugins import set_plugins
from tests.test_contract_kit import toy_plugins

def pytest_configure(config):
    config.previous_plugins = set_plugins(toy_plugins(config.rootpath))

def pytest_unconfigure(config):
    set_plugins(config.previous_plugins)
"""


def test_pytest_plugin_runs_a_test_per_variant_and_clause(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_toys="""
        import pytest

        @pytest.mark.gaitbench_contract("toy", skip={"training_step": "toy: trained elsewhere"})  # every variant
        def test_contract(gaitbench_contract):
            gaitbench_contract.check()

        @pytest.mark.gaitbench_contract("toy-ignores-lengths", variants=["default"], only=["outputs", "padding"])
        def test_broken(gaitbench_contract):
            gaitbench_contract.check()
    """)
    result = pytester.runpytest("-v", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=11, skipped=2, failed=1)
    result.stdout.fnmatch_lines([
        "*test_contract?default-outputs? PASSED*",
        "*test_contract?wide-eval_determinism? PASSED*",
        "*test_broken?default-padding? FAILED*",
        "*ContractViolation: method 'toy-ignores-lengths' [[]variant 'default'[]] breaks the method contract, "
        "clause 'padding'*",
        "SKIPPED*toy [[]wide[]] opts out of clause 'training_step': toy: trained elsewhere",
    ])


@pytest.mark.parametrize("marker,says", [
    (None, "test_it takes the gaitbench_contract fixture: mark it @pytest.mark.gaitbench_contract"),
    ('"toy", varients=["default"]', "unknown argument 'varients'; did you mean 'variants'?"),
    ('"toy", skip={"padding": ""}', "skip['padding']: say why the clause does not apply"),
    ('"toy", only=["gradient"]', "unknown contract clause 'gradient'; did you mean 'gradients'?"),
    ('"toys"', "unknown method 'toys'; did you mean 'toy'?"),
])
def test_pytest_plugin_usage_errors(pytester, marker, says):
    pytester.makeconftest(CONFTEST)
    mark = f"@pytest.mark.gaitbench_contract({marker})" if marker else ""
    pytester.makepyfile(test_usage=f"""
        import pytest

        {mark}
        def test_it(gaitbench_contract):
            gaitbench_contract.check()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*ERROR collecting test_usage.py*"])
    assert says in result.stdout.str()
    assert "Traceback" not in result.stdout.str() and "During handling" not in result.stdout.str()


# --------------------------------------------------------------------------- the built-in methods


def test_every_builtin_method_runs_the_contract_in_its_tests():
    """Each built-in plugin's tests declare the contract of its methods (the quick variant at least)."""
    plugins = build_plugin_manager(distributions={"gaitbench"})
    for name, method in plugins.methods().items():
        package = Path(method.recipes).parent  # the plugin's package: its recipes live in it
        tests = "".join(p.read_text() for p in (package / "tests").glob("test_*.py"))
        declared = re.findall(rf'@pytest\.mark\.gaitbench_contract\("{name}", variants=\[([^\]]*)\]', tests)
        assert declared and any('"quick"' in d for d in declared), (
            f"{package / 'tests'}: declare @pytest.mark.gaitbench_contract(\"{name}\", variants=[\"quick\", ...])")


def test_docs_show_the_example_tests_and_every_clause():
    doc = (REPO / "docs" / "writing-plugins.md").read_text()
    example = (REPO / "examples" / "gaitbench-tinygait" / "tests" / "test_tinygait.py").read_text()
    code = example.split('"""', 2)[2].strip()  # the example's test file after its docstring
    assert f"```python\n{code}\n```" in doc
    assert re.findall(r"^\| `(\w+)` \|", doc, re.M) == list(CLAUSES)  # the table of clauses, in order
