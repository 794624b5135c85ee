"""The ``compare``, ``fidelity`` and ``eval`` verifiers of a run's ``verify:`` block.

``compare`` and ``fidelity`` measure the run's ``model`` role (default ``student``) against
its ``reference`` role (default ``teacher``, which an upcycle run returns); a run that did
not produce the reference is a configuration error, reported with the roles it did
produce. ``eval`` scores the model alone, and the reference too when the run has one
(``max_accuracy_drop`` needs it). The pipeline honours ``fail_fast``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from caramba import RunError, RunResult, Verifier, VerifyResult
from caramba_infer.caches import cached_modules
from caramba_infer.evaluation import ByteTokenizer, dataset, device_of, held_out_batches, nll_sum, ppl
from caramba_infer.generate import Generator, lm_logits
from caramba_infer.specs import GenerateConfig

__all__ = ["Compare", "Eval", "Fidelity"]


def _role(result: RunResult, role: str, verifier: str, field: str) -> nn.Module:
    if role not in result.models:
        raise RunError(f"verify '{verifier}' needs the model '{role}' ({field}), but the run produced "
                       f"{sorted(result.models) or 'no models'}",
                       hint=f"set {field}: to one of those roles, or use a trainer that returns '{role}'")
    return result.models[role].eval()


def _check(value: float, bound: float | None, name: str, failures: list[str]) -> None:
    if bound is not None and not value <= bound:
        failures.append(f"{name} {value:.4g} > {bound:.4g}")


class Compare(Verifier):
    """Mean and max |Δ| of every cached layer's output (matched by node path) and of the logits."""

    def __init__(self, config: Any) -> None:
        self.config = config

    @torch.no_grad()
    def verify(self, session: Any, result: RunResult) -> VerifyResult:
        c = self.config
        model, ref = _role(result, c.model, "compare", "model"), _role(result, c.reference, "compare", "reference")
        paths_m, paths_r = cached_modules(model), cached_modules(ref)
        if set(paths_m) != set(paths_r):
            raise RunError("compare needs models with the same attention/SSM layout",
                           hint=f"only in {c.model}: {sorted(set(paths_m) - set(paths_r))}; "
                                f"only in {c.reference}: {sorted(set(paths_r) - set(paths_m))}")
        outputs: dict[str, dict[str, torch.Tensor]] = {"m": {}, "r": {}}
        handles = []
        for tag, mods in (("m", paths_m), ("r", paths_r)):
            for path, module in mods.items():
                handles.append(module.register_forward_hook(
                    lambda _m, _a, out, tag=tag, path=path: outputs[tag].__setitem__(path, out)))
        layer_sum = {p: 0.0 for p in paths_m}
        layer_max = {p: 0.0 for p in paths_m}
        layer_n = {p: 0 for p in paths_m}
        logit_sum, logit_max, logit_n = 0.0, 0.0, 0
        try:
            for batch in held_out_batches(session, c.split, c.batch_size, c.batches, device=device_of(model)):
                lm = lm_logits(model, batch["input_ids"]).float()
                lr = lm_logits(ref, batch["input_ids"].to(device_of(ref))).float().to(lm.device)
                d = (lm - lr).abs()
                logit_sum, logit_n = logit_sum + float(d.sum()), logit_n + d.numel()
                logit_max = max(logit_max, float(d.max()))
                for p in paths_m:
                    d = (outputs["m"][p].float() - outputs["r"][p].float().to(lm.device)).abs()
                    layer_sum[p] += float(d.sum())
                    layer_max[p] = max(layer_max[p], float(d.max()))
                    layer_n[p] += d.numel()
        finally:
            for h in handles:
                h.remove()
        layers = {p: {"mean_l1": layer_sum[p] / max(layer_n[p], 1), "max_l1": layer_max[p]} for p in paths_m}
        metrics: dict[str, Any] = {"logits_mean_l1": logit_sum / max(logit_n, 1), "logits_max_l1": logit_max,
                                   "layers": layers}
        if layers:
            metrics["attention_mean_l1"] = max(v["mean_l1"] for v in layers.values())
            metrics["attention_max_l1"] = max(v["max_l1"] for v in layers.values())
        failures: list[str] = []
        if c.attention is not None:
            if not layers:
                raise RunError("compare has attention thresholds but the models have no attention or SSM layers")
            _check(metrics["attention_mean_l1"], c.attention.max_mean_l1, "worst layer mean L1", failures)
            _check(metrics["attention_max_l1"], c.attention.max_max_l1, "worst layer max L1", failures)
        if c.logits is not None:
            _check(metrics["logits_mean_l1"], c.logits.max_mean_l1, "logits mean L1", failures)
            _check(metrics["logits_max_l1"], c.logits.max_max_l1, "logits max L1", failures)
        message = "; ".join(failures) or (f"logits mean L1 {metrics['logits_mean_l1']:.4g}, "
                                          f"max {metrics['logits_max_l1']:.4g} within bounds")
        return VerifyResult("compare", not failures, metrics, message)


