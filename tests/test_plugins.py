"""The plugin system: registration, duplicates, failures, switches, and each hook."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import gaitbench
from gaitbench.errors import ConfigError, GaitbenchError, PluginError
from gaitbench.plugins import build_plugin_manager, get_plugins

from .conftest import use_plugins

RECIPES = Path(__file__).parent / "fixtures"


def make_method(name="dummy"):
    return gaitbench.Method(name=name, description=f"{name} method", paper="-", build_model=lambda **kw: None,
                            variants={"v": {}}, default_variant="v", recipes=RECIPES)


class MethodPlugin:
    def __init__(self, *names):
        self.names = names

    @gaitbench.hookimpl
    def register_methods(self, register):
        for n in self.names:
            register(make_method(n))


def test_builtin_method_comes_through_entry_point():
    plugins = get_plugins()
    assert plugins.methods().plugin_of("gaitset") == "gaitset"
    info = {i.name: i for i in plugins.info()}["gaitset"]
    assert info.distribution == "gaitbench" and info.registered["method"] == ["gaitset"]
    assert gaitbench.list_methods("gait*") == ["gaitbase", "gaitgl", "gaitmask", "gaitpart", "gaitset"]
    assert gaitbench.list_methods("*set") == ["gaitset"]


def test_hook_register_methods():
    plugins = use_plugins(("extra", MethodPlugin("alpha", "beta")))
    methods = plugins.methods()
    assert {"alpha", "beta", "gaitset"} <= set(methods)
    assert methods.plugin_of("alpha") == "extra"
    assert gaitbench.list_methods("a*") == ["alpha"]


def test_duplicate_method_name_the_first_keeps_it_one_warning(capsys):
    plugins = use_plugins(("first", MethodPlugin("same", "alpha")), ("second", MethodPlugin("same", "beta")))
    methods = plugins.methods()
    assert methods.plugin_of("same") == "first"
    assert {"alpha", "beta", "gaitset"} <= set(methods)  # everything else keeps working
    plugins.methods()  # asked again: no second warning
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1, warnings
    assert "'same'" in warnings[0] and "'first'" in warnings[0] and "keeps it" in warnings[0]
    assert "'second'" in warnings[0] and "refused" in warnings[0] and "GAITBENCH_DISABLE_PLUGINS=second" in warnings[0]
    info = {i.name: i for i in plugins.info()}
    assert info["second"].registered["method"] == ["beta"] and "refused" in info["second"].errors[0]


def test_a_plugin_never_takes_a_builtin_name(capsys):
    plugins = use_plugins(("newcomer", MethodPlugin("gaitset")))
    assert plugins.methods().plugin_of("gaitset") == "gaitset"
    assert "'newcomer' is refused" in capsys.readouterr().err


def test_duplicate_method_name_strict_is_an_error(monkeypatch):
    monkeypatch.setenv("GAITBENCH_STRICT_PLUGINS", "1")
    plugins = use_plugins(("first", MethodPlugin("same")), ("second", MethodPlugin("same")))
    with pytest.raises(PluginError) as err:
        plugins.methods()
    assert "'first'" in str(err.value) and "'second'" in str(err.value) and "'same'" in str(err.value)


def test_unknown_method_did_you_mean():
    with pytest.raises(GaitbenchError, match=r"did you mean 'gaitset'\?.*Available: deepgaitv2, gaitbase, gaitgl, gaitmask, gaitpart, gaitset"):
        get_plugins().method("gaitsett")


class BrokenRegister:
    @gaitbench.hookimpl
    def register_methods(self, register):
        raise RuntimeError("boom")


def test_failing_register_is_a_warning_not_a_crash(capsys):
    plugins = use_plugins(("bad", BrokenRegister()))
    assert "gaitset" in plugins.methods()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'bad'" in err and "RuntimeError: boom" in err
    assert any("boom" in e for e in plugins.infos["bad"].errors)


def test_failing_register_is_an_error_when_strict(monkeypatch):
    monkeypatch.setenv("GAITBENCH_STRICT_PLUGINS", "1")
    plugins = use_plugins(("bad", BrokenRegister()))
    with pytest.raises(PluginError, match="boom"):
        plugins.methods()


class Typo:
    @gaitbench.hookimpl
    def register_method(self, register):  # missing "s"
        pass


def test_hook_typo_is_reported(capsys, monkeypatch):
    use_plugins(("typo", Typo()))
    err = capsys.readouterr().err
    assert "'typo'" in err and "register_method" in err and "did you mean 'register_methods'" in err
    monkeypatch.setenv("GAITBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="register_method"):
        use_plugins(("typo", Typo()))


def test_disable_plugins_switch(monkeypatch):
    monkeypatch.setenv("GAITBENCH_DISABLE_PLUGINS", "gaitset, gaitpart,gaitgl,gaitmask,gaitbase, deepgaitv2, extra")
    plugins = use_plugins(("extra", MethodPlugin("alpha")))
    assert len(plugins.methods()) == 0


def test_registering_a_wrong_type_is_reported(capsys):
    class Wrong:
        @gaitbench.hookimpl
        def register_methods(self, register):
            register("not a method")

    plugins = use_plugins(("wrong", Wrong()))
    assert "gaitset" in plugins.methods()
    assert "expects a gaitbench.Method" in capsys.readouterr().err


def test_hook_register_protocols(tmp_path):
    src = Path(gaitbench.__file__).parents[1] / "protocols" / "casiab.toml"
    text = src.read_text().replace('name = "casiab"', 'name = "mine"')
    path = tmp_path / "mine.toml"
    path.write_text(text)

    class P:
        @gaitbench.hookimpl
        def register_protocols(self, register):
            register(path)

    plugins = use_plugins(("protos", P()))
    protocols = plugins.protocols()
    assert protocols.plugin_of("mine") == "protos" and protocols.plugin_of("casiab") == "gaitbench.builtin"
    assert protocols.get("mine").evaluation.views == protocols.get("casiab").evaluation.views


def test_hook_register_stages():
    import torch

    from gaitbench.evaluation.stages import StageInput, run_stages, with_distance

    def keep_distance(data):  # a distance stage (the contract: it returns a new distance) changing nothing
        return with_distance(data, data.current_distance(), "identity")

    stage = gaitbench.Stage(name="identity", description="returns the distances unchanged", apply=keep_distance)

    class S:
        @gaitbench.hookimpl
        def register_stages(self, register):
            register(stage)

    plugins = use_plugins(("stages", S()))
    registered = plugins.stages()
    assert registered.get("identity") is stage and registered.plugin_of("identity") == "stages"
    assert plugins.infos["stages"].registered["stage"] == ["identity"]
    # the registered stage runs as the evaluation runs stages
    g = torch.Generator().manual_seed(0)
    probe, gallery = torch.randn(3, 4, 2, generator=g), torch.randn(5, 4, 2, generator=g)
    distance, records = run_stages(StageInput(probe, gallery, "euc"), [(registered.get("identity"), {})])
    assert torch.equal(distance, StageInput(probe, gallery, "euc").current_distance())
    assert [r["name"] for r in records] == ["identity"]


def test_a_method_carries_its_throughput_cases_and_pipelines(tmp_path):
    """Throughput cases and pipelines come with the Method that owns them (no second hook naming
    the method by string); the registries attribute them to the method's plugin."""
    cases = gaitbench.ThroughputCase.standard("tiny", "quick", P=2, K=2, frames=4, recipe="quick")
    pipe = tmp_path / "mine.toml"
    pipe.write_text('name = "mine"\nstages = ["rerank"]\n')
    base = get_plugins().method("gaitset")
    method = dataclasses.replace(base, name="cased", throughput_cases=cases, pipelines={"mine": pipe})

    class T:
        @gaitbench.hookimpl
        def register_methods(self, register):
            register(method)

    plugins = use_plugins(("cases", T()))
    registry = plugins.throughput_cases()
    assert registry.get("cased/tiny-train") == dataclasses.replace(cases[0], method="cased")
    assert registry.plugin_of("cased/tiny-train") == "cases"
    assert {"gaitgl/casiab-train", "gaitgl/oumvlp-train", "gaitset/casiab-infer-1x80"} <= set(registry)
    assert plugins.pipelines().get("mine") == pipe and plugins.pipelines().plugin_of("hid2021") == "gaitmask"
    assert plugins.infos["cases"].registered["throughput case"] == [c.id for c in method.throughput_cases]
    with pytest.raises(ValueError, match="kind must be"):
        gaitbench.ThroughputCase("x", "training", "v", frames=1)
    with pytest.raises(ConfigError, match="throughput case 'x-train' uses unknown variant 'huge'"):
        dataclasses.replace(base, throughput_cases=gaitbench.ThroughputCase.standard("x", "huge", P=2, K=2))


