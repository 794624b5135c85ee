"""Loading a manifest: parse, overrides, ``${vars}``, lowering and validation, in that order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caramba.errors import ManifestError, Problem, UsageError, did_you_mean
from caramba.manifest._decode import INVALID, Decoder, format_path
from caramba.manifest._limits import (
    ExpansionBudget,
    check_numbers,
    count_values,
    human_bytes,
    memory_budget,
    training_bytes,
)
from caramba.manifest._lower import lower
from caramba.manifest._overrides import apply_overrides
from caramba.manifest._schema import (
    ExperimentTarget,
    ManifestSpec,
    ProcessTarget,
)
from caramba.manifest._source import load_file, load_text, locate, to_plain
from caramba.manifest._variables import substitute

__all__ = ["Manifest", "load_manifest", "load_manifest_text", "validate"]


@dataclass
class Manifest:
    """A validated manifest: the decoded spec plus the resolved data it came from."""

    spec: ManifestSpec
    resolved: dict[str, Any]
    source: str = "<string>"
    overrides: list[str] = field(default_factory=list)
    #: One line each for what was read in the original caramba's spelling, inherited or ignored.
    notes: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def targets(self) -> list[ExperimentTarget | ProcessTarget]:
        return self.spec.targets

    def target(self, name: str | None = None) -> ExperimentTarget | ProcessTarget:
        """A target by name or entrypoint alias; with no name, ``entrypoints.default`` or the first."""
        if name is None:
            name = self.spec.entrypoints.get("default")
            if name is None:
                if not self.spec.targets:
                    raise UsageError(f"{self.source} declares no targets", hint="add one under targets:")
                return self.spec.targets[0]
        name = self.spec.entrypoints.get(name, name)
        for prefix in ("target:", "experiment:", "process:"):
            if name.startswith(prefix):
                name = name[len(prefix):]
        for target in self.spec.targets:
            if target.name == name:
                return target
        names = [t.name for t in self.spec.targets] + list(self.spec.entrypoints)
        raise UsageError(f"{self.source} has no target '{name}'", hint=did_you_mean(name, names))


def load_manifest(runtime: Any, path: str | Path, overrides: Sequence[str] = ()) -> Manifest:
    return _finish(runtime, load_file(path), str(path), overrides)


def load_manifest_text(runtime: Any, text: str, *, filename: str = "<string>",
                       overrides: Sequence[str] = ()) -> Manifest:
    return _finish(runtime, load_text(text, filename), filename, overrides)


def _finish(runtime: Any, data: Any, source: str, overrides: Sequence[str]) -> Manifest:
    try:
        return _check(runtime, data, source, overrides)
    except RecursionError:
        raise ManifestError([Problem(getattr(data, "location", None), "", "the manifest is nested too deeply",
                                     "a manifest nests a few dozen levels at most")], source=source) from None


def _check(runtime: Any, data: Any, source: str, overrides: Sequence[str]) -> Manifest:
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ManifestError([Problem(getattr(data, "location", None), "", "a manifest must be a mapping",
                                     "start with 'version: 2'")], source=source)
    apply_overrides(data, overrides, problems)
    budget = ExpansionBudget(count_values(data))
    substitute(data, problems, budget)
    if problems:
        raise ManifestError(_in_order(problems), source=source)
    check_numbers(data, problems)
    if problems:
        raise ManifestError(_in_order(problems), source=source)
    lower(data, problems, budget)
    if problems:
        raise ManifestError(_in_order(problems), source=source)
    notes: list[Problem] = []
    spec = validate(runtime, data, problems, notes)
    if problems or spec is INVALID:
        raise ManifestError(_in_order(problems) or [Problem(None, "", "invalid manifest")], source=source)
    return Manifest(spec=spec, resolved=to_plain(data), source=source, overrides=list(overrides),
                    notes=_in_order(notes))


def _in_order(problems: list[Problem]) -> list[Problem]:
    """Problems in file order (stable; overrides and file-less problems keep their place at the end)."""
    def key(p: Problem) -> tuple[int, int, int]:
        loc = p.location
        if loc is None or loc.line <= 0 or loc.file.startswith("<-s"):
            return (1, 0, 0)
        return (0, loc.line, loc.col)

    return sorted(problems, key=key)


def validate(runtime: Any, data: Any, problems: list[Problem], notes: list[Problem] | None = None) -> Any:
    """Decode ``data`` into a :class:`ManifestSpec` and run every semantic check; notes go to ``notes``."""
    decoder = Decoder(runtime, data, problems, notes=notes)

    requires = data.get("requires")
    if isinstance(requires, list):
        for i, req in enumerate(requires):
            if isinstance(req, str) and (msg := runtime.check_requires([req])):
                decoder.report(("requires", i), msg[0], _requires_hint(msg[0]))

    # per-run train: blocks are decoded by their trainer's struct, from the raw data, so their
    # problems are reported even when something else in the manifest is wrong
    trains = _decode_train_blocks(runtime, decoder, data)
    spec = decoder.decode(data, ManifestSpec, ())
    if spec is INVALID:
        return INVALID

    def report(path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        problems.append(Problem(locate(data, path), format_path(path), message, hint))

    names: dict[str, int] = {}
    for ti, target in enumerate(spec.targets):
        tpath: tuple[str | int, ...] = ("targets", ti)
        if target.name in names:
            report((*tpath, "name"), f"duplicate target name '{target.name}'",
                   f"target {names[target.name]} has the same name; rename one")
        names.setdefault(target.name, ti)
        if isinstance(target, ExperimentTarget):
            for ri, run in enumerate(target.runs):
                run.train = trains.get((ti, ri), run.train)
            _check_experiment(target, tpath, report)
            _check_memory(target, tpath, report)
    for alias, name in spec.entrypoints.items():
        bare = name.split(":", 1)[1] if ":" in name else name
        if bare not in names:
            report(("entrypoints", alias), f"entrypoint '{alias}' names no target '{bare}'",
                   did_you_mean(bare, names))
    return spec


def _requires_hint(message: str) -> str:
    if " is failed" in message:
        return "the plugin is installed but failed to load: fix what the message says (caramba plugins shows it)"
    if " is blocked" in message:
        return "the plugin is installed but blocked here (-p no:NAME, CARAMBA_PLUGINS or " \
               "CARAMBA_DISABLE_PLUGIN_AUTOLOAD): unblock it"
    if "is installed but the manifest requires" in message:
        return "install a version the manifest accepts, then run again"
    return "install the plugin distribution, then run again"


def _decode_train_blocks(runtime: Any, decoder: Decoder, data: Any) -> dict[tuple[int, int], Any]:
    """``{(target index, run index): decoded train struct}`` for every valid ``runs[].train``."""
    out: dict[tuple[int, int], Any] = {}
    targets = data.get("targets")
    for ti, target in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(target, dict) or not isinstance(target.get("runs"), list):
            continue
        trainer = target.get("trainer")
        ref = trainer.get("ref") if isinstance(trainer, dict) else trainer
        entry = runtime.registry("trainer").find(ref) if isinstance(ref, str) else None
        if entry is None:
            continue  # the decoder reports the unknown trainer
        run_config = entry.run_config
        carried: dict[str, tuple[Any, Any, Any]] = {}
        for ri, run in enumerate(target["runs"]):
            if not isinstance(run, dict) or run.get("train") is None:
                continue
            path = ("targets", ti, "runs", ri, "train")
            if run_config is None:
                decoder.report(path, f"trainer '{entry.name}' takes no per-run train: block")
                continue
            if isinstance(run["train"], dict):
                _inherit(decoder, run["train"], run_config, carried, run.get("id"), path)
            decoded = decoder.decode_struct(run["train"], run_config, path, label=f"{entry.name} train")
            if decoded is not INVALID:
                out[(ti, ri)] = decoded
    return out


def _inherit(decoder: Decoder, train: dict, run_config: type, carried: dict[str, tuple[Any, Any, Any]],
             run_id: Any, path: tuple[str | int, ...]) -> None:
    """Fields the original caramba's trainer kept from one run to the next (its teacher) carry over."""
    for name in getattr(run_config, "__caramba_inherited__", ()):
        if name in train:
            carried[name] = (train[name], getattr(train, "locations", {}).get(name), run_id)
        elif name in carried:
            value, where, source = carried[name]
            train[name] = value
            if hasattr(train, "locations"):
                train.locations[name] = where
            decoder.notes.append(Problem(getattr(train, "location", None), format_path((*path, name)),
                                         f"'{name}' is inherited from run '{source}', as the original caramba did",
                                         f"write '{name}' in this run to make it explicit"))


