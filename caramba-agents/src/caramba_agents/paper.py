"""``paper_write``: a LaTeX paper from a run folder's results.

The numbers, tables and figures come from the run's own files (``report.json``, the CSVs,
the PNG plots, ``tables.tex``), never from a model; an optional ``writer`` agent drafts the
prose (abstract and discussion) from a summary of those numbers. The paper compiles with
``pdflatex`` where it is installed; everything is written to temporary files and renamed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from caramba import UsageError, atomic_write_text
from caramba_agents.chat import Message, ProviderError
from caramba_agents.providers import create_provider
from caramba_agents.specs import PaperWriteConfig

__all__ = ["PaperWrite", "compile_pdf", "drafted_prose", "latex_escape", "plain_prose", "results_summary",
           "write_paper"]

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def results_summary(run_dir: Path) -> dict[str, Any]:
    """What the paper reports: the runs' final metrics, benchmark summaries, the files there."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise UsageError(f"{run_dir} has no report.json", hint="name a target folder that `caramba run` wrote")
    report = json.loads(report_path.read_text())
    return {
        "name": report.get("metadata", {}).get("name", run_dir.parent.name),
        "target": report.get("metadata", {}).get("target", run_dir.name),
        "labels": report.get("metadata", {}).get("labels", {}),
        "runs": [{"id": r["id"], "seed": r.get("seed"), "metrics": r.get("metrics", {}),
                  "verify": [{k: v.get(k) for k in ("name", "passed", "message")} for v in r.get("verify", [])]}
                 for r in report.get("runs", [])],
        "benchmarks": {k: {"type": v.get("type"), "summary": v.get("summary", {})}
                       for k, v in report.get("benchmarks", {}).items()},
        "figures": sorted(p.name for p in run_dir.glob("*.png")),
        "csv": sorted(p.name for p in run_dir.glob("*.csv")),
        "tables": (run_dir / "tables.tex").is_file(),
    }


def _metrics_table(summary: dict[str, Any]) -> str:
    rows = [(r["id"], k, v) for r in summary["runs"] for k, v in sorted(r["metrics"].items())
            if isinstance(v, (int, float))]
    if not rows:
        return ""
    body = "\n".join(f"{latex_escape(run)} & {latex_escape(key)} & {value:.4g} \\\\" for run, key, value in rows)
    return ("\\begin{table}[t]\n\\centering\n\\caption{Final metrics of each run.}\\label{tab:runs}\n"
            "\\begin{tabular}{llr}\n\\toprule\nRun & Metric & Value \\\\\n\\midrule\n"
            f"{body}\n\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n")