def test_hook_register_commands():
    class C:
        @gaitbench.hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello():
                """Say hello."""
                click.echo("hello from a plugin")

    plugins = use_plugins(("cmds", C()))
    group = click.Group("test")
    plugins.add_commands(group)
    result = CliRunner().invoke(group, ["hello"])
    assert result.output == "hello from a plugin\n"


class Recorder:
    def __init__(self):
        self.calls = []

    @gaitbench.hookimpl
    def train_start(self, trainer):
        self.calls.append(("train_start", trainer.step))

    @gaitbench.hookimpl
    def train_step_start(self, trainer, step):
        self.calls.append(("train_step_start", step, trainer.step))

    @gaitbench.hookimpl
    def train_step_end(self, trainer, step, logs):
        self.calls.append(("train_step_end", step, float(logs["loss"])))
        with pytest.raises(TypeError):
            logs["loss"] = 0  # read-only: a hook cannot change what is recorded

    @gaitbench.hookimpl
    def train_end(self, trainer):
        self.calls.append(("train_end", trainer.step))

    @gaitbench.hookimpl
    def evaluate_end(self, run, report):
        self.calls.append(("evaluate_end", run.method, sorted(report.metrics)))


@pytest.fixture(scope="module")
def recorded_run(small_synth, tmp_path_factory):
    from gaitbench.run import RunSettings, execute

    store, partition = small_synth
    recorder = Recorder()
    plugins = build_plugin_manager(extra=[("rec", recorder)], distributions={"gaitbench"})
    settings = RunSettings(method="gaitset", protocol="casiab", data_root=str(store.root), partition=str(partition),
                           recipe="quick", iterations=3, out=str(tmp_path_factory.mktemp("hooks")),
                           progress=False, overrides=["sampler.P=4", "sampler.K=4"])
    execute(settings, plugins=plugins, echo=lambda s: None)
    return recorder.calls


