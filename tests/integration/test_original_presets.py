"""The original caramba's nine README presets (v2 era, ``original_presets/SOURCE.md``) validate unchanged.

The one exception is the original's own mistake: its ``vit.yml`` wires a patch-embedding ViT into
``system.language_model`` with next-token data and loss, which cannot run; caramba says so at
validate time (docs/manifests.md, "The original's manifests"). Where the original spelled a field
differently, the field is read under today's name, inherited, or ignored, each with one note.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import caramba
from caramba.cli import main

ORIGINAL = Path(__file__).parent / "original_presets"
VALID = ["standard_transformer", "moe_transformer", "mamba_ssm", "lora_finetune", "mlp_classifier",
         "diffusion_vector", "graph_node_classification", "llama32_1b_dba"]


@pytest.fixture(scope="module")
def rt() -> caramba.Runtime:
    return caramba.Runtime()


def test_the_nine_readme_presets_are_here():
    assert sorted(p.stem for p in ORIGINAL.glob("*.yml")) == sorted([*VALID, "vit"])


@pytest.mark.parametrize("name", VALID)
def test_original_preset_validates_unchanged(rt, name):
    manifest = rt.load_manifest(ORIGINAL / f"{name}.yml")
    assert manifest.targets


def test_original_vit_is_refused_for_its_own_mistake(rt):
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest(ORIGINAL / "vit.yml")
    [problem] = info.value.problems
    assert problem.path == "targets[0].system.config.model.embedder.type"
    assert "a language model needs a token embedder" in problem.message


def test_llama_preset_notes_each_original_spelling_once(rt):
    manifest = rt.load_manifest(ORIGINAL / "llama32_1b_dba.yml")
    notes = [(n.location.line, n.path, n.message.split(";")[0].split(":")[0]) for n in manifest.notes]
    assert notes == [
        (108, "targets[0].runs[0].train.cache_teacher_outputs",
         "'cache_teacher_outputs' of the original caramba is ignored"),
        (124, "targets[0].runs[1].verify[0].tokenizer", "'tokenizer"),
        (146, "targets[0].runs[1].train.teacher_ckpt",
         "'teacher_ckpt' is inherited from run 'blockwise', as the original caramba did"),
        (156, "targets[0].benchmarks[0].config.dataset", "'dataset' of the original caramba is ignored"),
        (197, "targets[0].benchmarks[2].config.measure_kvcache",
         "'measure_kvcache' of the original caramba is ignored"),
        (198, "targets[0].benchmarks[2].config.quantization_modes",
         "'quantization_modes' is the original caramba's name for 'cache_kinds' of memory"),
        (246, "targets[1].runs[1].train.teacher_ckpt",
         "'teacher_ckpt' is inherited from run 'blockwise_quick', as the original caramba did"),
        (256, "targets[1].benchmarks[0].config.dataset", "'dataset' of the original caramba is ignored"),
    ]
    paper = manifest.target("paper")
    blockwise, finetune = paper.runs
    assert finetune.train.teacher_ckpt == blockwise.train.teacher_ckpt == "hf://meta-llama/Llama-3.2-1B"
    assert finetune.verify[0].tokenizer == "llama"
    assert paper.benchmarks[2].config.cache_kinds == ["fp16", "q8", "q4"]


def test_validate_prints_the_notes_and_succeeds(capsys):
    assert main(["validate", str(ORIGINAL / "llama32_1b_dba.yml")]) == 0
    err = capsys.readouterr().err
    assert err.count("note: ") == 8
    assert "quantization_modes' is the original caramba's name for 'cache_kinds'" in err


def test_an_original_name_beside_its_new_name_is_an_error(rt):
    text = (ORIGINAL / "llama32_1b_dba.yml").read_text().replace(
        "      quantization_modes:\n", "      cache_kinds: [fp16]\n      quantization_modes:\n")
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text, filename="both.yml")
    assert [p.message for p in info.value.problems] == [
        "'quantization_modes' (the original caramba's name for 'cache_kinds') and 'cache_kinds' are both given"]


def test_phases_under_trainer_train_name_trainer_upcycle_even_beside_other_errors(rt):
    # Later originals ran the blockwise/global phases under one `trainer.train`; here the upcycle
    # fields of such a run are unknown to the standard trainer, and the phase says why.
    text = (ORIGINAL / "llama32_1b_dba.yml").read_text().replace("trainer: trainer.upcycle", "trainer: trainer.train")
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text, filename="train.yml")
    phases = [(p.path, p.hint) for p in info.value.problems if p.path.endswith(".phase")]
    hint = "use trainer.upcycle for blockwise or global distillation"
    assert phases == [(f"targets[{t}].runs[{r}].train.phase", hint) for t in (0, 1) for r in (0, 1)]
