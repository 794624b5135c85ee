"""Publication artifacts from a target's report: CSVs, PNG plots, a booktabs table, a summary.

Every writer reads the report the pipeline built (``report["benchmarks"][id]`` holds a
benchmark's ``type`` and ``rows``), names models by the labels already in the rows (the
manifest's ``labels:``), and writes atomically into the target's folder. A file whose
benchmark did not run is not written.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from caramba import ArtifactWriter, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["CSV_COLUMNS", "CsvWriter", "PlotWriter", "SummaryWriter", "TableWriter", "rows_of", "summarise"]

CSV_COLUMNS = {
    "perplexity": ["model", "role", "split", "perplexity", "loss", "num_tokens", "num_batches"],
    "latency": ["model", "role", "batch_size", "prompt_len", "gen_len", "cache_kind", "use_cache", "compiled",
                "prefill_ms", "decode_ms", "total_ms", "ttft_ms", "ms_per_token", "tokens_per_sec",
                "decode_tokens_per_sec", "timed_runs", "device"],
    "memory": ["model", "role", "cache_kind", "batch_size", "seq_len", "kv_bytes", "kv_bytes_per_token",
               "analytic_kv_bytes_per_token", "kv_rel_error", "kv_ok", "state_bytes", "peak_mb", "peak_method",
               "model_mb", "device"],
}


def rows_of(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Every row of every benchmark of type ``kind``, in manifest order."""
    return [row for bench in report.get("benchmarks", {}).values() if bench.get("type") == kind
            for row in bench.get("rows", [])]


