"""The plugin manager and the typed facade through which the core calls hooks.

Plugins come from entry points in the ``gaitbench`` group (built-in methods included) plus the
core's own built-in plugin. We own the entry-point loop instead of pluggy's
``load_setuptools_entrypoints`` so that one broken plugin costs a warning line, not the program.

Built-in plugins (the core's and the entry points of gaitbench's own distribution) load first,
then the others by entry-point name. The first plugin to register a name keeps it: a later
plugin's method (protocol, stage...) of the same name is refused with one warning naming both
distributions, and everything else keeps working.

Environment switches:
- ``GAITBENCH_STRICT_PLUGINS=1``: a plugin that fails to load or register, or registers a name
  another plugin has, is an error.
- ``GAITBENCH_DISABLE_PLUGINS=a,b``: skip these entry points.
- ``GAITBENCH_TRACE_PLUGINS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from . import hookspecs
from .contracts import Method, Stage, ThroughputCase
from .errors import GaitbenchError, PluginError, did_you_mean
from .registry import Registry

ENTRY_POINT_GROUP = "gaitbench"
CORE_PLUGIN = "gaitbench.builtin"


@dataclass
class PluginInfo:
    """What ``gaitbench plugins`` shows about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": sorted(self.hooks),
            "registered": {k: sorted(v) for k, v in self.registered.items()},
            "errors": list(self.errors),
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("GAITBENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}


def _warn(message: str) -> None:
    print(f"gaitbench: warning: {message}", file=sys.stderr)


def _entry_points() -> list[metadata.EntryPoint]:
    seen, out = set(), []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        # The same distribution can be visible twice (an editable install and a path entry).
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            out.append(ep)
    # gaitbench's own entry points first: a built-in name is never taken by a plugin
    return sorted(out, key=lambda ep: (_distribution_name(ep) != "gaitbench", ep.name))


def _distribution_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"].lower() if dist is not None else ""


class Plugins:
    """The typed facade over pluggy: call sites read like ordinary function calls.

    Registries (:class:`gaitbench.registry.Registry` of methods, protocols, stages, pipelines,
    throughput cases) are collected lazily on first use, one plugin at a time, so a failing plugin
    is named and the others still count.
    """

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo], strict: bool):
        self.pm = pm
        self.infos = infos
        self.strict = strict
        self._registries: dict[str, Registry] = {}

    # -- collector hooks -------------------------------------------------------------------
    def _collect(self, hook_name: str, kind: str, validate: Callable[[Any, str], tuple[str, Any]]) -> Registry:
        if hook_name in self._registries:
            return self._registries[hook_name]
        registry: Registry = Registry(kind, describe=self.describe)
        caller = getattr(self.pm.hook, hook_name)
        # pluggy calls last-registered first; we call in load order (get_hookimpls' order), one
        # plugin at a time, so the first registrant of a name is the first plugin loaded.
        for impl in caller.get_hookimpls():
            plugin = impl.plugin_name
            info = self.infos.setdefault(plugin, PluginInfo(name=plugin))

            def register(obj, _plugin=plugin, _info=info):
                name, value = validate(obj, _plugin)
                if registry.add(name, value, _plugin):
                    _info.registered.setdefault(kind, []).append(name)
                else:
                    _info.errors.append(registry.conflicts[-1])

            try:
                impl.function(register=register)
            except Exception as exc:  # a plugin's bug must not take down the CLI
                message = f"{hook_name} failed: {type(exc).__name__}: {exc}"
                info.errors.append(message)
                if self.strict:
                    raise PluginError(f"plugin {self.describe(plugin)}: {message}") from exc
                _warn(f"plugin {self.describe(plugin)}: {message}")
        self._registries[hook_name] = registry
        self._refuse_collisions(registry)
        return registry

    def _refuse_collisions(self, registry: Registry) -> None:
        """One warning per name a later plugin was refused (the first registrant keeps it); strict
        mode raises instead."""
        if self.strict:
            registry.check()
        for conflict in registry.conflicts:
            _warn(conflict)

    def _checked(self, hook_name: str, kind: str, validate) -> Registry:
        registry = self._collect(hook_name, kind, validate)
        return registry.check() if self.strict else registry

    def _typed(self, hook_name: str, kind: str, cls, key) -> Registry:
        """A registry whose items must be instances of ``cls``, named by ``key(obj)``."""

        def validate(obj, plugin):
            if not isinstance(obj, cls):
                raise PluginError(f"{hook_name} expects a gaitbench.{cls.__name__}, got {type(obj).__name__}")
            return key(obj), obj

        return self._checked(hook_name, kind, validate)

    def methods(self) -> Registry[Method]:
        return self._typed("register_methods", "method", Method, lambda m: m.name)

    def method(self, name: str) -> Method:
        """The method registered as ``name`` (an unknown name: "did you mean" and the list)."""
        return self.methods().get(name)

    def protocols(self) -> Registry:
        from .protocols import Protocol, load_protocol

        def validate(obj, plugin):
            proto = obj if isinstance(obj, Protocol) else load_protocol(obj)
            return proto.name, proto

        return self._checked("register_protocols", "protocol", validate)

    def stages(self) -> Registry[Stage]:
        return self._typed("register_stages", "stage", Stage, lambda st: st.name)

    def _from_methods(self, key: str, kind: str, items: Callable[[Method], Iterable[tuple[str, Any]]]) -> Registry:
        """A registry of what the methods carry (their throughput cases, their pipelines), each
        attributed to the method's plugin."""
        if key not in self._registries:
            registry: Registry = Registry(kind, describe=self.describe)
            methods = self.methods()
            for name in methods:
                plugin = methods.plugin_of(name)
                info = self.infos.setdefault(plugin, PluginInfo(name=plugin))
                for item_name, item in items(methods.get(name)):
                    if registry.add(item_name, item, plugin):
                        info.registered.setdefault(kind, []).append(item_name)
                    else:
                        info.errors.append(registry.conflicts[-1])
            self._registries[key] = registry
            self._refuse_collisions(registry)
        return self._registries[key].check() if self.strict else self._registries[key]

    def throughput_cases(self) -> Registry[ThroughputCase]:
        """Every method's throughput cases, by ``"<method>/<name>"``."""
        return self._from_methods("throughput_cases", "throughput case",
                                  lambda m: ((c.id, c) for c in m.throughput_cases))

    def pipelines(self) -> Registry:
        """The evaluation pipeline files the methods ship, by pipeline name."""
        return self._from_methods("pipelines", "pipeline", lambda m: m.pipelines.items())

    def add_commands(self, cli) -> None:
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            try:
                impl.function(cli=cli)
            except Exception as exc:
                info = self.infos.setdefault(impl.plugin_name, PluginInfo(name=impl.plugin_name))
                info.errors.append(f"register_commands failed: {type(exc).__name__}: {exc}")
                if self.strict:
                    raise PluginError(f"plugin {self.describe(impl.plugin_name)}: {exc}") from exc
                _warn(f"plugin {self.describe(impl.plugin_name)}: register_commands failed: {exc}")

    # -- lifecycle hooks (observers) -------------------------------------------------------
    def train_start(self, trainer) -> None:
        self.pm.hook.train_start(trainer=trainer)

    def train_step_start(self, trainer, step: int) -> None:
        self.pm.hook.train_step_start(trainer=trainer, step=step)

    def train_step_end(self, trainer, step: int, logs) -> None:
        self.pm.hook.train_step_end(trainer=trainer, step=step, logs=logs)

    def train_end(self, trainer) -> None:
        self.pm.hook.train_end(trainer=trainer)

    def evaluate_end(self, run, report) -> None:
        self.pm.hook.evaluate_end(run=run, report=report)

    # -- introspection ----------------------------------------------------------------------
    def describe(self, plugin: str) -> str:
        info = self.infos.get(plugin)
        if info and info.distribution:
            return f"'{plugin}' (distribution {info.distribution} {info.version})"
        return f"'{plugin}'"

    def info(self) -> list[PluginInfo]:
        # Make the registries known so the listing can say what each plugin registered.
        for collect in (self.methods, self.protocols, self.stages, self.throughput_cases, self.pipelines):
            try:
                collect()
            except GaitbenchError as exc:
                _warn(str(exc))
        return [self.infos[k] for k in sorted(self.infos)]


