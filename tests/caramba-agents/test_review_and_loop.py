"""paper_review's proposals are manifests caramba validates; research_loop runs one through caramba run."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from caramba import RunError, Runtime, hookimpl, run_target
from caramba.cli import main
from caramba_agents.review import parse_review, review_paper
from caramba_agents.testing import ScriptedConfig, ScriptedProvider

PRESETS = Path(__file__).resolve().parents[2] / "config" / "presets"
BASE = str(PRESETS / "mlp_classifier.yml")


def review(score: float, *proposals: dict) -> str:
    body = json.dumps({"overall_score": score, "recommendation": "approve" if score >= 7.5 else "major_revision",
                       "strengths": ["clear setup"], "weaknesses": ["one seed only"],
                       "proposed_experiments": list(proposals)})
    return f"Here is my review:\n```json\n{body}\n```"


LONGER = {"name": "longer training", "hypothesis": "more steps lower the loss", "priority": "high",
          "target": "quick", "overrides": {"targets.quick.runs.train.steps": 30}}


def test_valid_proposals_are_written_as_manifests_caramba_validates(tmp_path, capsys):
    bad_value = {"name": "typo", "target": "quick", "overrides": {"targets.quick.runs.train.steps": "many"}}
    bad_target = {"name": "elsewhere", "target": "nope", "overrides": {}}
    out = review_paper(ScriptedProvider([review(5.0, LONGER, bad_value, bad_target)]), "\\section{x}",
                       runtime=Runtime(), base_manifest=BASE, out=tmp_path)
    [accepted] = out["proposed_experiments"]
    assert accepted["name"] == "longer_training" and Path(accepted["manifest"]).name == "proposed_longer_training.yml"
    assert main(["validate", accepted["manifest"]]) == 0
    manifest = Runtime().load_manifest(accepted["manifest"])
    assert manifest.target("quick").runs[0].steps == 30
    reasons = [r["reason"] for r in out["rejected_proposals"]]
    assert "expected an int" in reasons[0] and "has no target 'nope'" in reasons[1]
    assert json.loads((tmp_path / "review.json").read_text())["overall_score"] == 5.0


def test_a_reply_that_is_not_the_review_is_asked_for_again_then_is_an_error(tmp_path):
    provider = ScriptedProvider(["I liked it!", review(8.0)])
    assert review_paper(provider, "paper", runtime=Runtime(), base_manifest="", out=tmp_path)["overall_score"] == 8
    assert "not valid" in provider.seen[1][-1].content
    with pytest.raises(RunError, match="not the review JSON"):
        review_paper(ScriptedProvider(["no", "still no"]), "paper", runtime=Runtime(), base_manifest="",
                     out=tmp_path)


@pytest.mark.parametrize(("text", "why"), [
    ('{"overall_score": 11, "recommendation": "approve"}', "overall_score must be a number from 0 to 10"),
    ('{"overall_score": 5, "recommendation": "maybe"}', "recommendation must be one of"),
])
def test_parse_review_says_what_is_wrong(text, why):
    with pytest.raises(ValueError, match=why):
        parse_review(text)


def scripted_plugin() -> ModuleType:
    plugin = ModuleType("scripted_provider_plugin")

    @hookimpl
    def caramba_register_providers(registry):
        registry.add("scripted", config=ScriptedConfig, factory="caramba_agents.testing:scripted_provider")

    plugin.caramba_register_providers = caramba_register_providers  # type: ignore[attr-defined]
    return plugin


LOOP = """
version: 2
name: research
targets:
  - type: process
    name: loop
    process:
      type: research_loop
      run_dir: "{run}"
      base_manifest: "{base}"
      auto_run_experiments: true
      max_iterations: 3
      max_total_experiments: 1
      reviewer:
        provider:
          type: scripted
          replies: {replies}
"""


@pytest.mark.slow
def test_research_loop_runs_one_proposed_experiment_and_records_it(quick_run, tmp_path):
    replies = json.dumps([review(5.0, LONGER), review(8.0)])
    runtime = Runtime(plugins=[scripted_plugin()])
    manifest = runtime.load_manifest_text(LOOP.format(run=quick_run, base=BASE, replies=replies), filename="loop.yml")
    report = run_target(runtime, manifest, "loop", root=tmp_path)
    result = report["result"]
    assert result["outcome"] == "approved" and result["iterations"] == 2
    [experiment] = result["experiments"]
    assert experiment["exit_code"] == 0 and experiment["name"] == "longer_training"
    ran = json.loads(Path(experiment["report"]).read_text())
    assert ran["runs"][0]["metrics"]["steps"] == 30  # the proposal's override, run through caramba run
    record = json.loads(Path(result["record"]).read_text())
    assert [i["experiments_run"] for i in record["iterations"]] == [["longer_training"], []]
    second = Path(record["iterations"][1]["paper"]).read_text()
    assert "\\section{Additional experiments}" in second and "longer\\_training" in second


@pytest.mark.slow
def test_research_loop_waits_for_approval_when_runs_are_not_allowed(quick_run, tmp_path):
    runtime = Runtime(plugins=[scripted_plugin()])
    text = LOOP.format(run=quick_run, base=BASE, replies=json.dumps([review(5.0, LONGER)]))
    manifest = runtime.load_manifest_text(text.replace("auto_run_experiments: true", "auto_run_experiments: false"),
                                          filename="loop.yml")
    result = run_target(runtime, manifest, "loop", root=tmp_path)["result"]
    assert result["outcome"].startswith("proposals await approval") and result["experiments"] == []
