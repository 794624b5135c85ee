"""``paper_review``: a structured review of a drafted paper, with proposed experiments as manifests.

The reviewer answers with one JSON object (scores, strengths, weaknesses, proposals). Each
proposal is the base manifest plus ``-s``-style overrides; it is checked by caramba's own
validation and written as ``proposed_<name>.yml`` only if it is valid, so every written
proposal is one ``caramba validate`` accepts. Invalid ones are kept in the review with the
reason. A reply that is not the review JSON is asked for once more, then is an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from caramba import CarambaError, RunError, atomic_write_json, atomic_write_text
from caramba_agents.chat import Message, Provider
from caramba_agents.providers import create_provider
from caramba_agents.specs import PaperReviewConfig

__all__ = ["PaperReview", "parse_review", "review_paper"]

RECOMMENDATIONS = ("approve", "minor_revision", "major_revision", "reject")
_ASK = """Review this {strictness} paper. Answer with ONE JSON object and nothing else:
{{"overall_score": <0-10>, "recommendation": one of {recs},
  "strengths": [<text>], "weaknesses": [<text>],
  "proposed_experiments": [{{"name": <snake_case>, "hypothesis": <text>, "priority": "high|medium|low",
                             "target": <target name in the base manifest>,
                             "overrides": {{"<manifest path, e.g. targets.quick.runs.train.steps>": <value>}}}}]}}
At most {n} proposed experiments. The base manifest's targets: {targets}.

{paper}"""


def parse_review(text: str) -> dict[str, Any]:
    """The review object in a reply (bare, or in a ```json fence); raises ``ValueError`` saying why."""
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    candidate = fenced.group(1) if fenced else text[text.find("{"):text.rfind("}") + 1]
    data = json.loads(candidate)
    if not isinstance(data, dict):
        raise ValueError("the review must be a JSON object")
    score = data.get("overall_score")
    if not isinstance(score, (int, float)) or not 0 <= score <= 10:
        raise ValueError("overall_score must be a number from 0 to 10")
    if data.get("recommendation") not in RECOMMENDATIONS:
        raise ValueError(f"recommendation must be one of {RECOMMENDATIONS}")
    for key in ("strengths", "weaknesses", "proposed_experiments"):
        if not isinstance(data.setdefault(key, []), list):
            raise ValueError(f"{key} must be a list")
    return data


def review_paper(provider: Provider, paper: str, *, runtime: Any, base_manifest: str, out: Path,
                 strictness: str = "conference", max_proposed: int = 3) -> dict[str, Any]:
    """Ask for the review, validate its proposals, write ``review.json`` and the proposals into ``out``."""
    base = runtime.load_manifest(base_manifest) if base_manifest else None
    targets = ", ".join(t.name for t in base.targets) if base else "(no base manifest: propose none)"
    messages = [Message("system", "You are a rigorous ML reviewer."),
                Message("user", _ASK.format(strictness=strictness, recs=list(RECOMMENDATIONS), n=max_proposed,
                                            targets=targets, paper=paper))]
    review: dict[str, Any] | None = None
    for attempt in range(2):
        reply = provider.chat(messages)
        try:
            review = parse_review(reply.text)
            break
        except (ValueError, json.JSONDecodeError) as exc:
            if attempt == 1:
                raise RunError(f"the reviewer's reply is not the review JSON: {exc}",
                               hint="use a stronger reviewer model, or lower its temperature") from None
            messages += [Message("assistant", reply.text),
                         Message("user", f"That was not valid: {exc}. Answer with the JSON object only.")]
    assert review is not None
    out.mkdir(parents=True, exist_ok=True)
    accepted, rejected = [], []
    for proposal in review["proposed_experiments"][:max_proposed]:
        try:
            accepted.append(_write_proposal(proposal, runtime, base_manifest, out))
        except (CarambaError, ValueError, TypeError, AttributeError) as exc:
            rejected.append({"proposal": proposal, "reason": " ".join(str(exc).split())[:400]})
    review["proposed_experiments"] = accepted
    review["rejected_proposals"] = rejected
    atomic_write_json(out / "review.json", review)
    return review


def _write_proposal(proposal: dict[str, Any], runtime: Any, base_manifest: str, out: Path) -> dict[str, Any]:
    if not base_manifest:
        raise ValueError("no base manifest to build a proposal from")
    name = re.sub(r"[^A-Za-z0-9_]+", "_", str(proposal.get("name", ""))).strip("_")
    if not name:
        raise ValueError("a proposal needs a name")
    overrides = [f"{path}={json.dumps(value)}" for path, value in dict(proposal.get("overrides", {})).items()]
    manifest = runtime.load_manifest(base_manifest, overrides=overrides)
    target = proposal.get("target") or manifest.target(None).name
    manifest.target(target)  # names a real target, or says which exist
    resolved = dict(manifest.resolved)
    resolved["name"] = f"{resolved.get('name', 'experiment')}_{name}"
    path = out / f"proposed_{name}.yml"
    text = yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True)
    runtime.load_manifest_text(text, filename=str(path))  # what is written is exactly what validates
    atomic_write_text(path, text)
    return {**proposal, "name": name, "target": target, "manifest": str(path)}


class PaperReview:
    def __init__(self, config: PaperReviewConfig) -> None:
        self.config = config

    def run(self, session: Any, *, provider: Provider | None = None) -> dict[str, Any]:
        c = self.config
        folder = Path(c.paper_dir) if Path(c.paper_dir).is_absolute() else session.target_dir / c.paper_dir
        tex = folder / "paper.tex"
        if not tex.is_file():
            raise RunError(f"no paper at {tex}", hint="run a paper_write target first, or set paper_dir")
        provider = provider or create_provider(session.runtime, c.reviewer.provider)
        review = review_paper(provider, tex.read_text(), runtime=session.runtime, base_manifest=c.base_manifest,
                              out=folder, strictness=c.strictness, max_proposed=c.max_proposed_experiments)
        session.info(f"review: score {review['overall_score']}, {review['recommendation']}, "
                     f"{len(review['proposed_experiments'])} proposal(s) written")
        return {"review": str(folder / "review.json"), "overall_score": review["overall_score"],
                "proposals": [p["manifest"] for p in review["proposed_experiments"]]}
