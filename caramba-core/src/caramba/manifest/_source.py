"""Loading manifest text into plain data that remembers where every value came from.

The loader is caramba's own, on top of PyYAML's *composer* (which only builds a node
graph with positions) rather than any of PyYAML's constructors:

* YAML 1.2 core-schema scalars: ``1e-3`` is a float, ``0o17`` an int, only
  ``true``/``false`` are booleans (``yes``/``on`` stay strings), ``null``/``~`` is None;
* duplicate mapping keys are errors;
* no tags other than the standard ``!!str``/``!!int``/``!!float``/``!!bool``/``!!null``/
  ``!!seq``/``!!map``: there is no way to construct a Python object;
* anchors, aliases and ``<<`` merge keys work.

Mappings load as :class:`SourceDict` and sequences as :class:`SourceList`; each remembers
the :class:`~caramba.errors.Location` of itself and of each of its values, and
``copy.deepcopy`` keeps those positions, so lowering can copy subtrees freely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from caramba.errors import Location, ManifestError, Problem
from caramba.manifest._limits import ExpansionBudget, count_values, limit, raise_hint

__all__ = ["SourceDict", "SourceList", "load_text", "load_file", "locate", "locate_key", "to_plain"]


class SourceDict(dict):
    """A dict that knows the location of itself and of each value."""

    location: Location | None
    locations: dict[Any, Location | None]
    key_locations: dict[Any, Location]

    def __init__(self, *args: Any, location: Location | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.location = location
        self.locations = {}
        self.key_locations = {}


class SourceList(list):
    """A list that knows the location of itself and of each item."""

    location: Location | None
    locations: dict[int, Location | None]

    def __init__(self, *args: Any, location: Location | None = None) -> None:
        super().__init__(*args)
        self.location = location
        self.locations = {}


def locate(root: Any, path: Iterable[str | int]) -> Location | None:
    """The location of the value at ``path`` in ``root``, or of its nearest ancestor."""
    best = getattr(root, "location", None)
    node = root
    for key in path:
        locs = getattr(node, "locations", None)
        if locs is not None and key in locs:
            best = locs[key]
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
        own = getattr(node, "location", None)
        if own is not None and (locs is None or key not in locs):
            best = own
    return best


def locate_key(root: Any, path: tuple[Any, ...]) -> Location | None:
    """The location of the *key* that ends ``path`` (for an unknown field), else :func:`locate`."""
    if path:
        parent: Any = root
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        where: Location | None = getattr(parent, "key_locations", {}).get(path[-1])
        if where is not None:
            return where
    return locate(root, path)


def to_plain(value: Any) -> Any:
    """A copy with plain dicts and lists (for JSON output)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


# --- YAML 1.2 core schema -------------------------------------------------------------

_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(inf|Inf|INF)$")
_NAN = re.compile(r"^\.(nan|NaN|NAN)$")
_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:merge",
}


def _core_scalar(text: str) -> Any:
    if text in ("null", "Null", "NULL", "~", ""):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.match(text):
        try:
            return int(text)
        except ValueError:  # more digits than Python converts; no field takes such a number
            return text
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.match(text):
        return float("nan")
    return text


class _Composer(yaml.SafeLoader):
    """PyYAML's parser and composer, with implicit resolvers switched off.

    Every plain scalar gets the ``str`` tag here; :func:`_core_scalar` decides its type.
    """

    yaml_implicit_resolvers: dict = {}


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []
        self._done: dict[int, Any] = {}

    def loc(self, node: yaml.Node) -> Location:
        m = node.start_mark
        return Location(self.filename, m.line + 1, m.column + 1)

    def build(self, node: yaml.Node, path: str) -> Any:
        if id(node) in self._done:  # an alias: share the already-built value
            return self._done[id(node)]
        tag = node.tag
        if tag and tag.startswith("!") or (tag and tag.startswith("tag:") and tag not in _STANDARD_TAGS):
            shown = "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag
            self.problems.append(
                Problem(self.loc(node), path, f"tag '{shown}' is not allowed in a manifest",
                        "manifests are data: remove the tag")
            )
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            items = SourceList(location=self.loc(node))
            self._done[id(node)] = items
            for i, item in enumerate(node.value):
                items.locations[i] = self.loc(item)
                items.append(self.build(item, f"{path}[{i}]"))
            return items
        if isinstance(node, yaml.MappingNode):
            mapping = SourceDict(location=self.loc(node))
            self._done[id(node)] = mapping
            self.mapping(node, mapping, path)
            return mapping
        raise AssertionError(f"unexpected YAML node {node!r}")

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        if node.style:  # quoted or block scalars are always strings
            return node.value
        return _core_scalar(node.value)

    def mapping(self, node: yaml.MappingNode, out: SourceDict, path: str) -> None:
        merged: list[SourceDict] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<" and key_node.style is None
            ):
                src = self.build(value_node, path)
                for item in src if isinstance(src, list) else [src]:
                    if isinstance(item, SourceDict):
                        merged.append(item)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(Problem(self.loc(key_node), path, "mapping keys must be plain scalars"))
                continue
            key = key_node.value  # keys are names: `1:` or `null:` stay the text written
            sub = f"{path}.{key}" if path else key
            if key in out:
                first = out.locations.get(key)
                self.problems.append(
                    Problem(self.loc(key_node), sub, f"duplicate key '{key}'",
                            f"first defined at {first}; keep one" if first else "keep one")
                )
                continue
            out.locations[key] = self.loc(value_node)
            out.key_locations[key] = self.loc(key_node)
            out[key] = self.build(value_node, sub)
        for src in merged:  # explicit keys win over merged ones
            for key, value in src.items():
                if key not in out:
                    out[key] = value
                    out.locations[key] = src.locations.get(key, src.location)


