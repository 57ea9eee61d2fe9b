"""One generic registry for every kind of thing plugins register (methods, protocols, stages,
pipelines), and the two lookups that go with it:

- :meth:`Registry.get`: a registered name, or one clear error with "did you mean" and the list
  of what exists;
- :func:`resolve_name_or_path`: a registered name, or a file (a value ending in ``.toml`` or
  containing a ``/`` is a path), so protocols, recipes and pipelines answer "a name or a file?"
  the same way.

Entries may be *lazy*: a ``"package.module:attr"`` string stands for the object and is imported
on first use (:func:`gaitbench.contracts.load_object`), so a plugin never writes a wrapper just to defer importing
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from .contracts import is_lazy, load_object
from .errors import ConfigError, PluginError, did_you_mean

__all__ = ["Entry", "Registry", "looks_like_path", "resolve_name_or_path"]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered item and the plugin that gave it."""

    name: str
    obj: T
    plugin: str


class Registry(Generic[T]):
    """Items of one ``kind`` ("method", "protocol"...) by name, each with the plugin that gave it.

    The first registrant of a name keeps it; a later one is refused and recorded as a conflict
    whose message names both plugins (the plugin manager warns with it, or raises it in strict
    mode; :meth:`check` raises them all). Lazy entries (``"module:attr"``) are loaded on first
    :meth:`get` and then kept.
    """

    def __init__(self, kind: str, describe: Callable[[str], str] = repr):
        self.kind = kind
        self._entries: dict[str, Entry[Any]] = {}
        self._describe = describe
        self.conflicts: list[str] = []

    # -- filling ------------------------------------------------------------------------------
    def add(self, name: str, obj: T | str, plugin: str) -> bool:
        """Register ``obj`` under ``name`` for ``plugin``; False (and a recorded conflict) when
        another plugin has the name already: the first keeps it."""
        if name in self._entries and self._entries[name].plugin != plugin:
            other = self._entries[name].plugin
            self.conflicts.append(
                f"{self.kind} {name!r} is registered by two plugins: {self._describe(other)} keeps it, "
                f"{self._describe(plugin)} is refused; rename one, or disable a plugin with "
                f"GAITBENCH_DISABLE_PLUGINS={plugin}")
            return False
        self._entries[name] = Entry(name, obj, plugin)
        return True

    def check(self) -> "Registry[T]":
        """Raise the conflicts found while filling, if any; returns the registry."""
        if self.conflicts:
            raise PluginError("; ".join(self.conflicts))
        return self

    # -- looking up ---------------------------------------------------------------------------
    def entry(self, name: str) -> Entry[T]:
        """The entry of ``name`` (lazy references loaded); an unknown name is a ConfigError with
        "did you mean" and the names that exist."""
        if name not in self._entries:
            raise ConfigError(did_you_mean(name, self._entries, self.kind))
        found = self._entries[name]
        if is_lazy(found.obj):
            found = self._entries[name] = Entry(name, load_object(found.obj), found.plugin)
        return found

    def get(self, name: str) -> T:
        """The object registered as ``name``."""
        return self.entry(name).obj

    def plugin_of(self, name: str) -> str:
        return self.entry(name).plugin

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """``(name, object)`` in name order (lazy entries loaded)."""
        for name in self.names():
            yield name, self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def looks_like_path(value: str) -> bool:
    """A command-line value that names a file rather than a registered item."""
    return value.endswith(".toml") or "/" in value or "\\" in value


def resolve_name_or_path(value: str, known: Registry[T] | Mapping[str, Any], load: Callable[[Path], T],
                         kind: str) -> T:
    """``load(path)`` when ``value`` is a file path (it must exist), else the item ``value`` of
    ``known`` (a :class:`Registry`, or a mapping from names to what ``load`` takes)."""
    if looks_like_path(value):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"{kind} file not found: {path}")
        return load(path)
    if isinstance(known, Registry):
        return known.get(value)
    if value not in known:
        raise ConfigError(did_you_mean(value, known, kind))
    return load(Path(known[value]))

