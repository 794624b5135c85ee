"""Development sessions.

* ``nox -s lint``: ``ruff check`` and ``ruff format --check`` over the tree;
* ``nox -s typecheck``: ``mypy --strict`` over caramba-core and every first-party plugin (``mypy.ini``);
* ``nox -s tests``: the whole pytest suite; ``nox -s tests_fast``: without ``@pytest.mark.slow``
  tests (each over ~10 s), the tier to run on every change;
* ``nox -s template``, ``nox -s sync_template``: the plugin template as a user installs it.

pip (never uv) installs from ``requirements-dev.txt``, whose exact torch pin keeps the
resolver on the CPU wheel. ``scripts/test`` runs ``template`` after pytest with
``--reuse-existing-virtualenvs`` so reruns are quick.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ("caramba-core", "caramba-layers", "caramba-trainers", "caramba-infer", "caramba-kernels",
            "caramba-agents")
TEMPLATE = ROOT / "plugins-template"
BUNDLED_TEMPLATE = ROOT / "caramba-core" / "src" / "caramba" / "cli" / "template"
TEMPLATE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".ruff_cache",
                                         "build", "dist")

nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["lint", "tests", "typecheck", "template"]


def _constraints() -> tuple[str, str]:
    """``-c FILE`` pinning every runtime and dev package: both files' pins, without requirements-dev.txt's
    ``-r`` line (in a constraints file pip would read the included file as requirements)."""
    pins = [line for name in ("requirements.txt", "requirements-dev.txt")
            for line in (ROOT / name).read_text().splitlines() if line and not line.startswith(("#", "-"))]
    out = ROOT / ".nox" / "constraints.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(pins) + "\n")
    return "-c", str(out)


def _present(*names: str) -> list[str]:
    return [f"./{n}" for n in names if (ROOT / n / "pyproject.toml").is_file()]


def _install_dev(session: nox.Session) -> None:
    session.install("-r", "requirements-dev.txt")
    session.install("--no-deps", "-r", "requirements-nodeps.txt")
    session.install("--no-deps", *[arg for path in _present(*PACKAGES) for arg in ("-e", path)])
    session.env["CARAMBA_STRICT_PLUGINS"] = "1"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's lint rules and its formatting, as CI checks them."""
    session.install(*_constraints(), "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole pytest suite against editable installs of every package."""
    _install_dev(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    """``mypy --strict`` over caramba-core and every first-party plugin (``mypy.ini``).

    Runs in the environment nox is started from (``.venv``: mypy and torch are pinned in
    ``requirements-dev.txt``), so it costs no second torch install. ``mypy.ini`` lists the
    modules that still have known errors, by error code; that list only shrinks.
    """
    session.run(sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"), *session.posargs)


@nox.session
def tests_fast(session: nox.Session) -> None:
    """The suite without tests marked slow: minutes on two cores."""
    _install_dev(session)
    session.run("python", "-m", "pytest", "-q", "-m", "not slow", *session.posargs)


@nox.session
def template(session: nox.Session) -> None:
    """The template as a user gets it: a built wheel, installed (not editable) beside released caramba.

    Checks that ``caramba plugins --json`` lists it, that a manifest using its layer
    validates, builds and trains, and that its own tests pass against the installed wheel.
    """
    constraints = _constraints()
    session.install(*constraints, "setuptools>=77", "pytest")
    # Regular (not editable) installs of the packages the example manifest uses; the digits
    # data set comes with caramba-trainers' "datasets" extra (scikit-learn).
    trainers = [f"{path}[datasets]" for path in _present("caramba-trainers")]
    session.install(*constraints, *_present("caramba-core", "caramba-layers"), *trainers)
    work = Path(tempfile.mkdtemp(prefix="caramba-template-"))
    source = work / "source"  # build from a copy: setuptools leaves build/ and *.egg-info behind
    shutil.copytree(TEMPLATE, source, ignore=TEMPLATE_IGNORE)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
                str(source))
    [wheel] = (work / "dist").glob("caramba_plugin_example-*.whl")
    session.install(*constraints, "--force-reinstall", "--no-deps", str(wheel))
    session.env["CARAMBA_STRICT_PLUGINS"] = "1"

    listing = json.loads(session.run("caramba", "plugins", "--json", silent=True))
    [plugin] = [p for p in listing["plugins"] if p["distribution"] == "caramba-plugin-example"]
    expected = {"layer": ["ExampleLayer"], "topology": ["ExampleTopology"], "sink": ["example_csv"]}
    if plugin["status"] != "loaded" or plugin["components"] != expected:
        session.error(f"caramba plugins lists the template wrongly: {plugin}")
    if "site-packages" not in plugin["location"]:
        session.error(f"the template was not loaded from the installed wheel: {plugin['location']}")

    manifest = TEMPLATE / "examples" / "digits.yml"
    session.run("caramba", "validate", str(manifest))
    session.run("caramba", "run", str(manifest), "--dry-run")
    session.run("caramba", "run", str(manifest), "--out", str(work / "artifacts"))
    run_dir = work / "artifacts" / "plugin_digits" / "digits" / "runs" / "quick"
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line and '"phase": "train"' in line]
    if len(losses) != 30 or not losses[-1] < 0.5 * losses[0]:
        session.error(f"training through the template's layer did not learn: losses {losses}")
    if not (run_dir / "metrics.csv").is_file():
        session.error("the run wrote no metrics.csv through the template's example_csv sink")
    session.log(f"trained 30 steps through ExampleLayer/ExampleTopology: loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    # The template's own tests, importing the installed wheel (run from a folder without src/).
    tests_copy = work / "plugin-tests"
    shutil.copytree(TEMPLATE / "tests", tests_copy / "tests")
    shutil.copy(TEMPLATE / "pyproject.toml", tests_copy / "pyproject.toml")
    with session.chdir(tests_copy):
        session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    shutil.rmtree(work, ignore_errors=True)


@nox.session(python=False)
def sync_template(session: nox.Session) -> None:
    """Copy ``plugins-template/`` into caramba-core's package data (what ``caramba new-plugin`` writes from)."""
    shutil.rmtree(BUNDLED_TEMPLATE, ignore_errors=True)
    shutil.copytree(TEMPLATE, BUNDLED_TEMPLATE, ignore=TEMPLATE_IGNORE)
    session.log(f"copied {TEMPLATE.name}/ to {BUNDLED_TEMPLATE.relative_to(ROOT)}/")