def _flat(summary: dict[str, Any], prefix: str = "") -> list[str]:
    """``["metric (model): 30.26", ...]`` from a benchmark summary nested one or two levels."""
    out: list[str] = []
    for key, value in sorted(summary.items()):
        name = f"{prefix} ({key})" if prefix else key
        if isinstance(value, dict):
            out += _flat(value, name)
        else:
            out.append(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    return out


def _additional(summary: dict[str, Any]) -> str:
    """The experiments a review proposed and the loop ran, with their final metrics."""
    done = summary.get("additional_experiments") or []
    if not done:
        return ""
    items = "".join(
        f"\\item \\texttt{{{latex_escape(e['name'])}}}: {latex_escape(e.get('hypothesis', ''))} "
        + (latex_escape(", ".join(f"{k} {v:.4g}" for k, v in sorted(e["metrics"].items())
                                  if isinstance(v, (int, float))))
           if e["exit_code"] == 0 else f"(failed, exit code {e['exit_code']})") + "\n" for e in done)
    return f"\\section{{Additional experiments}}\n\\begin{{itemize}}\n{items}\\end{{itemize}}\n\n"


def _figure(name: str) -> str:
    label = Path(name).stem
    caption = latex_escape(label.replace("_", " "))
    return (f"\\begin{{figure}}[t]\n\\centering\n\\includegraphics[width=\\linewidth]{{figures/{name}}}\n"
            f"\\caption{{{caption}.}}\\label{{fig:{label}}}\n\\end{{figure}}\n")


def plain_prose(summary: dict[str, Any]) -> dict[str, str]:
    runs = "; ".join(f"run {r['id']} (seed {r['seed']}): " + ", ".join(
        f"{k} {v:.4g}" for k, v in sorted(r["metrics"].items()) if isinstance(v, (int, float)))
        for r in summary["runs"])
    return {"abstract": f"We report the {summary['target']} target of the {summary['name']} experiment. {runs}.",
            "discussion": "The tables and figures above are produced directly from the run's artifacts."}


def drafted_prose(config: PaperWriteConfig, runtime: Any, summary: dict[str, Any]) -> dict[str, str]:
    assert config.writer is not None
    provider = create_provider(runtime, config.writer.provider)
    prose: dict[str, str] = {}
    for section, ask in (("abstract", "Write the abstract (at most 120 words)"),
                         ("discussion", "Write a short discussion of what these results show and do not show")):
        reply = provider.chat([
            Message("system", config.writer.instructions or "You write precise ML papers. Plain text, no LaTeX."),
            Message("user", f"{ask} for this experiment. Use only these numbers:\n{json.dumps(summary, indent=1)}"),
        ])
        prose[section] = reply.text.strip()
    return prose


def write_paper(summary: dict[str, Any], prose: dict[str, str], run_dir: Path, out: Path, *, title: str,
                authors: str) -> Path:
    """Write ``out/paper.tex`` (and copy figures and ``tables.tex``); returns the ``.tex`` path."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for name in summary["figures"]:
        shutil.copy2(run_dir / name, figures / name)
    tables = ""
    if summary["tables"]:
        shutil.copy2(run_dir / "tables.tex", out / "tables.tex")
        tables = "\\input{tables.tex}\n"
    bench = "".join(f"\\paragraph{{{latex_escape(k)}}} " + latex_escape("; ".join(_flat(b["summary"]))) + ".\n"
                    for k, b in summary["benchmarks"].items())
    refs = ", ".join(f"Figure~\\ref{{fig:{Path(n).stem}}}" for n in summary["figures"])
    tex = f"""\\documentclass[11pt]{{article}}
\\usepackage[margin=1in]{{geometry}}
\\usepackage{{booktabs}}
\\usepackage{{graphicx}}
\\usepackage[T1]{{fontenc}}
\\title{{{latex_escape(title)}}}
\\author{{{latex_escape(authors)}}}
\\date{{}}
\\begin{{document}}
\\maketitle
\\begin{{abstract}}
{latex_escape(prose["abstract"])}
\\end{{abstract}}

\\section{{Setup}}
Experiment \\texttt{{{latex_escape(summary["name"])}}}, target \\texttt{{{latex_escape(summary["target"])}}}:
{len(summary["runs"])} run(s); the full manifest is in the run folder (\\texttt{{manifest.resolved.yml}}).

\\section{{Results}}
Table~\\ref{{tab:runs}} lists each run's final metrics{"; " + refs + " show the benchmarks" if refs else ""}.
{_metrics_table(summary)}{tables}{bench}{"".join(_figure(n) for n in summary["figures"])}
\\{_additional(summary)}\\section{{Discussion}}
{latex_escape(prose["discussion"])}

\\end{{document}}
"""
    path = out / "paper.tex"
    atomic_write_text(path, tex)
    return path


def compile_pdf(tex: Path) -> tuple[Path | None, str]:
    """``(pdf, "")`` after two pdflatex passes, or ``(None, why)``."""
    exe = shutil.which("pdflatex")
    if exe is None:
        return None, "pdflatex is not installed; the .tex is ready to compile"
    for _ in range(2):  # the second pass resolves references
        done = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tex.parent,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            errors = [line for line in done.stdout.splitlines() if line.startswith("!")]
            return None, f"pdflatex failed: {errors[0] if errors else done.stdout[-300:]}"
    return tex.with_suffix(".pdf"), ""


class PaperWrite:
    def __init__(self, config: PaperWriteConfig) -> None:
        self.config = config

    def run(self, session: Any) -> dict[str, Any]:
        c = self.config
        run_dir = Path(c.run_dir)
        out = Path(c.output_dir) if Path(c.output_dir).is_absolute() else session.target_dir / c.output_dir
        summary = results_summary(run_dir)
        prose = plain_prose(summary)
        if c.writer is not None:
            try:
                prose = drafted_prose(c, session.runtime, summary)
            except ProviderError as exc:
                session.info(f"[yellow]the writer failed[/] ({exc}); the paper uses the plain summary")
        tex = write_paper(summary, prose, run_dir, out, title=c.title, authors=c.authors)
        pdf, why = compile_pdf(tex) if c.compile else (None, "compile: false")
        session.info(f"paper: {tex}" + (f", {pdf}" if pdf else f" ({why})"))
        return {"tex": str(tex), "pdf": str(pdf) if pdf else None, "compile": why or "ok",
                "figures": summary["figures"]}