def load_text(text: str, filename: str = "<string>", *, fmt: str | None = None) -> Any:
    """Parse YAML or JSON text into :class:`SourceDict`/:class:`SourceList` data."""
    try:
        return _load_text(text, filename, fmt)
    except RecursionError:
        raise ManifestError([Problem(Location(filename), "", "the manifest is nested too deeply to read",
                                     "a manifest nests a few dozen levels at most")], source=filename) from None


def _load_text(text: str, filename: str, fmt: str | None) -> Any:
    fmt = fmt or ("json" if filename.endswith(".json") else "yaml")
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content, in YAML or JSON
    if fmt == "json":
        return _load_json(text, filename)
    try:
        nodes = list(yaml.compose_all(text, Loader=_Composer))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            msg = f"YAML syntax error: {exc.problem} ({exc.context}"
            ctx = exc.context_mark
            if ctx is not None and mark is not None and (ctx.line, ctx.column) != (mark.line, mark.column):
                msg += f" that starts at {ctx.line + 1}:{ctx.column + 1}"
            msg += ")"
        hint = "check indentation, colons and quotes on this line"
        line = text.splitlines()[loc.line - 1] if 0 < loc.line <= len(text.splitlines()) else ""
        if "${" in line and ("{" in line.replace("${", "") or "[" in line):
            hint = 'inside [..] or {..} quote placeholders: "${name}"'
        raise ManifestError([Problem(loc, "", msg, hint)], source=filename) from None
    except yaml.YAMLError as exc:  # reader errors: bad bytes
        raise ManifestError([Problem(Location(filename), "", f"cannot read YAML: {exc}")], source=filename) from None
    if len(nodes) > 1:
        loc = Location(filename, nodes[1].start_mark.line + 1, 1)
        raise ManifestError([Problem(loc, "", "a manifest is a single YAML document", "remove the '---'")],
                            source=filename)
    if not nodes:
        return SourceDict(location=Location(filename, 1, 1))
    builder = _Builder(filename)
    data = builder.build(nodes[0], "")
    if builder.problems:
        raise ManifestError(builder.problems, source=filename)
    # aliases share one built value; counted at each use, they must fit what lowering may copy
    budget = ExpansionBudget()
    if not budget.spend(count_values(data), Location(filename, 1, 1), "", "resolving its aliases"):
        raise ManifestError([budget.problem], source=filename)  # type: ignore[list-item]
    return data


def _load_json(text: str, filename: str) -> Any:
    """JSON with exact JSON semantics, and positions from the YAML composer where it agrees.

    JSON is (nearly) a subset of YAML's flow style, so composing the same text gives every
    value its ``line:col``; when the two readings differ (exotic escapes), positions fall
    back to the file alone.
    """
    problems: list[Problem] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                problems.append(Problem(Location(filename), k, f"duplicate key '{k}'", "keep one"))
            out[k] = v
        return out

    try:
        data = json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            [Problem(Location(filename, exc.lineno, exc.colno), "", f"JSON syntax error: {exc.msg}")],
            source=filename,
        ) from None
    try:
        located = _load_text(text, filename, "yaml")
    except RecursionError:
        located = None
    except ManifestError as exc:
        located = None
        if problems:  # the YAML reading names the duplicate's line and column
            problems = [p for p in exc.problems if "duplicate key" in p.message] or problems
    if problems:
        raise ManifestError(problems, source=filename)
    if located is not None and to_plain(located) == data:
        return located
    return _wrap(data, Location(filename))


def _wrap(value: Any, where: Location) -> Any:
    if isinstance(value, dict):
        out = SourceDict(location=where)
        for k, v in value.items():
            out[k] = _wrap(v, where)
        return out
    if isinstance(value, list):
        return SourceList([_wrap(v, where) for v in value], location=where)
    return value


def load_file(path: str | Path) -> Any:
    """Read and parse a manifest file (``.yml``, ``.yaml`` or ``.json``)."""
    p = Path(path)
    name = str(path)
    if p.suffix not in (".yml", ".yaml", ".json"):
        raise ManifestError(
            [Problem(Location(name), "", f"unsupported manifest suffix '{p.suffix}'",
                     "use .yml, .yaml or .json")], source=name)
    try:
        size = p.stat().st_size
        if size > (most := limit("CARAMBA_MAX_MANIFEST_BYTES")):
            raise ManifestError([Problem(Location(name), "", f"the file is {size:,} bytes; a manifest may be "
                                         f"{most:,} at most", raise_hint("CARAMBA_MAX_MANIFEST_BYTES"))],
                                source=name)
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([Problem(Location(name), "", "file not found",
                                     "check the path, or name a preset")], source=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([Problem(Location(name), "", f"cannot read file: {exc}")], source=name) from None
    return load_text(text, name)
