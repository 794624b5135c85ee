"""paper_write on the quickstart's artifacts: a .tex that cites the real figures, tables and numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from caramba.cli import main

pytestmark = pytest.mark.slow

PAPER = """
version: 2
name: writeup
targets:
  - type: process
    name: paper
    process: {{type: paper_write, run_dir: "{run}", title: "A small GPT on byte tokens"}}
"""


def balanced(tex: str) -> bool:
    stack: list[str] = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", tex):
        if kind == "begin":
            stack.append(env)
        elif not stack or stack.pop() != env:
            return False
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return not stack and depth == 0


def test_paper_write_on_the_quickstart_cites_its_figures_tables_and_numbers(quick_run: Path, tmp_path, capsys):
    (tmp_path / "paper.yml").write_text(PAPER.format(run=quick_run))
    assert main(["run", str(tmp_path / "paper.yml"), "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "writeup" / "paper"
    result = json.loads((folder / "report.json").read_text())["result"]
    tex_path = Path(result["tex"])
    tex = tex_path.read_text()
    assert balanced(tex)

    cited = re.findall(r"\\includegraphics\[[^]]*\]\{figures/([^}]+)\}", tex)
    assert sorted(cited) == sorted(p.name for p in quick_run.glob("*.png")) and cited
    for name in cited:  # the very files the run wrote
        assert (tex_path.parent / "figures" / name).read_bytes() == (quick_run / name).read_bytes()
    assert "\\input{tables.tex}" in tex
    assert (tex_path.parent / "tables.tex").read_text() == (quick_run / "tables.tex").read_text()

    report = json.loads((quick_run / "report.json").read_text())
    val_loss = report["runs"][0]["metrics"]["val_loss"]
    assert f"val\\_loss & {val_loss:.4g} \\\\" in tex
    ppl = report["benchmarks"]["ppl"]["summary"]
    assert all(f"{v:.4g}" in tex for v in ppl.values())

    if shutil.which("pdflatex"):
        assert result["pdf"] and Path(result["pdf"]).is_file()
    else:
        assert result["pdf"] is None and "pdflatex is not installed" in result["compile"]


def test_paper_write_names_a_folder_without_a_report(tmp_path, capsys):
    (tmp_path / "paper.yml").write_text(PAPER.format(run=tmp_path / "nothing"))
    assert main(["run", str(tmp_path / "paper.yml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has no report.json" in err and "Traceback" not in err
