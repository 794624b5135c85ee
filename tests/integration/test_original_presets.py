"""The original caramba's nine README presets (v2 era, ``original_presets/SOURCE.md``) validate unchanged.

The one exception is the original's own mistake: its ``vit.yml`` wires a patch-embedding ViT into
``system.language_model`` with next-token data and loss, which cannot run; caramba says so at
validate time (docs/manifests.md, "The original's manifests"). Where the original spelled a field
differently, the field is read under today's name, inherited, or ignored, each with one note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import caramba
from caramba.cli import main

ORIGINAL = Path(__file__).parent / "original_presets"
VALID = ["standard_transformer", "moe_transformer", "mamba_ssm", "lora_finetune", "mlp_classifier",
         "diffusion_vector", "graph_node_classification", "llama32_1b_dba"]


@pytest.fixture(scope="module")
def rt() -> caramba.Runtime:
    return caramba.Runtime()


def write_original_data(folder: Path, *, x0_width: int = 128) -> None:
    """Small files at the paths the original presets name, of the shapes their models take."""
    rng = np.random.default_rng(0)
    data = folder / "path" / "to"
    (data / "your").mkdir(parents=True)
    for name in ("data.tokens", "finetuning_data.tokens"):
        rng.integers(0, 50257, 4096).astype(np.uint16).tofile(data / "your" / name)
    np.save(data / "your" / "images.npy", rng.integers(0, 255, 4096).astype(np.uint16))
    np.save(data / "x.npy", rng.normal(size=(40, 128)).astype(np.float32))  # mlp: d_in 128
    np.save(data / "y.npy", rng.integers(0, 10, 40))
    np.save(data / "x0.npy", rng.normal(size=(64, x0_width)).astype(np.float32))  # denoiser: d_in 128
    graph_x = rng.normal(size=(12, 32)).astype(np.float32)  # gcn: d_in 32, 7 classes
    np.save(data / "adj.npy", (rng.random((12, 12)) < 0.3).astype(np.float32))
    np.save(data / "labels.npy", rng.integers(0, 7, 12))
    np.save(folder / "fineweb_100m.npy", rng.integers(0, 128256, 8192).astype(np.uint32))
    # the graph's x.npy shares its name with the MLP's in the original presets: keep the MLP's
    # here and give the graph preset its own folder (see original_data below)
    graph = folder / "graph" / "path" / "to"
    graph.mkdir(parents=True)
    np.save(graph / "x.npy", graph_x)
    np.save(graph / "adj.npy", np.load(data / "adj.npy"))
    np.save(graph / "labels.npy", np.load(data / "labels.npy"))


@pytest.fixture
def original_data(tmp_path, monkeypatch) -> Path:
    """A working directory holding the data the original presets name (paths are relative to it)."""
    write_original_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(rt, name: str, folder: Path, monkeypatch) -> caramba.Manifest:
    if name == "graph_node_classification":
        monkeypatch.chdir(folder / "graph")
    return rt.load_manifest(ORIGINAL / f"{name}.yml")


def test_the_nine_readme_presets_are_here():
    assert sorted(p.stem for p in ORIGINAL.glob("*.yml")) == sorted([*VALID, "vit"])


@pytest.mark.parametrize("name", VALID)
def test_original_preset_validates_unchanged_where_its_data_exists(rt, name, original_data, monkeypatch):
    assert load(rt, name, original_data, monkeypatch).targets


def test_original_vit_is_refused_for_its_own_mistake(rt, original_data):
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest(ORIGINAL / "vit.yml")
    [problem] = info.value.problems
    assert problem.path == "targets[0].system.config.model.embedder.type"
    assert "a language model needs a token embedder" in problem.message


def test_llama_preset_notes_each_original_spelling_once(rt, original_data):
    manifest = rt.load_manifest(ORIGINAL / "llama32_1b_dba.yml")
    notes = [(n.location.line, n.path, n.message.split(";")[0].split(":")[0]) for n in manifest.notes]
    assert notes == [
        (6, "defaults.data.tokenizer", "ignored"),
        (7, "defaults.data.val_frac", "ignored"),
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


def test_validate_prints_the_notes_and_succeeds(capsys, original_data):
    assert main(["validate", str(ORIGINAL / "llama32_1b_dba.yml")]) == 0
    err = capsys.readouterr().err
    assert err.count("note: ") == 10
    assert "quantization_modes' is the original caramba's name for 'cache_kinds'" in err


def test_an_original_name_beside_its_new_name_is_an_error(rt, original_data):
    text = (ORIGINAL / "llama32_1b_dba.yml").read_text().replace(
        "      quantization_modes:\n", "      cache_kinds: [fp16]\n      quantization_modes:\n")
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text, filename="both.yml")
    assert [p.message for p in info.value.problems] == [
        "'quantization_modes' (the original caramba's name for 'cache_kinds') and 'cache_kinds' are both given"]


def test_phases_under_trainer_train_name_trainer_upcycle_even_beside_other_errors(rt, original_data):
    # Later originals ran the blockwise/global phases under one `trainer.train`; here the upcycle
    # fields of such a run are unknown to the standard trainer, and the phase says why.
    text = (ORIGINAL / "llama32_1b_dba.yml").read_text().replace("trainer: trainer.upcycle", "trainer: trainer.train")
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text, filename="train.yml")
    phases = [(p.path, p.hint) for p in info.value.problems if p.path.endswith(".phase")]
    hint = "use trainer.upcycle for blockwise or global distillation"
    assert phases == [(f"targets[{t}].runs[{r}].train.phase", hint) for t in (0, 1) for r in (0, 1)]


# --- what the original's data configs name is checked at validate, where it is knowable ------


def problems(rt, text: str) -> list[tuple[str, str]]:
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text, filename="m.yml")
    assert info.value.exit_code == 2
    return [(f"{p.location.line}:{p.location.col}", p.path, p.message) for p in info.value.problems]


def test_a_missing_data_file_is_reported_at_validate_with_its_line(rt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    [(where, path, message)] = problems(rt, (ORIGINAL / "diffusion_vector.yml").read_text())
    assert (where, path) == ("20:17", "targets[0].data.config.x_path")
    assert message.startswith("file 'path/to/x0.npy' does not exist")


def test_the_original_diffusion_x_path_is_what_trains(rt, original_data):
    from caramba_trainers.data.diffusion import DiffusionVectorDataset

    target = rt.load_manifest(ORIGINAL / "diffusion_vector.yml").target()
    assert target.data.config.source == "npy"
    dataset = DiffusionVectorDataset(target.data.config)
    x0 = np.load(original_data / "path" / "to" / "x0.npy")
    seen = np.concatenate([dataset.batch(split, 0, 64, seed=0)["x0"].numpy() for split in ("train", "val")])
    assert seen.shape[1] == 128
    assert {tuple(r) for r in seen.round(5)} <= {tuple(r) for r in x0.round(5)}


def test_a_data_width_that_the_model_cannot_take_is_caught_at_validate(rt, tmp_path, monkeypatch):
    write_original_data(tmp_path, x0_width=64)
    monkeypatch.chdir(tmp_path)
    assert problems(rt, (ORIGINAL / "diffusion_vector.yml").read_text()) == [
        ("26:15", "targets[0].system.config.d_in",
         "d_in is 128 but the inputs of dataset.diffusion_vector are 64 wide")]


def test_an_objective_key_the_batches_do_not_hold_is_caught_at_validate(rt, original_data, monkeypatch):
    monkeypatch.chdir(original_data / "graph")
    text = (ORIGINAL / "graph_node_classification.yml").read_text().replace("labels_key: labels", "labels_key: label")
    [(where, path, message)] = problems(rt, text)
    assert (where, path) == ("37:21", "targets[0].objective.config.labels_key")
    assert message.startswith("the batches of dataset.graph_npy hold no 'label' (they hold inputs, adj, targets")
