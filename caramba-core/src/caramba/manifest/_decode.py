"""Decoding manifest data into config structs, collecting every problem.

``msgspec.convert`` stops at the first error; a manifest report should list them all.
So structs are decoded field by field here (unknown fields, missing fields, each field's
type), leaves are converted by msgspec (types, ``Meta`` constraints), polymorphic configs
are dispatched by ``type`` through the registries, and every problem is reported at its
``file:line:col`` and field path.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

import msgspec

from caramba.errors import Location, Problem, did_you_mean
from caramba.manifest._config import Config, PolymorphicConfig, Scope
from caramba.manifest._source import locate, locate_key

__all__ = ["Decoder", "Kind", "format_path"]

Path = tuple[str | int, ...]


class Kind:
    """``Annotated[ComponentSpec, Kind("dataset")]``: a ``{ref, config}`` of that kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Invalid:
    """Marks a value that failed to decode (its problem is already reported)."""


INVALID: Any = _Invalid()


class Decoder:
    """Decodes raw manifest data against types, reporting problems into a list."""

    def __init__(self, runtime: Any, root: Any, problems: list[Problem],
                 component_hook: Callable[[Any, Any, Path], Any] | None = None,
                 notes: list[Problem] | None = None) -> None:
        self.runtime = runtime
        self.root = root
        self.problems = problems
        self.component_hook = component_hook
        # Problems that leave a value undecodable (a wrong type, a missing field). A problem a
        # config's check() reports does not: the config still exists, so the checks of the
        # configs around it (shape inference over a whole model) run and report theirs too.
        self._undecodable = 0
        self._checking = False
        self.notes: list[Problem] = [] if notes is None else notes

    # -- reporting -----------------------------------------------------------------------
    def where(self, path: Path) -> Location | None:
        return locate(self.root, path)

    def report(self, path: Path, message: str, hint: str = "") -> None:
        self._undecodable += not self._checking
        self.problems.append(Problem(self.where(path), format_path(path), message, hint))

    def report_key(self, path: Path, message: str, hint: str = "") -> None:
        """Report at the key that ends ``path`` (an unknown field), not at its value."""
        self._undecodable += not self._checking
        self.problems.append(Problem(locate_key(self.root, path), format_path(path), message, hint))

    def note(self, path: Path, message: str, hint: str = "") -> None:
        """Not a problem, but worth one line in the run log (an original spelling read or ignored)."""
        self.notes.append(Problem(locate_key(self.root, path), format_path(path), message, hint))

    def original_spellings(self, value: dict, cls: type, path: Path, fields: dict[str, Any],
                           label: str) -> tuple[dict[str, str], set[str]]:
        """The original caramba's spellings in ``value``, each noted: ``({field: key written}, ignored keys)``."""
        keys: dict[str, str] = {}
        ignored: set[str] = set()
        for old, new in getattr(cls, "__caramba_renamed__", {}).items():
            if old not in value or new not in fields:
                continue
            if new in value:
                self.report_key((*path, old), f"'{old}' (the original caramba's name for '{new}') and '{new}' "
                                "are both given", f"keep only '{new}'")
                ignored.add(old)  # reported once, here, not again as an unknown field
            else:
                keys[new] = old
                self.note((*path, old), f"'{old}' is the original caramba's name for '{new}' of {label}; read as "
                          f"'{new}'", f"rename it to '{new}'")
        for old, why in getattr(cls, "__caramba_ignored__", {}).items():
            if old in value and old not in fields:
                ignored.add(old)
                self.note((*path, old), f"'{old}' of the original caramba is ignored: {why}", "remove it")
        for name, inner in getattr(cls, "__caramba_unwrapped__", {}).items():
            written = value.get(name)
            if isinstance(written, dict) and list(written) == [inner] and not isinstance(written[inner], dict):
                self.note((*path, name), f"'{name}: {{{inner}: {written[inner]}}}' is the original caramba's "
                          f"spelling; read as '{name}: {written[inner]}'", f"write '{name}: {written[inner]}'")
        return keys, ignored

    # -- decoding ------------------------------------------------------------------------
    def decode(self, value: Any, tp: Any, path: Path) -> Any:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            inner, *meta = typing.get_args(tp)
            kind = next((m for m in meta if isinstance(m, Kind)), None)
            if kind is not None:
                return self.decode_component(value, inner, kind.kind, path)
            if _is_leaf(inner):
                return self.leaf(value, tp, path)
            return self.decode(value, inner, path)
        if tp is Any or tp is object:
            return value
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            if issubclass(tp, PolymorphicConfig) and "__caramba_kinds__" in tp.__dict__ and tp.__caramba_kinds__:
                return self.decode_polymorphic(value, tp, path)
            return self.decode_struct(value, tp, path)
        if origin in (list, tuple) and not _is_leaf(tp):
            args = typing.get_args(tp)
            item = args[0] if args else Any
            if not isinstance(value, list):
                self.report(path, f"expected a list, got {_kind(value)}")
                return INVALID
            out = [self.decode(v, item, (*path, i)) for i, v in enumerate(value)]
            return out if origin is list else tuple(out)
        if origin is dict and not _is_leaf(tp):
            args = typing.get_args(tp)
            val_tp = args[1] if len(args) == 2 else Any
            if not isinstance(value, dict):
                self.report(path, f"expected a mapping, got {_kind(value)}")
                return INVALID
            return {k: self.decode(v, val_tp, (*path, k)) for k, v in value.items()}
        if origin in (Union, types.UnionType) and not _is_leaf(tp):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if value is None and len(members) < len(typing.get_args(tp)):
                return None
            if len(members) == 1:
                return self.decode(value, members[0], path)
            structs = [a for a in members if isinstance(a, type) and issubclass(a, msgspec.Struct)]
            if isinstance(value, dict) and structs:
                return self.decode_tagged(value, structs, path)
            rest = tuple(a for a in members if a not in structs)
            others = Union[rest] if rest else None  # noqa: UP007 - a union built at run time
            if others is None:
                self.report(path, f"expected a mapping, got {_kind(value)}")
                return INVALID
            return self.decode(value, others, path)
        return self.leaf(value, tp, path)

    def decode_tagged(self, value: dict, structs: list[type], path: Path) -> Any:
        """Pick among struct types by their ``type: Literal[...]`` field (a default counts)."""
        choices: dict[Any, type] = {}
        default = None
        for cls in structs:
            info = next((f for f in msgspec.structs.fields(cls) if f.encode_name == "type"), None)
            if info is None:
                continue
            for tag in typing.get_args(info.type):
                choices[tag] = cls
            if not info.required and default is None:
                default = info.default
        tag = value.get("type", default)
        if not isinstance(tag, (str, int, float, bool)) or tag not in choices:
            self.report((*path, "type"), f"unknown type {tag!r}", did_you_mean(str(tag), map(str, choices)))
            return INVALID
        return self.decode_struct(value, choices[tag], path)

    def leaf(self, value: Any, tp: Any, path: Path) -> Any:
        try:
            return msgspec.convert(value, tp, strict=True)
        except msgspec.ValidationError as exc:
            message, sub = _split_msgspec_error(str(exc))
            inner = _follow(value, sub)
            self.report((*path, *sub), _describe(message, inner, _strip_annotated(tp) if not sub else None),
                        _literal_hint(inner, tp) if not sub else "")
            return INVALID

    def decode_struct(self, value: Any, cls: type[msgspec.Struct], path: Path,
                      *, skip: tuple[str, ...] = (), label: str = "") -> Any:
        label = label or cls.__name__
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping for {label}, got {_kind(value)}")
            return INVALID
        try:
            fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
        except Exception as exc:  # noqa: BLE001 - e.g. an annotation naming a type that does not exist
            self.report(path, f"the fields of {cls.__name__} ({label}) cannot be resolved: {type(exc).__name__}: {exc}",
                        "this is a bug in the plugin that registered it; please report it")
            return INVALID
        before = self._undecodable
        if issubclass(cls, Config):
            try:
                cls.check_mapping(value, Scope(self.report, path))
            except Exception as exc:  # noqa: BLE001 - a crashing check is reported, never a traceback
                self.report(path, f"{label}.check_mapping() failed: {type(exc).__name__}: {exc}",
                            "this is a bug in the plugin that registered it; please report it")
        original, ignored = self.original_spellings(value, cls, path, fields, label)
        unwrapped = getattr(cls, "__caramba_unwrapped__", {})
        suggested: set[str] = set()  # a typo's suggestion stands for the missing field it names
        for key in value:
            if key not in fields and key not in skip and key not in ignored and key not in original.values():
                close = _closest(str(key), [n for n in fields if n not in value and n not in skip])
                if close:
                    suggested.add(close)
                self.report_key((*path, key), f"unknown field '{key}' for {label}",
                                f"did you mean '{close}'?" if close else did_you_mean(str(key), fields))
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            if name in skip:
                continue
            key = original.get(name) or name
            if key in value:
                raw = value[key]
                if name in unwrapped and isinstance(raw, dict) and list(raw) == [unwrapped[name]]:
                    raw, key = raw[unwrapped[name]], (key, unwrapped[name])
                kwargs[f.name] = self.decode(raw, f.type, (*path, *(key if isinstance(key, tuple) else (key,))))
            elif f.required and name not in suggested:
                self.report(path, f"missing required field '{name}' for {label}",
                            f"add '{name}: <{type_label(f.type)}>'")
        if self._undecodable > before or any(v is INVALID for v in kwargs.values()):
            return INVALID
        try:
            out = cls(**kwargs)
        except (ValueError, TypeError) as exc:
            self.report(path, str(exc))
            return INVALID
        if isinstance(out, Config):
            self.check(out, path, label)
        return out

    def check(self, config: Config, path: Path, label: str) -> None:
        """Run a decoded config's own semantic checks, reporting at ``path``."""
        outer, self._checking = self._checking, True
        try:
            config.check(Scope(self.report, path, self.note))
        except Exception as exc:  # noqa: BLE001 - a crashing check is reported, never a traceback
            self.report(path, f"{label}.check() failed: {type(exc).__name__}: {exc}",
                        "this is a bug in the plugin that registered it; please report it")
        finally:
            self._checking = outer

    def decode_polymorphic(self, value: Any, base: type[PolymorphicConfig], path: Path) -> Any:
        kinds = base.__caramba_kinds__
        if not isinstance(value, dict):
            self.report(path, f"expected a mapping with a 'type' ({' or '.join(kinds)}), got {_kind(value)}")
            return INVALID
        name = value.get("type")
        if "type" in value and not isinstance(name, str):
            self.report((*path, "type"), f"'type' must name a {' or '.join(kinds)}, got {_kind(name)}",
                        f"caramba ls {kinds[0]} lists them")
            return INVALID
        if not isinstance(name, str) or not name:
            self.report(path, f"missing 'type' for a {' or '.join(kinds)}",
                        "add 'type: <name>' (caramba ls " + kinds[0] + " lists them)")
            return INVALID
        entry = None
        for kind in kinds:
            entry = self.runtime.registry(kind).find(name)
            if entry is not None:
                break
        if entry is None:
            every = [n for kind in kinds for n in self._names(kind)]
            self.report((*path, "type"), f"unknown {' or '.join(kinds)} type '{name}'",
                        did_you_mean(name, every) + self._left_out())
            return INVALID
        cls = entry.config
        if cls is None or not (isinstance(cls, type) and issubclass(cls, base)):
            self.report((*path, "type"), f"'{name}' cannot be used here: it is a {entry.kind}, "
                        f"not a {base.__name__}")
            return INVALID
        out = self.decode_struct(value, cls, path, skip=("type",), label=entry.name)
        if out is not INVALID:
            out.type = entry.name
        return out

    def decode_component(self, value: Any, spec_cls: Any, kind: str, path: Path) -> Any:
        if isinstance(value, str):
            value = {"ref": value}
        if not isinstance(value, dict):
            self.report(path, f"expected {_a(kind)} reference (a name or {{ref, config}}), got {_kind(value)}")
            return INVALID
        for key in value:
            if key not in ("ref", "config"):
                hint = "components are named by registered names only" if key == "impl" else did_you_mean(
                    str(key), ["ref", "config"])
                self.report_key((*path, key), f"unknown field '{key}' for {_a(kind)} reference", hint)
        ref = value.get("ref")
        if not isinstance(ref, str):
            self.report(path, f"missing 'ref' naming {_a(kind)}", f"caramba ls {kind} lists them")
            return INVALID
        entry = self.runtime.registry(kind).find(ref)
        if entry is None:
            self.report((*path, "ref"), f"unknown {kind} '{ref}'",
                        did_you_mean(ref, self._names(kind)) + self._left_out())
            return INVALID
        raw = value.get("config")
        if raw is None:
            raw = {}
        if entry.config is None:
            if raw:
                self.report((*path, "config"), f"{kind} '{entry.name}' takes no config")
            config = None
        else:
            config = self.decode_struct(raw, entry.config, (*path, "config"), label=entry.name)
        if config is INVALID:
            return INVALID
        return spec_cls(ref=entry.name, config=config)

    def _left_out(self) -> str:
        note = getattr(self.runtime, "filter_note", None)
        return note() if note is not None else ""

    def _names(self, kind: str) -> list[str]:
        reg = self.runtime.registry(kind)
        return [n for e in reg for n in (e.name, *e.aliases)]