def _hooks_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    return sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))


def _unknown_hooks(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """(plugin, hook) pairs for hook implementations that match no spec (usually a typo)."""
    out = []
    for name, caller in vars(pm.hook).items():
        if isinstance(caller, pluggy.HookCaller) and caller.spec is None:
            for impl in caller.get_hookimpls():
                out.append((impl.plugin_name, name))
    return out


def build_plugin_manager(extra: Iterable[tuple[str, Any]] = (), *, entry_points: bool = True,
                         distributions: Iterable[str] | None = None) -> Plugins:
    """Load the core plugin, the entry points of the ``gaitbench`` group (only those of
    ``distributions`` when given), and ``extra`` (name, plugin) pairs: tests use these to register
    in-process plugins without loading whatever else is installed."""
    strict = _env_flag("GAITBENCH_STRICT_PLUGINS")
    disabled = _disabled()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if _env_flag("GAITBENCH_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()
    infos: dict[str, PluginInfo] = {}

    from . import builtin
    from .io import package_version

    pm.register(builtin, name=CORE_PLUGIN)
    infos[CORE_PLUGIN] = PluginInfo(
        CORE_PLUGIN, "gaitbench", package_version(), builtin.__name__, _hooks_of(pm, builtin)
    )

    only = {d.lower() for d in distributions} if distributions is not None else None
    for ep in _entry_points() if entry_points else []:
        dist = getattr(ep, "dist", None)
        if ep.name in disabled:
            continue
        if only is not None and (dist is None or dist.metadata["Name"].lower() not in only):
            continue
        info = PluginInfo(
            ep.name,
            dist.metadata["Name"] if dist is not None else None,
            dist.version if dist is not None else None,
            ep.value,
        )
        infos[ep.name] = info
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            info.hooks = _hooks_of(pm, plugin)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            info.errors.append(message)
            where = f"entry point {ep.name!r} = {ep.value!r} of distribution {info.distribution} {info.version}"
            if strict:
                raise PluginError(f"plugin failed to load: {where}: {message}") from exc
            _warn(f"plugin failed to load and is skipped: {where}: {message}")

    for name, plugin in extra:
        if name in disabled:
            continue
        pm.register(plugin, name=name)
        infos[name] = PluginInfo(name, None, None, getattr(plugin, "__name__", type(plugin).__name__),
                                 _hooks_of(pm, plugin))

    for plugin_name, hook in _unknown_hooks(pm):
        known = [n for n in vars(hookspecs) if not n.startswith("_") and callable(getattr(hookspecs, n))]
        message = did_you_mean(hook, [k for k in known if k not in {"hookspec", "hookimpl"}], "hook")
        infos.setdefault(plugin_name, PluginInfo(plugin_name)).errors.append(message)
        if strict:
            raise PluginError(f"plugin '{plugin_name}' implements an {message}")
        _warn(f"plugin '{plugin_name}' implements an {message}")
    return Plugins(pm, infos, strict)


_PLUGINS: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin facade, loaded on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = build_plugin_manager()
    return _PLUGINS


def set_plugins(plugins: Plugins | None) -> Plugins | None:
    """Replace the process-wide facade (tests); returns the previous one."""
    global _PLUGINS
    previous, _PLUGINS = _PLUGINS, plugins
    return previous
