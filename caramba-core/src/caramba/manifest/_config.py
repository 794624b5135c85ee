"""Base classes of the torch-free config structs that plugins register.

Every component's config is a :class:`Config`: a ``msgspec.Struct`` with keyword-only
fields and unknown fields forbidden, so a typo in a manifest is an error, not a silently
ignored key. A *polymorphic* base (one with ``__caramba_kinds__``) stands for "any
registered component of these kinds, chosen by its ``type`` field": a field annotated
with :class:`~caramba.graph.NodeConfig` accepts any registered layer or topology.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from caramba.graph._shapes import UNKNOWN, Shape, ShapeError

__all__ = ["Config", "PolymorphicConfig", "Scope"]


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of every component config: a struct of typed fields with defaults.

    Override :meth:`check` for semantic checks across fields or children; report with
    ``scope.error(field, message, hint)`` so every problem lands in one report.

    The original caramba's manifests keep working through three class-level tables, each
    read by the decoder with a one-line note (``Manifest.notes``, printed by ``validate``
    and ``run``), so nothing is silently dropped:

    * ``__caramba_renamed__ = {"old_name": "new_name"}``: read under the new name;
    * ``__caramba_unwrapped__ = {"field": "key"}``: the original wrote ``field: {key: X}``
      where ``field: X`` is expected now;
    * ``__caramba_ignored__ = {"old_name": "why"}``: accepted, has no effect, and the note
      says why caramba deliberately has no equivalent;
    * ``__caramba_inherited__ = ("field",)`` (a trainer's per-run ``train:`` struct): a run
      that leaves the field out takes it from the run before it that sets it.
    """

    __caramba_renamed__: ClassVar[dict[str, str]] = {}
    __caramba_unwrapped__: ClassVar[dict[str, str]] = {}
    __caramba_ignored__: ClassVar[dict[str, str]] = {}
    __caramba_inherited__: ClassVar[tuple[str, ...]] = ()

    def check(self, scope: Scope) -> None:
        """Semantic checks beyond field types (default: none)."""

    @classmethod
    def check_mapping(cls, raw: dict[str, Any], scope: Scope) -> None:
        """Checks on the mapping as written, run even when its other fields are wrong.

        For a choice that decides what every other field means (a trainer's ``phase``): its
        problem is the one to read first, so it must not hide behind the others.
        """


class PolymorphicConfig(Config, kw_only=True):
    """A config chosen by its ``type`` among the registered components of some kinds."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ()
    type: str = ""


class Scope:
    """Where a check is running: reports problems against manifest paths.

    ``scope.error("d_model", "must be divisible by n_heads")`` reports at the field
    ``<this node's path>.d_model``; ``scope.child("layers", 0)`` descends.
    """

    def __init__(self, report: Any, path: tuple[str | int, ...] = (), note: Any = None) -> None:
        self._report = report
        self._note = note
        self.path = path

    def child(self, *parts: str | int) -> Scope:
        return Scope(self._report, (*self.path, *parts), self._note)

    def note(self, field: str | int | None, message: str, hint: str = "") -> None:
        """One line for the run log, not a problem: a value accepted that has no effect here, and why."""
        if self._note is not None:
            self._note(self.path if field is None else (*self.path, field), message, hint)

    def error(self, field: str | int | None, message: str, hint: str = "") -> None:
        path = self.path if field is None else (*self.path, field)
        self._report(path, message, hint)

    def infer(self, node: Any, x: Any, *parts: str | int) -> Any:
        """Infer ``node``'s output shape for input ``x``; problems are reported, not raised.

        After a problem the node's output keeps the input's rank with an unknown
        (:data:`~caramba.graph._shapes.UNKNOWN`) last dim, so the nodes after it are checked
        against their own declared widths: one mistake does not cascade, and independent
        mistakes further on are still reported. ``None`` in (a graph input that could not
        be computed) gives ``None`` out.
        """
        sub = self.child(*parts)
        if x is None:
            return None
        try:
            return node.infer(x, sub)
        except ShapeError as exc:
            sub.error(exc.field, exc.message, exc.hint)
        except Exception as exc:  # noqa: BLE001 - a crashing infer is reported, never a traceback
            name = getattr(node, "type", "") or type(node).__name__
            sub.error(None, f"cannot infer the output shape of '{name}' for input {x}: "
                      f"{type(exc).__name__}: {exc}", "this is a bug in the plugin that registered it")
        return Shape(*x[:-1], UNKNOWN)