def _is_leaf(tp: Any) -> bool:
    """True when no struct is reachable inside ``tp`` (msgspec converts it whole)."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return False
    if typing.get_origin(tp) is Annotated:
        return _is_leaf(typing.get_args(tp)[0])
    return all(_is_leaf(a) for a in typing.get_args(tp) if not isinstance(a, (int, str, float, bool)) or a is None)


def _split_msgspec_error(text: str) -> tuple[str, Path]:
    """``"Expected `int`, got `str` - at `$[1].x`"`` into the message and the sub-path ``(1, "x")``."""
    cut = text.find(" - at `$")
    if cut < 0:
        return text, ()
    where = text[cut + len(" - at `$"):].rstrip("`")
    sub: list[str | int] = []
    for part in re.findall(r"\[(\d+)\]|\[(.*?)\]|\.([^.\[]+)", where):
        index, key, attr = part
        sub.append(int(index) if index else (key.strip("'\"") if key else attr))
    return text[:cut], tuple(sub)


def _follow(value: Any, sub: Path) -> Any:
    for part in sub:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _strip_annotated(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _describe(message: str, value: Any, tp: Any) -> str:
    """msgspec's messages in the manifest's words: what was expected, what was given."""
    m = re.fullmatch(r"Expected `(.+?)`, got `(.+?)`", message)
    if m:
        if tp is not None and typing.get_origin(tp) is not Literal:
            return f"expected {_expected(tp)}, got {_kind(value)}"
        return f"expected {_plain(m.group(1))}, got {_kind(value)}"
    m = re.fullmatch(r"Expected `(.+?)` (.+)", message)
    if m:
        return f"expected {_plain(m.group(1))} {m.group(2)}, got {value!r}"
    literals = _literals(tp)
    if message.startswith("Invalid enum value") and literals:
        return f"expected one of {', '.join(repr(a) for a in literals)}, got {value!r}"
    return message[:1].lower() + message[1:]


def _expected(tp: Any) -> str:
    """A field type as the manifest author reads it: ``an int >= 1 or null``, never msgspec's spelling."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *meta = typing.get_args(tp)
        text = _expected(inner)
        for m in meta:
            if isinstance(m, msgspec.Meta):
                text += _bounds(m, integer=inner is int)
        return text
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (list, tuple) or tp in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if isinstance(tp, type) and tp.__name__ in ("int", "float", "str", "bool"):
        return _plain(tp.__name__)
    return _type_name(tp)