def _models(report: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for kind in CSV_COLUMNS:
        for row in rows_of(report, kind):
            seen.setdefault(row["model"], None)
    return list(seen)


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Per model: perplexity, mean cached decode tokens/s, KV bytes per token per cache kind; plus
    ratios of every model against the first one."""
    models: dict[str, dict[str, Any]] = {m: {} for m in _models(report)}
    for row in rows_of(report, "perplexity"):
        models[row["model"]]["perplexity"] = row["perplexity"]
    for label in models:
        tps = [r["decode_tokens_per_sec"] for r in rows_of(report, "latency") if r["model"] == label and r["use_cache"]]
        if tps:
            models[label]["decode_tokens_per_sec"] = statistics.mean(tps)
        kv = {r["cache_kind"]: r["kv_bytes_per_token"] for r in rows_of(report, "memory") if r["model"] == label}
        if kv:
            models[label]["kv_bytes_per_token"] = kv
    out: dict[str, Any] = {"models": models}
    labels = list(models)
    if len(labels) > 1:
        base = models[labels[0]]
        ratios: dict[str, Any] = {}
        for label in labels[1:]:
            m, r = models[label], {}
            if "perplexity" in m and "perplexity" in base:
                r["perplexity_ratio"] = m["perplexity"] / base["perplexity"]
            if "decode_tokens_per_sec" in m and "decode_tokens_per_sec" in base:
                r["speedup"] = m["decode_tokens_per_sec"] / base["decode_tokens_per_sec"]
            common = set(m.get("kv_bytes_per_token", {})) & set(base.get("kv_bytes_per_token", {}))
            if common:
                r["kv_reduction"] = {k: base["kv_bytes_per_token"][k] / m["kv_bytes_per_token"][k]
                                     for k in sorted(common) if m["kv_bytes_per_token"][k]}
            ratios[f"{label} vs {labels[0]}"] = r
        out["ratios"] = ratios
    return out


class SummaryWriter(ArtifactWriter):
    """Rewrites ``report.json`` with a ``summary`` block (the report is otherwise unchanged)."""

    def __init__(self, config: Any = None) -> None:
        pass

    def write(self, session: Any, report: dict[str, Any]) -> list[Path]:
        if not report.get("benchmarks"):
            return []
        out = {**report, "summary": summarise(report)}
        return [atomic_write_json(Path(session.target_dir) / "report.json", out)]


class CsvWriter(ArtifactWriter):
    """``perplexity.csv``, ``latency.csv``, ``memory.csv``: one line per benchmark row."""

    def __init__(self, config: Any = None) -> None:
        pass

    def write(self, session: Any, report: dict[str, Any]) -> list[Path]:
        written = []
        for kind, columns in CSV_COLUMNS.items():
            rows = rows_of(report, kind)
            if not rows:
                continue
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
            written.append(atomic_write_text(Path(session.target_dir) / f"{kind}.csv", buf.getvalue()))
        return written


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} benchmark", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


class PlotWriter(ArtifactWriter):
    """``summary.png`` (perplexity, decode tokens/s, KV bytes/token per model),
    ``latency_vs_context.png`` and ``memory_scaling.png`` (measured KV MB vs sequence length)."""

    def __init__(self, config: Any = None) -> None:
        pass

    def write(self, session: Any, report: dict[str, Any]) -> list[Path]:
        if not any(rows_of(report, kind) for kind in CSV_COLUMNS):  # no LM benchmark ran
            return []
        import matplotlib

        matplotlib.use("Agg", force=False)
        folder = Path(session.target_dir)
        return [self._summary(report, folder), self._latency(report, folder), self._memory(report, folder)]

    def _summary(self, report: dict[str, Any], folder: Path) -> Path:
        import matplotlib.pyplot as plt

        summary = summarise(report)["models"]
        labels = list(summary)
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        panels = [("perplexity", "perplexity ↓", "perplexity"),
                  ("decode_tokens_per_sec", "cached decode tokens/s ↑", "latency")]
        for ax, (key, title, what) in zip(axes[:2], panels):
            vals = [(m, summary[m][key]) for m in labels if key in summary[m]]
            if vals:
                ax.bar([m for m, _ in vals], [v for _, v in vals], color="C0")
                ax.set_title(title)
                ax.tick_params(axis="x", rotation=20)
            else:
                _no_data(ax, what)
        ax = axes[2]
        kinds = list(dict.fromkeys(k for m in labels for k in summary[m].get("kv_bytes_per_token", {})))
        if kinds:
            width = 0.8 / len(kinds)
            for i, kind in enumerate(kinds):
                ax.bar([j + i * width for j in range(len(labels))],
                       [summary[m].get("kv_bytes_per_token", {}).get(kind, 0) for m in labels], width, label=kind)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=20)
            ax.set_title("KV-cache bytes per token ↓ (measured)")
            ax.legend(fontsize=8)
        else:
            _no_data(ax, "memory")
        fig.suptitle(report.get("metadata", {}).get("target", ""), y=1.03)
        return _save(fig, folder / "summary.png")

    def _latency(self, report: dict[str, Any], folder: Path) -> Path:
        import matplotlib.pyplot as plt

        rows = [r for r in rows_of(report, "latency")]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        if rows:
            b = min(r["batch_size"] for r in rows)
            gens = sorted({r["gen_len"] for r in rows})
            g = gens[len(gens) // 2]
            for label in dict.fromkeys(r["model"] for r in rows):
                for cached in (True, False):
                    mine = sorted((r for r in rows if r["model"] == label and r["batch_size"] == b
                                   and r["gen_len"] == g and r["use_cache"] == cached), key=lambda r: r["prompt_len"])
                    if not mine:
                        continue
                    name = label if cached else f"{label} (no cache)"
                    x = [r["prompt_len"] for r in mine]
                    a1.plot(x, [r["decode_tokens_per_sec"] for r in mine], "o-", label=name)
                    a2.plot(x, [r["prefill_ms"] for r in mine], "o-", label=name)
            a1.set(xlabel="prompt length (tokens)", ylabel="decode tokens/s",
                   title=f"decode throughput (batch {b}, gen {g})")
            a2.set(xlabel="prompt length (tokens)", ylabel="ms", title="prefill = time to first token")
            a1.legend(fontsize=8)
        else:
            _no_data(a1, "latency")
            _no_data(a2, "latency")
        return _save(fig, folder / "latency_vs_context.png")

    def _memory(self, report: dict[str, Any], folder: Path) -> Path:
        import matplotlib.pyplot as plt

        rows = rows_of(report, "memory")
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if rows:
            b = min(r["batch_size"] for r in rows)
            for i, (label, kind) in enumerate(dict.fromkeys((r["model"], r["cache_kind"]) for r in rows)):
                mine = sorted((r for r in rows if r["model"] == label and r["cache_kind"] == kind
                               and r["batch_size"] == b), key=lambda r: r["seq_len"])
                x = [r["seq_len"] for r in mine]
                ax.plot(x, [r["kv_bytes"] / 2**20 for r in mine], "o", color=f"C{i % 10}", label=f"{label} [{kind}]")
                ax.plot(x, [r["analytic_kv_bytes_per_token"] * b * r["seq_len"] / 2**20 for r in mine], "--",
                        color=f"C{i % 10}", alpha=0.6)
            ax.set_xscale("log", base=2)
            ax.set(xlabel="sequence length (tokens)", ylabel="KV cache (MiB)",
                   title=f"KV cache vs sequence length (batch {b}; dots measured, dashes analytic)")
            ax.legend(fontsize=8)
        else:
            _no_data(ax, "memory")
        return _save(fig, folder / "memory_scaling.png")


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    if value is None:
        return "--"
    if isinstance(value, float) and math.isinf(value):
        return r"$\infty$"
    return fmt.format(value)


class TableWriter(ArtifactWriter):
    """``tables.tex``: a booktabs table with one row per model (needs ``\\usepackage{booktabs}``)."""

    def __init__(self, config: Any = None) -> None:
        pass

    def write(self, session: Any, report: dict[str, Any]) -> list[Path]:
        if not any(rows_of(report, kind) for kind in CSV_COLUMNS):  # no LM benchmark ran
            return []
        summary = summarise(report)["models"]
        kinds = list(dict.fromkeys(k for m in summary.values() for k in m.get("kv_bytes_per_token", {})))
        kind = kinds[0] if kinds else None
        kv_head = f"KV bytes/token ({tex_escape(kind)}) $\\downarrow$" if kind else r"KV bytes/token $\downarrow$"
        lines = [
            "% caramba benchmark summary; requires \\usepackage{booktabs}",
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{lrrr}",
            r"\toprule",
            r"Model & Perplexity $\downarrow$ & Decode tok/s $\uparrow$ & " + kv_head + r" \\",
            r"\midrule",
        ]
        for label, m in summary.items():
            kv = m.get("kv_bytes_per_token", {}).get(kind) if kind else None
            kv_text = _num(kv, "{:,.0f}").replace(",", "{,}")
            lines.append(f"{tex_escape(label)} & {_num(m.get('perplexity'))} & "
                         f"{_num(m.get('decode_tokens_per_sec'), '{:.1f}')} & {kv_text} \\\\")
        target = tex_escape(report.get("metadata", {}).get("target", ""))
        lines += [r"\bottomrule", r"\end{tabular}",
                  f"\\caption{{{target}: held-out perplexity, cached decode throughput and measured KV-cache size.}}",
                  r"\end{table}", ""]
        return [atomic_write_text(Path(session.target_dir) / "tables.tex", "\n".join(lines))]
