"""example_csv: rows written per metric, and a pipeline run logging to it."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

from caramba import run_target

from caramba_plugin_example.sink import ExampleCsvSink


def rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_writes_one_row_per_metric_and_appends_on_reopen(tmp_path):
    session = SimpleNamespace(run=SimpleNamespace(id="r0"), run_dir=tmp_path / "runs" / "r0")
    sink = ExampleCsvSink(None, session=session)
    sink.log(1, {"loss": 2.5, "lr": 0.1})
    sink.close()
    sink = ExampleCsvSink(None, session=session)  # a resumed run continues the file
    sink.log(2, {"loss": 1.25}, phase="eval")
    sink.close()
    assert rows(session.run_dir / "metrics.csv") == [
        {"run_id": "r0", "step": "1", "phase": "train", "name": "loss", "value": "2.5"},
        {"run_id": "r0", "step": "1", "phase": "train", "name": "lr", "value": "0.1"},
        {"run_id": "r0", "step": "2", "phase": "eval", "name": "loss", "value": "1.25"},
    ]


def test_a_run_naming_the_sink_logs_the_same_losses_as_metrics_jsonl(runtime, toy_manifest, tmp_path):
    text = toy_manifest({"type": "ToyLinear", "d_in": 4, "d_out": 1}, steps=5, sinks=("example_csv",))
    run_target(runtime, runtime.load_manifest_text(text), "fit", root=tmp_path)
    run_dir = tmp_path / "plugin_test" / "fit" / "runs" / "r0"
    jsonl = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    csv_losses = [(int(r["step"]), float(r["value"])) for r in rows(run_dir / "metrics.csv") if r["name"] == "loss"]
    assert csv_losses == [(r["step"], r["loss"]) for r in jsonl]
    assert len(csv_losses) == 5
