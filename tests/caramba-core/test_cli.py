"""The ``caramba`` command line: torch-free listing and validation, exit codes, output."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from caramba.cli import main

HERE = Path(__file__).parent
HAVE_LAYERS = any(ep.name == "layers" for ep in metadata.entry_points(group="caramba"))

LM_MANIFEST = """
version: 2
name: lm
vars:
  d: 32
targets:
  - name: tiny
    data: dataset.toy_regression
    system:
      ref: system.language_model
      config:
        model:
          embedder: {type: token, vocab_size: 64, d_model: "${d}"}
          topology:
            type: StackedTopology
            layers:
              - type: ResidualTopology
                repeat: 2
                layers:
                  - {type: RMSNormLayer, d_model: "${d}"}
                  - {type: AttentionLayer, d_model: "${d}", n_heads: 4, n_kv_heads: 2}
              - {type: RMSNormLayer, d_model: "${d}"}
    objective: objective.toy_mse
    trainer: trainer.toy
    runs:
      - {id: r, steps: 1, seed: [1, 2]}
"""

TOY_MANIFEST = (HERE / "malformed" / "_base.yml").read_text()

RUN_MANIFEST = """
version: 2
name: toy
targets:
  - name: quick
    data: {ref: dataset.toy_regression, config: {n: 32, d_in: 4}}
    system:
      ref: system.toy
      config:
        d_in: 4
        model: {type: ToyLinear, d_in: 4, d_out: 1}
    objective: objective.toy_mse
    trainer: trainer.toy
    runs:
      - id: r
        steps: 2
        verify: {type: toy_threshold, max_loss: 1000.0}
    benchmarks:
      - {id: mse, config: {type: toy_loss}}
"""

# Runs the CLI in-process, then fails if torch (or numpy) was imported on the way.
AUDIT = """
import sys
from caramba.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "numpy") if m in sys.modules)
if heavy:
    print("IMPORTED: " + ", ".join(heavy), file=sys.stderr)
    sys.exit(99)
sys.exit(code)
"""


@pytest.fixture
def toy_site(tmp_path: Path, make_dist) -> Path:
    """The toy and shape-rule plugins installed as entry points, as a user's plugins would be."""
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "caramba-toy", "0.1.0", "toy_entry", "from caramba.testing.toy import *  # noqa\n"
              "from caramba.testing import toy as _t\n"
              "globals().update({k: getattr(_t, k) for k in dir(_t) if k.startswith('caramba_')})\n",
              {"toy": "toy_entry"})
    make_dist(site, "caramba-shapes", "0.1.0", "shapes_plugin", (HERE / "shapes_plugin.py").read_text(),
              {"shapes": "shapes_plugin"})
    return site