def _check_components_agree(target: ExperimentTarget, tpath: tuple[str | int, ...], report: Any) -> None:
    """What the dataset gives against what the objective reads and the system takes, where each says.

    A dataset config may declare ``batch_keys()`` and ``feature_width()``, an objective config
    ``batch_fields()`` (``{field: batch key it reads}``), a system config ``input_width()``
    (``(field, width)``); a component that declares nothing is not checked.
    """
    data, objective, system = target.data.config, target.objective.config, target.system.config
    keys = _call(data, "batch_keys")
    fields = _call(objective, "batch_fields")
    if keys is not None and fields:
        for field_name, key in fields.items():
            if key not in keys:
                report((*tpath, "objective", "config", field_name),
                       f"the batches of {target.data.ref} hold no '{key}' (they hold {', '.join(keys)})",
                       did_you_mean(key, keys))
    width, wanted = _call(data, "feature_width"), _call(system, "input_width")
    if width is not None and wanted is not None and wanted[1] != width:
        report((*tpath, "system", "config", wanted[0]),
               f"{wanted[0]} is {wanted[1]} but the inputs of {target.data.ref} are {width} wide",
               f"set {wanted[0]}: {width}")


def _check_expected(run: Any, rpath: tuple[str | int, ...], report: Any) -> None:
    """The original's ``expected: {phase: blockwise}`` states what the run's ``train:`` holds; it must agree."""
    if run.expected and isinstance(run.train, dict):
        return  # its train: block did not decode; that problem is reported already
    for key, want in run.expected.items():
        have = getattr(run.train, key, _ABSENT) if run.train is not None else _ABSENT
        if have is _ABSENT:
            report((*rpath, "expected", key), f"expected: names '{key}', which this run's train: does not have",
                   "expected: states values of the run's train: fields")
        elif have != want:
            report((*rpath, "expected", key), f"the run expects {key}: {want!r} but its train: gives {have!r}",
                   f"set train.{key}: {want!r}, or fix expected:")