def _bounds(meta: msgspec.Meta, *, integer: bool) -> str:
    """``gt=0`` on an int reads ``>= 1``: the smallest value the author may write."""
    text = ""
    for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        bound = getattr(meta, attr, None)
        if bound is None:
            continue
        if integer and attr == "gt":
            op, bound = ">=", bound + 1
        elif integer and attr == "lt":
            op, bound = "<=", bound - 1
        text += f" {op} {bound}" if not text else f" and {op} {bound}"
    return text


def _literals(tp: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` field, also inside ``Literal[...] | None``."""
    if tp is None:
        return ()
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(v for a in typing.get_args(tp) for v in _literals(a))
    return ()


def _plain(name: str) -> str:
    return {"array": "a list", "object": "a mapping", "str": "a string", "int": "an int", "float": "a number",
            "bool": "true or false", "null": "null"}.get(name, name)


def _literal_hint(value: Any, tp: Any) -> str:
    tp = _strip_annotated(tp)
    if _literals(tp) and isinstance(value, str):
        return did_you_mean(value, [str(a) for a in _literals(tp)])
    if tp is bool and isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n"):
        return "YAML 1.2: only true and false are booleans"
    return ""


def _closest(name: str, choices: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def type_label(tp: Any) -> str:
    """A field type as a manifest author reads it: ``int > 0``, ``str | None``, ``'a' | 'b'``."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *meta = typing.get_args(tp)
        kind = next((m for m in meta if isinstance(m, Kind)), None)
        if kind is not None:
            return f"{kind.kind} name"
        text = type_label(inner)
        for m in meta:
            if isinstance(m, msgspec.Meta):
                for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    bound = getattr(m, attr, None)
                    if bound is not None:
                        text += f" {op} {bound}"
        return text
    if origin in (Union, types.UnionType):
        return " | ".join(type_label(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(type_label(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")
