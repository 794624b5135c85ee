"""Per-kind registries of components.

An :class:`Entry` is what a plugin registers: a name (plus aliases), a torch-free config
struct, a lazy ``"module:attr"`` factory, a one-line summary and the plugin that provided
it. Registries are filled through the ``caramba_register_<kind>s`` hooks, each of which
receives a :class:`Registrar`: it can add entries of its one kind, attributed to its one
plugin, and nothing else. Registries are frozen once loading ends; a duplicate name is an
error that names both plugins.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from caramba.errors import CarambaError, RegistryError, did_you_mean

__all__ = ["KINDS", "PLURALS", "Entry", "Registrar", "Registry", "UnknownComponent"]

#: Every registry kind. A new kind is a core change; a new component is a plugin.
KINDS: tuple[str, ...] = (
    "layer", "topology", "embedder", "system", "dataset", "tokenizer", "objective", "optimizer",
    "scheduler", "trainer", "verifier", "benchmark", "artifact", "sink", "checkpoint_format",
    "cache_kind", "cache_policy", "kernel_backend", "provider", "process", "command", "switch_policy",
)


#: The registration hook of each kind is ``caramba_register_<plural>``.
PLURALS: dict[str, str] = {
    kind: ("topologies" if kind == "topology" else "processes" if kind == "process"
           else kind[:-1] + "ies" if kind.endswith("policy") else kind + "s")
    for kind in KINDS
}


class UnknownComponent(CarambaError):
    """A manifest or a call named a component that no plugin registered."""

    exit_code = 2


@dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str
    name: str
    config: type | None
    factory: str
    summary: str = ""
    aliases: tuple[str, ...] = ()
    plugin: str = ""
    #: a trainer's struct for its runs' ``train:`` blocks (trainers only)
    run_config: type | None = None
    #: metadata of a plugin-defined kind, for the plugin that consumes it
    extras: Mapping[str, object] = field(default_factory=dict)

    def load(self) -> Any:
        """Import and return the factory (the first use of a component imports its module)."""
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            raise RegistryError(
                f"{self.kind} '{self.name}' from plugin '{self.plugin}' cannot load its factory "
                f"'{self.factory}': {type(exc).__name__}: {exc}",
                hint="reinstall the plugin, or block it with -p no:" + (self.plugin or "NAME"),
            ) from exc
        return obj


class Registry:
    """The components of one kind, by name and alias."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._frozen = False
        #: plugin name -> "distribution version", so a conflict names what to uninstall
        self.origins: dict[str, str] = {}

    # -- registration ------------------------------------------------------------------
    def add(
        self,
        name: str,
        *,
        factory: str,
        config: type | None = None,
        summary: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        run_config: type | None = None,
        plugin: str = "",
        **extras: object,
    ) -> Entry:
        """Register a component for ``plugin``. Plugins call :meth:`Registrar.add`, which names them."""
        if self._frozen:
            raise RegistryError(f"the {self.kind} registry is frozen; register components in a "
                                f"caramba_register_{PLURALS[self.kind]} hook")
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if not isinstance(factory, str) or ":" not in factory:
            raise RegistryError(f"{self.kind} '{name}': factory must be 'module:attr', got {factory!r}",
                                hint="name the factory lazily as a string, so registering imports no torch")
        for label, struct in (("config", config), ("run_config", run_config)):
            if struct is not None and not (isinstance(struct, type) and issubclass(struct, msgspec.Struct)):
                raise RegistryError(f"{self.kind} '{name}': {label} must be a caramba.Config subclass, "
                                    f"got {struct!r}")
        if run_config is not None and self.kind != "trainer":
            raise RegistryError(f"{self.kind} '{name}': only a trainer has a run_config (its runs' train: block)")
        # Field annotations are resolved when a manifest first uses the config (not here: that
        # would cost every `caramba plugins`); the conformance suite checks that they resolve.
        for n in (name, *aliases):
            holder = self._owner(n)
            if holder is not None:
                raise RegistryError(
                    f"{self.kind} '{n}' is registered twice: by {self._describe(holder.plugin)} and by "
                    f"{self._describe(plugin)}",
                    hint="uninstall one of the distributions, or block one with -p no:NAME",
                )
        entry = Entry(self.kind, name, config, factory, summary, tuple(aliases), plugin, run_config, dict(extras))
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def _describe(self, plugin: str) -> str:
        origin = self.origins.get(plugin, "")
        return f"plugin '{plugin}'" + (f" (distribution {origin})" if origin else "")

    def _owner(self, name: str) -> Entry | None:
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            return self._entries[self._aliases[name]]
        return None

    def remove_plugin(self, plugin: str) -> None:
        """Roll back every entry a plugin added (used when its registration fails)."""
        for name in [n for n, e in self._entries.items() if e.plugin == plugin]:
            entry = self._entries.pop(name)
            for alias in entry.aliases:
                self._aliases.pop(alias, None)

    def freeze(self) -> None:
        self._frozen = True

    # -- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> Entry:
        entry = self._owner(name)
        if entry is None:
            raise UnknownComponent(f"unknown {self.kind} '{name}'", hint=self.suggest(name))
        return entry

    def find(self, name: str) -> Entry | None:
        return self._owner(name)

    def suggest(self, name: str) -> str:
        return did_you_mean(name, [*self._entries, *self._aliases])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._owner(name) is not None

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {len(self)} entries>"


class Registrar:
    """What a ``caramba_register_<kind>s`` hook receives: adds entries of one kind for one plugin.

    It cannot read, remove or replace entries, nor add them to another kind or in another
    plugin's name; lookups go through :meth:`caramba.Runtime.get` once loading is over.
    """

    __slots__ = ("_plugin", "_registry")

    def __init__(self, registry: Registry, plugin: str) -> None:
        self._registry = registry
        self._plugin = plugin

    @property
    def kind(self) -> str:
        """The kind this registrar adds (``"layer"``, ``"trainer"``...)."""
        return self._registry.kind

    def add(
        self,
        name: str,
        *,
        factory: str,
        config: type | None = None,
        summary: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        run_config: type | None = None,
        **extras: object,
    ) -> Entry:
        """Register a component.

        Args:
            name: what manifests write (``type: ScaleLayer``, ``ref: dataset.digits``); global
                across installed plugins, so prefix yours.
            factory: ``"module:attr"``, imported the first time the component is used.
            config: the component's :class:`caramba.Config` struct (torch-free).
            summary: the one line ``caramba ls`` shows.
            aliases: other names manifests may use.
            run_config: trainers only: the struct of their runs' ``train:`` blocks.
            extras: metadata of a plugin-defined kind, kept on :attr:`Entry.extras`.
        """
        return self._registry.add(name, factory=factory, config=config, summary=summary, aliases=aliases,
                                  run_config=run_config, plugin=self._plugin, **extras)

    def __repr__(self) -> str:
        return f"<Registrar {self.kind} for plugin '{self._plugin}'>"
