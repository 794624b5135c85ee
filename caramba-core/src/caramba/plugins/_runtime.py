"""The :class:`Runtime`: one pluggy ``PluginManager`` and the registries it fills.

There is no global runtime. Embedding code creates its own::

    rt = caramba.Runtime(autoload=False, plugins=[my_plugin_module])
    manifest = rt.load_manifest_text(yaml_text)

Entry points in the group ``caramba`` are loaded one at a time by caramba's own loop, so a
plugin that fails to import or to register is recorded as failed (with its distribution,
version and the reason) and rolled back, while every other plugin keeps working.
``CARAMBA_STRICT_PLUGINS=1`` (or ``strict=True``) makes such a failure fatal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from caramba.errors import ManifestError, PluginError, Problem, UsageError, did_you_mean
from caramba.plugins import _discovery as discovery
from caramba.plugins import hooks
from caramba.plugins._registry import KINDS, PLURALS, Entry, Registrar, Registry
from caramba.plugins._requirements import check_requirement, requirement_name

if TYPE_CHECKING:
    from caramba.manifest._load import Manifest

__all__ = ["ENTRY_POINT_GROUP", "FIRST_PARTY", "PluginInfo", "Runtime", "load_order"]

ENTRY_POINT_GROUP = "caramba"

#: caramba's own plugin distributions. They register before any other distribution, so a
#: third-party plugin that registers a name they own fails itself, never them.
FIRST_PARTY: frozenset[str] = frozenset({
    "caramba-core", "caramba-layers", "caramba-trainers", "caramba-infer", "caramba-kernels", "caramba-agents",
})


def load_order(ep: discovery.EntryPoint) -> tuple[bool, str, str]:
    """Plugins passed to the runtime first, then first-party entry points, then the rest, each by name."""
    return (discovery.normalize(ep.dist.name) not in FIRST_PARTY, ep.name, ep.dist.name)


@dataclass
class PluginInfo:
    """What ``caramba plugins`` shows for one plugin."""

    name: str
    distribution: str = ""
    version: str = ""
    location: str = ""
    status: str = "loaded"  # loaded | blocked | failed
    reason: str = ""
    components: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "location": self.location,
            "status": self.status,
            "reason": self.reason,
            "components": self.components,
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class Runtime:
    """Plugins, registries and hooks for one embedding of caramba.

    Args:
        autoload: load plugins from the ``caramba`` entry-point group (unless
            ``CARAMBA_DISABLE_PLUGIN_AUTOLOAD`` is set).
        plugins: modules or objects with ``@hookimpl`` functions, registered first.
        block: entry-point or distribution names not to load (``-p no:NAME`` on the
            command line); ``CARAMBA_PLUGINS=a,b`` keeps only those named (either way).
        strict: fail on a broken plugin; default from ``CARAMBA_STRICT_PLUGINS``.
    """

    def __init__(
        self,
        autoload: bool = True,
        plugins: Sequence[Any] = (),
        block: Iterable[str] = (),
        strict: bool | None = None,
    ) -> None:
        self.strict = _env_flag("CARAMBA_STRICT_PLUGINS") if strict is None else strict
        self.pm = pluggy.PluginManager("caramba")
        self.pm.add_hookspecs(hooks)
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.plugins: list[PluginInfo] = []
        self._blocked = set(block)
        self.unmatched_filters: list[str] = []  # -p no:X or CARAMBA_PLUGINS names that matched no plugin
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            info = PluginInfo(name=name, location=getattr(plugin, "__file__", "") or "")
            self._load_one(info, lambda p=plugin: p)  # type: ignore[misc]
        if autoload and not _env_flag("CARAMBA_DISABLE_PLUGIN_AUTOLOAD"):
            self._autoload()
        for registry in self.registries.values():
            registry.freeze()
        self.pm.hook.caramba_configure.call_historic(kwargs={"runtime": self})

    # -- loading -------------------------------------------------------------------------
    def _autoload(self) -> None:
        only = [p.strip() for p in os.environ.get("CARAMBA_PLUGINS", "").split(",") if p.strip()]
        owners: dict[str, str] = {p.name: "(passed to Runtime)" for p in self.plugins}
        matched: set[str] = set()
        for ep in sorted(discovery.entry_points(ENTRY_POINT_GROUP), key=load_order):
            info = PluginInfo(name=ep.name, distribution=ep.dist.name, version=ep.dist.version, location=ep.value)
            if ep.name in owners:
                info.status = "failed"
                info.reason = (f"entry-point name '{ep.name}' is already taken by {owners[ep.name]}; "
                               "rename one of the entry points")
                self._fail(info, None)
                continue
            owners[ep.name] = f"{ep.dist.name} {ep.dist.version}".strip()
            names = {ep.name, ep.dist.name}
            matched.update(names & (self._blocked | set(only)))
            if names & self._blocked or (only and not names & set(only)):
                info.status = "blocked"
                blocker = sorted(names & self._blocked)
                info.reason = f"blocked by -p no:{blocker[0]}" if blocker else "not in CARAMBA_PLUGINS"
                self.plugins.append(info)
                continue
            self._load_one(info, ep.load)
        self.unmatched_filters = [f"-p no:{n}" for n in sorted(self._blocked - matched)]
        self.unmatched_filters += [f"CARAMBA_PLUGINS={n}" for n in only if n not in matched]

    def _load_one(self, info: PluginInfo, load: Callable[[], Any]) -> None:
        registered = False
        try:
            module = load()
            if isinstance(module, ModuleType):
                info.location = getattr(module, "__file__", "") or info.location
            self.pm.register(module, name=info.name)
            registered = True
            self.pm.check_pending()  # a hook name no spec declares is a typo: fail this plugin
            self._register_components(info)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure in a plugin is isolated
            for registry in self.registries.values():
                registry.remove_plugin(info.name)
            if registered:
                self.pm.unregister(name=info.name)
            info.status = "failed"
            info.reason = self._why(exc)
            info.components = {}
            self._fail(info, exc)
            return
        self.plugins.append(info)

    def _why(self, exc: BaseException) -> str:
        """A plugin's failure in words; a misnamed hook gets the closest real hook name."""
        import pluggy

        from caramba.errors import did_you_mean

        if isinstance(exc, pluggy.PluginValidationError):
            known = [name for name, caller in vars(self.pm.hook).items() if getattr(caller, "spec", None)]
            unknown = [name for name in dir(exc.plugin) if name.startswith("caramba_") and name not in known
                       and callable(getattr(exc.plugin, name))]
            if unknown:
                return "; ".join(f"unknown hook '{name}': {did_you_mean(name, known)}" for name in unknown)
        return f"{type(exc).__name__}: {exc}"

    def _fail(self, info: PluginInfo, exc: BaseException | None) -> None:
        """Record a failed plugin; under strict mode, stop with a :class:`PluginError`."""
        self.plugins.append(info)
        if self.strict:
            raise PluginError(
                f"plugin '{info.name}'" + (f" ({info.distribution} {info.version})" if info.distribution else "")
                + f" failed to load: {info.reason}",
                hint="fix or uninstall it, block it with -p no:" + info.name
                + ", or unset CARAMBA_STRICT_PLUGINS",
            ) from exc

    def _register_components(self, info: PluginInfo) -> None:
        origin = f"{info.distribution} {info.version}".strip()
        for kind, registry in self.registries.items():
            if origin:
                registry.origins[info.name] = origin
            caller = getattr(self.pm.hook, f"caramba_register_{PLURALS[kind]}")
            for impl in caller.get_hookimpls():
                if impl.plugin_name == info.name:
                    impl.function(registry=Registrar(registry, info.name))
            names = [e.name for e in registry if e.plugin == info.name]
            if names:
                info.components[kind] = names

    # -- queries -------------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        """The pluggy hook relay: ``runtime.hook.caramba_run_start(session=...)``."""
        return self.pm.hook

    @property
    def hooks(self) -> hooks.Hooks:
        """The typed facade over the lifecycle and selection hooks: ``runtime.hooks.run_start(session)``."""
        return hooks.Hooks(self.pm.hook)

    def registry(self, kind: str) -> Registry:
        try:
            return self.registries[kind]
        except KeyError:
            raise UsageError(f"unknown component kind '{kind}'", hint=did_you_mean(kind, KINDS)) from None

    def get(self, kind: str, name: str) -> Entry:
        return self.registry(kind).get(name)

    def failed_plugins(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.status == "failed"]

    def filter_note(self) -> str:
        """Which plugins a filter left out, for the hint of an unknown component ("" when none)."""
        blocked = [f"{p.name} ({p.reason})" for p in self.plugins if p.status == "blocked"]
        return "; left out here: " + ", ".join(blocked) if blocked else ""

    def lock(self) -> list[dict[str, str]]:
        """Distributions and versions of the loaded plugins (written into every run directory)."""
        return [
            {"plugin": p.name, "distribution": p.distribution, "version": p.version}
            for p in self.plugins
            if p.status == "loaded"
        ]

    def check_requires(self, requires: Sequence[str]) -> list[str]:
        """Problems with a manifest's ``requires:`` list (``caramba-layers>=1.0``).

        A requirement fails when the distribution is missing or of the wrong version, and
        also when it is installed but its plugin did not load (failed or blocked here).
        """
        problems = []
        for req in requires:
            msg = check_requirement(req)
            if msg is None:
                name = discovery.normalize(requirement_name(req))
                for p in self.plugins:
                    if p.status != "loaded" and p.distribution and discovery.normalize(p.distribution) == name:
                        msg = f"{req} is installed but its plugin '{p.name}' is {p.status}" + (
                            f": {p.reason}" if p.reason else "")
                        break
            if msg:
                problems.append(msg)
        return problems

    # -- manifests -----------------------------------------------------------------------
    # The manifest and graph stages sit below the runtime; they are imported on first use
    # only because the YAML loader and the builder would otherwise cost every `caramba plugins`.
    def load_manifest(self, path: str, overrides: Sequence[str] = ()) -> Manifest:
        """Parse, lower and validate a manifest file; raises :class:`~caramba.ManifestError`."""
        from caramba.manifest import load_manifest

        return load_manifest(self, path, overrides=overrides)

    def load_manifest_text(self, text: str, *, filename: str = "<string>",
                           overrides: Sequence[str] = ()) -> Manifest:
        from caramba.manifest import load_manifest_text

        return load_manifest_text(self, text, filename=filename, overrides=overrides)

    def parse(self, tp: Any, data: Any, *, source: str = "<data>") -> Any:
        """Decode plain data into a config struct, e.g. ``rt.parse(NodeConfig, {"type": ...})``.

        Polymorphic bases dispatch on ``type``. Raises :class:`~caramba.ManifestError`.
        """
        from caramba.manifest._decode import INVALID, Decoder

        problems: list[Problem] = []
        out = Decoder(self, data, problems).decode(data, tp, ())
        if problems or out is INVALID:
            raise ManifestError(problems or [Problem(None, "", "invalid config")], source=source)
        return out

    def build(self, node: Any, path: str = "model") -> Any:
        """Build an ``nn.Module`` from a validated node config (imports torch)."""
        from caramba.graph._build import Builder

        return Builder(self).build(node, path)

    def create(self, kind: str, name: str, config: Any = None, **kwargs: Any) -> Any:
        """Instantiate a registered component: ``factory(config, **kwargs)``."""
        entry = self.get(kind, name)
        factory = entry.load()
        return factory(config, **kwargs) if entry.config is not None or config is not None else factory(**kwargs)