def audited(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", AUDIT, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


def plugin_env(clean_env, site: Path) -> dict[str, str]:
    names = "toy,shapes" + (",layers" if HAVE_LAYERS else "")
    return clean_env(PYTHONPATH=str(site), CARAMBA_PLUGINS=names)


@pytest.mark.parametrize("command", [["plugins"], ["plugins", "--json"], ["ls", "layer"], ["show", "layer", "Heads"],
                                     ["schema"]])
def test_listing_commands_never_import_torch(toy_site, clean_env, command):
    done = audited(command, plugin_env(clean_env, toy_site))
    assert done.returncode == 0, done.stderr


def test_validate_and_dry_run_never_import_torch(toy_site, clean_env, tmp_path):
    path = tmp_path / "toy.yml"
    path.write_text(TOY_MANIFEST)
    env = plugin_env(clean_env, toy_site)
    done = audited(["validate", str(path)], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{path}: valid (1 target(s): quick)\n"
    done = audited(["run", str(path), "--dry-run", "--json"], env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["targets"][0]["parameters"] == 8 * 8 + 8 + 8 * 1 + 1


@pytest.mark.skipif(not HAVE_LAYERS, reason="caramba-layers is not installed")
def test_language_model_dry_run_with_caramba_layers_never_imports_torch(toy_site, clean_env, tmp_path):
    path = tmp_path / "lm.yml"
    path.write_text(LM_MANIFEST)
    done = audited(["run", str(path), "--dry-run", "--json"], plugin_env(clean_env, toy_site))
    assert done.returncode == 0, done.stderr
    target = json.loads(done.stdout)["targets"][0]
    assert [r["id"] for r in target["runs"]] == ["r__s1", "r__s2"]
    # two attention layers cache K and V: 2 heads x 8 dims each, per token
    assert target["kv_bytes_per_token"]["fp32"] == 2 * 2 * (2 * 8) * 4


@pytest.mark.parametrize("ep", sorted(metadata.entry_points(group="caramba"), key=lambda e: e.name),
                         ids=lambda ep: ep.name)
def test_every_installed_plugin_registers_without_importing_torch(ep):
    code = ("import sys, caramba\n"
            f"rt = caramba.Runtime(autoload=False, plugins=[__import__({ep.value!r}, fromlist=['_'])], strict=True)\n"
            "assert 'torch' not in sys.modules, 'registering imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"plugin '{ep.name}' ({ep.value}): {done.stderr.strip().splitlines()[-1]}"


# --- exit codes and messages (in-process: fast) -----------------------------------------------

@pytest.fixture
def toy_cli(monkeypatch, toy_site, tmp_path):
    """``main`` with the toy and shape plugins found as entry points."""
    monkeypatch.syspath_prepend(str(toy_site))
    for name in [k for k in __import__("os").environ if k.startswith("CARAMBA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARAMBA_PLUGINS", "toy,shapes")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.yml").write_text(TOY_MANIFEST)
    return main


def test_validate_ok_exits_0(toy_cli, capsys):
    assert toy_cli(["validate", "toy.yml"]) == 0
    assert capsys.readouterr().out == "toy.yml: valid (1 target(s): quick)\n"


def test_bad_manifest_exits_2_with_the_report_and_no_traceback(toy_cli, capsys):
    assert toy_cli(["validate", "toy.yml", "-s", "targets.quick.runs.0.steps=many", "-s", "vars.d=6"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "toy.yml: 3 problems",
        "  toy.yml:26:25  targets[0].system.config.model.layers[1].layers[0].d_in  input width is 6 but d_in is 8  "
        "(set d_in: 6, or change the layer before it to output 8)",
        "  toy.yml:29:21  targets[0].system.config.model.layers[2].d_in  input width is 6 but d_in is 8  "
        "(set d_in: 6, or change the layer before it to output 8)",
        "  <-s targets.quick.runs.0.steps=many>:1:1  targets[0].runs[0].steps  expected an int, got the string 'many'",
    ]
    assert "Traceback" not in err


def test_dry_run_prints_the_plan(toy_cli, capsys):
    assert toy_cli(["run", "toy.yml", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "plan for toy.yml (toy)"
    assert "    parameters 81" in out
    assert "    run r: seed 0, 2 steps" in out


def test_python_dash_m_form_means_run(toy_cli, capsys):
    assert toy_cli(["toy.yml", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["targets"][0]["name"] == "quick"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["validate", "missing.yml"], 2, "missing.yml  <root>  file not found  (check the path, or name a preset)"),
        (["validate", "no_such_preset"], 2, "no manifest file or preset named 'no_such_preset'"),
        (["run", "toy.yml", "--dry-run", "--target", "quik"], 2,
         "toy.yml has no target 'quik'  (did you mean 'quick'?)"),
        (["ls", "layers"], 2, "unknown component kind 'layers'  (did you mean 'layer'?)"),
        (["show", "layer", "ToyLinaer"], 2, "unknown layer 'ToyLinaer'  (did you mean 'ToyLinear'?)"),
        (["-p", "yes:toy", "plugins"], 2, "unknown plugin option -p yes:toy"),
    ],
)
def test_usage_errors_exit_2_with_a_hint(toy_cli, capsys, argv, code, message):
    assert toy_cli(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_subcommand_option_exits_2(toy_cli):
    with pytest.raises(SystemExit) as info:
        toy_cli(["validate", "toy.yml", "--bogus"])
    assert info.value.code == 2


def test_blocking_with_p_before_or_after_the_command(toy_cli, capsys):
    for argv in (["-p", "no:shapes", "plugins", "--json"], ["plugins", "-p", "no:shapes", "--json"]):
        assert toy_cli(argv) == 0
        status = {p["name"]: p["status"] for p in json.loads(capsys.readouterr().out)["plugins"]}
        assert status["shapes"] == "blocked" and status["toy"] == "loaded"


def test_show_lists_fields_with_readable_types(toy_cli, capsys):
    assert toy_cli(["show", "layer", "Heads", "--json"]) == 0
    fields = {f["name"]: f for f in json.loads(capsys.readouterr().out)["fields"]}
    assert fields["n_kv_heads"] == {"name": "n_kv_heads", "type": "int > 0 | None", "required": False,
                                    "default": None}
    assert fields["d_model"]["required"] is True


def test_schema_is_json_schema_listing_registered_layers(toy_cli, capsys):
    assert toy_cli(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    node_members = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["$defs"]["NodeConfig"]["anyOf"]}
    assert {"ToyLinearConfig", "HeadsConfig", "ResidualConfig", "ToySequentialConfig"} <= node_members


def test_a_full_toy_run_writes_the_run_folder(toy_cli, capsys, tmp_path):
    (tmp_path / "run.yml").write_text(RUN_MANIFEST)
    assert toy_cli(["run", "run.yml", "--out", "out", "-s", "targets.quick.runs.0.steps=3"]) == 0
    folder = tmp_path / "out" / "toy" / "quick"
    assert sorted(p.name for p in folder.iterdir()) == [
        "caramba.lock", "environment.json", "manifest.resolved.yml", "overrides.json", "plugins.lock.json",
        "report.json", "runs"]
    assert json.loads((folder / "overrides.json").read_text()) == ["targets.quick.runs.0.steps=3"]
    lock = json.loads((folder / "plugins.lock.json").read_text())
    assert {"plugin": "toy", "distribution": "caramba-toy", "version": "0.1.0"} in lock
    lines = (folder / "runs" / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    report = json.loads((folder / "report.json").read_text())
    assert report["runs"][0]["verify"][0]["passed"] is True
    assert [row["model"] for row in report["benchmarks"]["mse"]["rows"]] == ["student"]


def test_dry_run_on_meta_builds_the_system_and_agrees_with_num_params(toy_cli, capsys, tmp_path):
    (tmp_path / "run.yml").write_text(RUN_MANIFEST)
    assert toy_cli(["run", "run.yml", "--dry-run", "--meta", "--json"]) == 0
    target = json.loads(capsys.readouterr().out)["targets"][0]
    assert target["parameters"] == target["parameters_built"] == 4 * 1 + 1


def test_show_lists_a_trainers_per_run_train_fields(capsys, monkeypatch) -> None:
    import json

    import caramba.cli._commands as commands
    from caramba import Runtime
    from caramba.cli import main
    from caramba.testing import toy

    monkeypatch.setattr(commands, "runtime_from_args", lambda args: Runtime(autoload=False, plugins=[toy]))
    assert main(["show", "trainer", "trainer.toy", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in shown["run_fields"]] == ["lr", "batch_size"]
    assert shown["run_fields"][0]["default"] == 0.1