_ABSENT = object()


def _call(config: Any, method: str) -> Any:
    fn = getattr(config, method, None)
    return fn() if callable(fn) else None


def _check_experiment(target: ExperimentTarget, tpath: tuple[str | int, ...], report: Any) -> None:
    run_ids: set[str] = set()
    for ri, run in enumerate(target.runs):
        if run.id in run_ids:
            report((*tpath, "runs", ri, "id"), f"duplicate run id '{run.id}'",
                   "run ids must be unique within a target")
        run_ids.add(run.id)
    # each component's own check() already ran when it was decoded
    _check_components_agree(target, tpath, report)
    for ri, run in enumerate(target.runs):
        _check_expected(run, (*tpath, "runs", ri), report)
    for bi, bench in enumerate(target.benchmarks):
        known = set(target.labels) | {"student", "teacher", "model"}
        for mi, model in enumerate(bench.models):
            if model not in known:
                report((*tpath, "benchmarks", bi, "models", mi), f"unknown model '{model}'",
                       "name 'student', 'teacher' or a key of the target's labels:")


def _check_memory(target: ExperimentTarget, tpath: tuple[str | int, ...], report: Any) -> None:
    """Refuse a system whose weights alone cannot fit the memory there is (validate stays torch-free)."""
    count = getattr(target.system.config, "num_params", None)
    budget = memory_budget()
    if count is None or budget is None:
        return
    try:
        params = int(count())
    except Exception:  # noqa: BLE001 - a config that cannot count its parameters is not refused for it
        return
    weights = params * 4  # every system is built in fp32 on the host before it moves to its device
    if weights > budget:
        report((*tpath, "system"),
               f"the model's {params:,} parameters need {human_bytes(weights)} as fp32 weights alone (about "
               f"{human_bytes(training_bytes(params))} to train with AdamW); the memory budget is "
               f"{human_bytes(budget)}",
               "shrink the model (d_model, n_layers, vocab_size), or set CARAMBA_MEMORY_BYTES to the memory "
               "it will really have")