def test_hook_train_start(recorded_run):
    assert recorded_run[0] == ("train_start", 0)


def test_hook_train_step_start(recorded_run):
    starts = [c for c in recorded_run if c[0] == "train_step_start"]
    assert starts == [("train_step_start", s, s - 1) for s in (1, 2, 3)]  # before the step runs


def test_hook_train_step_end(recorded_run):
    steps = [c for c in recorded_run if c[0] == "train_step_end"]
    assert [c[1] for c in steps] == [1, 2, 3] and all(c[2] >= 0 for c in steps)


def test_hook_train_end(recorded_run):
    assert ("train_end", 3) in recorded_run
    names = [c[0] for c in recorded_run]
    assert names.index("train_end") > max(i for i, n in enumerate(names) if n == "train_step_end")


def test_hook_evaluate_end(recorded_run):
    assert recorded_run[-1] == ("evaluate_end", "gaitset", ["BG/rank1", "CL/rank1", "NM/rank1"])


def test_plugins_json_lists_everything():
    from gaitbench.cli import cli

    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listing = {p["name"]: p for p in json.loads(result.output)}
    assert listing["gaitset"]["registered"] == {"method": ["gaitset"], "throughput case": [
        "gaitset/casiab-infer-16x80", "gaitset/casiab-infer-1x80", "gaitset/casiab-train"]}
    assert listing["gaitset"]["hooks"] == ["register_methods"]
    assert "casiab" in listing["gaitbench.builtin"]["registered"]["protocol"]