class Fidelity(Verifier):
    """ΔNLL = NLL(model) − NLL(reference) per token on held-out data; ppl ratio = exp(ΔNLL)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def verify(self, session: Any, result: RunResult) -> VerifyResult:
        c = self.config
        model, ref = _role(result, c.model, "fidelity", "model"), _role(result, c.reference, "fidelity", "reference")
        totals = {"m": [0.0, 0], "r": [0.0, 0]}
        for batch in held_out_batches(session, c.split, c.batch_size, c.batches, block_size=c.block_size):
            for tag, net in (("m", model), ("r", ref)):
                dev = device_of(net)
                nll, n = nll_sum(net, {k: v.to(dev) for k, v in batch.items()})
                totals[tag][0] += nll
                totals[tag][1] += n
        nll_m, nll_r = totals["m"][0] / totals["m"][1], totals["r"][0] / totals["r"][1]
        delta = nll_m - nll_r
        metrics = {"nll": nll_m, "reference_nll": nll_r, "delta_nll": delta, "ppl": ppl(nll_m),
                   "reference_ppl": ppl(nll_r), "ppl_ratio": ppl(delta), "tokens": totals["m"][1]}
        failures: list[str] = []
        _check(delta, c.max_delta_nll, "ΔNLL", failures)
        _check(metrics["ppl_ratio"], c.max_ppl_ratio, "ppl ratio", failures)
        message = "; ".join(failures) or f"ΔNLL {delta:.4g}, ppl ratio {metrics['ppl_ratio']:.4g}"
        return VerifyResult("fidelity", not failures, metrics, message)


_INT = re.compile(r"-?\d+")


class Eval(Verifier):
    """Accuracy on behavioural cases, for the model and (when present) its reference."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def verify(self, session: Any, result: RunResult) -> VerifyResult:
        c = self.config
        tok = self._tokenizer(session)
        model = _role(result, c.model, "eval", "model")
        scores = {c.model: self._score(model, tok)}
        if c.reference in result.models and c.reference != c.model:
            scores[c.reference] = self._score(result.models[c.reference].eval(), tok)
        elif c.thresholds.max_accuracy_drop is not None:
            _role(result, c.reference, "eval", "reference")
        acc = {role: sum(r["correct"] for r in rows) / len(rows) for role, rows in scores.items()}
        failures: list[str] = []
        t = c.thresholds
        if t.min_student_accuracy is not None and acc[c.model] < t.min_student_accuracy:
            failures.append(f"accuracy {acc[c.model]:.3f} < {t.min_student_accuracy}")
        if t.max_accuracy_drop is not None:
            drop = acc[c.reference] - acc[c.model]
            if drop > t.max_accuracy_drop:
                failures.append(f"accuracy drop {drop:.3f} > {t.max_accuracy_drop}")
        metrics = {"accuracy": acc[c.model], "accuracies": acc, "cases": scores}
        message = "; ".join(failures) or "accuracy " + ", ".join(f"{r} {a:.3f}" for r, a in acc.items())
        return VerifyResult("eval", not failures, metrics, message)

    def _tokenizer(self, session: Any) -> Any:
        name = self.config.tokenizer
        if name == "byte":
            return ByteTokenizer()
        if name == "dataset":
            tok = getattr(dataset(session), "tokenizer", None)
            if tok is None:
                raise RunError(f"eval uses the dataset's tokenizer, but dataset '{session.target.data.ref}' has none",
                               hint="set tokenizer: byte, or the name of a registered tokenizer")
            return tok
        return session.runtime.create("tokenizer", name)

    def _prompt(self, tok: Any, text: str, device: torch.device) -> torch.Tensor:
        ids = list(tok.encode(text))
        if self.config.context_window is not None:
            ids = ids[-self.config.context_window:]
        return torch.tensor([ids], dtype=torch.long, device=device)

    @torch.no_grad()
    def _score(self, model: nn.Module, tok: Any) -> list[dict[str, Any]]:
        c = self.config
        device = device_of(model)
        eos = getattr(tok, "eos_id", None)
        rows = []
        for case in c.cases:
            prompt = self._prompt(tok, case.prompt, device)
            if case.kind == "choice_logprob":
                scores = [self._choice_logprob(model, tok, prompt, choice) for choice in case.choices]
                output = case.choices[max(range(len(scores)), key=scores.__getitem__)]
                correct = output == str(case.answer)
            else:
                gen = Generator(model, max_len=prompt.shape[1] + c.max_new_tokens, device=device)
                cfg = GenerateConfig(max_new_tokens=c.max_new_tokens, temperature=0,
                                     stop_tokens=[eos] if eos is not None else [])
                out = [t for t in gen.generate(prompt, cfg)[0].tolist() if t != eos]
                output = tok.decode(out)
                if case.kind == "int_greedy":
                    m = _INT.search(output)
                    correct = m is not None and int(m.group()) == int(case.answer)
                else:
                    correct = output.strip().startswith(str(case.answer).strip())
            rows.append({"id": case.id, "kind": case.kind, "output": output, "answer": case.answer,
                         "correct": bool(correct)})
        return rows

    def _choice_logprob(self, model: nn.Module, tok: Any, prompt: torch.Tensor, choice: str) -> float:
        ids = torch.tensor([list(tok.encode(choice))], dtype=torch.long, device=prompt.device)
        full = torch.cat([prompt, ids], dim=1)
        logp = torch.log_softmax(lm_logits(model, full[:, :-1]).double(), dim=-1)  # (1, T-1, V)
        n = ids.shape[1]
        return float(logp[0, -n:].gather(-1, full[0, -n:, None]).sum())
