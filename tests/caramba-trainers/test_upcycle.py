"""trainer.upcycle: surgery against the teacher's own logits, blockwise distillation, resume, the pipeline."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from caramba import Runtime  # noqa: E402
from caramba.errors import CheckpointError  # noqa: E402
from caramba.graph import Builder  # noqa: E402
from caramba.pipeline import run_target  # noqa: E402
from caramba_layers.hf import from_pretrained  # noqa: E402
from caramba_layers.specs.hf import model_config_from_hf  # noqa: E402
from caramba_layers.specs.language_model import LanguageModelConfig  # noqa: E402
from caramba_trainers.upcycle.surgery import geometric_rope_base, transplant  # noqa: E402

VOCAB, D, H, KV, HD = 257, 64, 4, 2, 16


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads cost more than they give
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny HF Llama (GQA, byte vocabulary) saved as config.json + model.safetensors."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=D, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=H, num_key_value_heads=KV, rope_theta=1e6,
                                   max_position_embeddings=128, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("teacher")
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def _model_block(teacher_dir: Path) -> dict:
    return model_config_from_hf(json.loads((teacher_dir / "config.json").read_text()))


def _attention(model: dict) -> dict:
    return model["topology"]["layers"][0]["layers"][0]["layers"][1]


def _dba(model: dict, ds: int, dg: int, dv: int, *, base: float | None = None) -> dict:
    model = copy.deepcopy(model)
    attn = _attention(model)
    attn.pop("n_kv_heads")
    attn.update(mode="decoupled", sem_dim=H * ds, geo_dim=H * dg, attn_dim=H * dv, kv_groups=KV,
                rope_base=base if base is not None else geometric_rope_base(1e6, HD, dg))
    return model


def _build(rt: Runtime, model: dict) -> torch.nn.Module:
    config = rt.parse(LanguageModelConfig, {"model": model})
    return rt.get("system", "system.language_model").load()(config, Builder(rt)).eval()


def _ids(seed: int, batch: int = 3, length: int = 20) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_identity_surgery_reproduces_the_teachers_logits(teacher_dir: Path) -> None:
    rt = Runtime()
    teacher = from_pretrained(teacher_dir, rt).eval()
    student = _build(rt, _model_block(teacher_dir))
    report = transplant(teacher, student)
    assert report.attention == "copied" and report.blocks == 2
    x = {"input_ids": _ids(1)}
    with torch.no_grad():
        torch.testing.assert_close(student(x)["logits"], teacher(x)["logits"], rtol=1e-5, atol=1e-6)


def test_full_width_dba_surgery_keeps_each_head(teacher_dir: Path) -> None:
    """With d_s + d_g = hd and d_v = hd nothing is compressed: the only change is that the slow RoPE
    pairs (rotating under 1e-3 rad per token at base 1e6) become position-free, so the logits barely move."""
    rt = Runtime()
    teacher = from_pretrained(teacher_dir, rt).eval()
    student = _build(rt, _dba(_model_block(teacher_dir), ds=8, dg=8, dv=16))
    report = transplant(teacher, student, calibration=[{"input_ids": _ids(2, 8, 24)}])
    assert report.attention == "dba-structured"
    x = {"input_ids": _ids(3)}
    with torch.no_grad():
        ref = teacher(x)["logits"]
        got = student(x)["logits"]
        fresh = _build(rt, _dba(_model_block(teacher_dir), ds=8, dg=8, dv=16))(x)["logits"]
    assert (got - ref).abs().max() < 1e-3
    assert (fresh - ref).abs().max() > 100 * (got - ref).abs().max()


def test_compressed_dba_surgery_is_far_closer_than_a_fresh_student(teacher_dir: Path) -> None:
    rt = Runtime()
    teacher = from_pretrained(teacher_dir, rt).eval()
    model = _dba(_model_block(teacher_dir), ds=4, dg=4, dv=8)
    student, fresh = _build(rt, model), _build(rt, model)
    transplant(teacher, student, calibration=[{"input_ids": _ids(2, 8, 24)}])
    x = {"input_ids": _ids(4)}

    def kl(m: torch.nn.Module) -> float:
        with torch.no_grad():
            p, q = teacher(x)["logits"].log_softmax(-1), m(x)["logits"].log_softmax(-1)
        return float((p.exp() * (p - q)).sum(-1).mean())

    assert kl(student) < 0.2 * kl(fresh)
    # the student's KV cache: kv_groups · (d_s + d_g + d_v) = 2·16 = 32 elements vs the teacher's 2·2·16 = 64
    assert sum(h * w for h, w in student.config.model.topology.layers[0].layers[0].layers[1]
               .cache_fields().values()) == 32


def test_dba_surgery_names_the_rope_base_that_keeps_the_teachers_frequencies(teacher_dir: Path) -> None:
    rt = Runtime()
    teacher = from_pretrained(teacher_dir, rt).eval()
    student = _build(rt, _dba(_model_block(teacher_dir), ds=4, dg=4, dv=8, base=10000.0))
    with pytest.raises(CheckpointError, match="rope_base: 31.6227766"):
        transplant(teacher, student, calibration=[{"input_ids": _ids(2)}])


def _manifest(teacher_dir: Path, *, blockwise_steps: int, global_steps: int, save_every: int = 100,
              extra_runs: bool = True) -> str:
    model = _dba(_model_block(teacher_dir), ds=4, dg=4, dv=8)
    runs = [{"id": "blockwise", "seed": 0, "steps": blockwise_steps,
             "train": {"phase": "blockwise", "teacher_ckpt": str(teacher_dir), "batch_size": 4, "lr": 3e-3,
                       "save_every": save_every, "blockwise_teacher_cache_batches": 4,
                       "teacher_sanity_max_ppl": 1000.0, "eval_batches": 2, "progress": False},
             "verify": [{"type": "compare", "batches": 1, "logits": {"max_mean_l1": 100.0}}]}]
    if extra_runs:
        runs.append({"id": "finetune", "seed": 0, "steps": global_steps,
                     "train": {"phase": "global", "teacher_ckpt": str(teacher_dir), "batch_size": 4, "lr": 1e-3,
                               "distill_kl_weight": 0.5, "grad_clip_norm": 1.0, "teacher_sanity_max_ppl": 1000.0,
                               "eval_batches": 2, "progress": False},
                     "verify": [{"type": "fidelity", "batches": 2, "max_ppl_ratio": 10.0}]})
    manifest = {
        "version": 2, "name": "upcycle_test",
        "targets": [{
            "type": "experiment", "name": "tiny",
            "data": {"ref": "dataset.text", "config": {"corpus": "stdlib", "tokenizer": "byte", "block_size": 32,
                                                       "max_chars": 200_000}},
            "system": {"ref": "system.language_model", "config": {"model": model}},
            "objective": "objective.next_token_ce",
            "trainer": "trainer.upcycle",
            "labels": {"teacher": "Llama teacher", "student": "DBA student"},
            "runs": runs,
            "benchmarks": [] if not extra_runs else [
                {"id": "ppl", "config": {"type": "perplexity", "num_batches": 2, "batch_size": 2}},
                {"id": "lat", "config": {"type": "latency", "prompt_lengths": [8], "generation_lengths": [4],
                                         "timed_runs": 1, "warmup_runs": 0}},
                {"id": "mem", "config": {"type": "memory", "sequence_lengths": [32], "cache_kinds": ["fp32"]}},
            ],
        }],
    }
    return json.dumps(manifest)


def _losses(run_dir: Path) -> dict[int, list[float]]:
    by_block: dict[int, list[float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("phase") == "train" and "block" in rec:
            by_block.setdefault(int(rec["block"]), []).append(rec["loss"])
    return by_block


@pytest.mark.slow  # over 10 s on 2 cores
def test_blockwise_then_global_then_verify_and_benchmarks_write_every_artifact(teacher_dir: Path,
                                                                                tmp_path: Path) -> None:
    rt = Runtime()
    manifest = rt.load_manifest_text(_manifest(teacher_dir, blockwise_steps=40, global_steps=6),
                                     filename="upcycle.json")
    report = run_target(rt, manifest, "tiny", root=tmp_path)
    folder = tmp_path / "upcycle_test" / "tiny"
    losses = _losses(folder / "runs" / "blockwise")
    assert sorted(losses) == [0, 1]
    for block, values in losses.items():
        first, last = sum(values[:3]) / 3, sum(values[-3:]) / 3
        assert last < 0.7 * first, f"block {block}: loss {first:.4g} -> {last:.4g}"
    blockwise, finetune = report["runs"]
    assert blockwise["metrics"]["teacher_cache_hits"] == 40 - 2 * 4 + 4  # 2 blocks × 20 steps over 4 cached batches
    assert all(check["passed"] for run in report["runs"] for check in run["verify"])
    assert math.isfinite(finetune["metrics"]["val_loss"])
    for name in ("report.json", "perplexity.csv", "latency.csv", "memory.csv", "summary.png", "tables.tex"):
        assert (folder / name).exists(), name
    table = (folder / "tables.tex").read_text()
    assert "DBA student" in table and "Llama teacher" in table


@pytest.mark.slow  # over 10 s on 2 cores
def test_blockwise_resume_mid_block_continues_exactly(teacher_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = _manifest(teacher_dir, blockwise_steps=12, global_steps=0, save_every=4, extra_runs=False)
    rt = Runtime()
    run_target(rt, rt.load_manifest_text(text, filename="a.json"), "tiny", root=tmp_path / "straight")

    from caramba.pipeline import _session as session_module

    real_log = session_module.RunSession.log

    def dying_log(self, step, metrics, *, phase="train"):  # a crash after step 9 (mid block 1)
        real_log(self, step, metrics, phase=phase)
        if phase == "train" and step == 9:
            raise KeyboardInterrupt

    monkeypatch.setattr(session_module.RunSession, "log", dying_log)
    with pytest.raises(KeyboardInterrupt):
        run_target(rt, rt.load_manifest_text(text, filename="b.json"), "tiny", root=tmp_path / "resumed")
    monkeypatch.setattr(session_module.RunSession, "log", real_log)
    run_target(rt, rt.load_manifest_text(text, filename="b.json"), "tiny", root=tmp_path / "resumed")

    straight = _losses(tmp_path / "straight" / "upcycle_test" / "tiny" / "runs" / "blockwise")
    resumed = _losses(tmp_path / "resumed" / "upcycle_test" / "tiny" / "runs" / "blockwise")
    # the resumed run repeats steps 9 (checkpoint at 8), then goes on: its last values equal the straight run's
    assert resumed[1][-3:] == straight[1][-3:]
    assert resumed[0] == straight[0]


def test_identity_surgery_refuses_a_student_with_other_rope(teacher_dir: Path) -> None:
    rt = Runtime()
    teacher = from_pretrained(teacher_dir, rt).eval()
    model = _model_block(teacher_dir)
    _attention(model)["rope_base"] = 10000.0
    with pytest.raises(CheckpointError, match="RoPE"):
        transplant(teacher, _build(rt, model))


def test_global_phase_with_pure_distillation_needs_a_kl_weight(teacher_dir: Path) -> None:
    from caramba import ManifestError

    text = json.loads(_manifest(teacher_dir, blockwise_steps=4, global_steps=2))
    text["targets"][0]["runs"][1]["train"]["distill_ce_weight"] = 0.0
    text["targets"][0]["runs"][1]["train"]["distill_kl_weight"] = 0.0
    with pytest.raises(ManifestError, match="distill_kl_weight"):
        Runtime().load_manifest_text(json.dumps(text), filename="u.json")
