"""The caramba-trainers plugin: registers datasets, tokenizers, objectives, optimizers,
schedules, the standard, upcycle and orchestrated trainers, switching policies and metrics sinks.

Torch-free: only the config structs of :mod:`caramba_trainers.specs` are imported here;
each factory's module loads on first use.
"""

from __future__ import annotations

from typing import Any

from caramba import hookimpl
from caramba_trainers import specs
from caramba_trainers.orchestrator import specs as orchestrator
from caramba_trainers.upcycle.specs import UpcycleTrainConfig, UpcycleTrainerConfig

_P = "caramba_trainers"


@hookimpl
def caramba_register_datasets(registry: Any) -> None:
    add = registry.add
    add("dataset.tokens", config=specs.TokensConfig, factory=f"{_P}.data.tokens:TokenDataset",
        summary="a memory-mapped token file (.npy/.bin) cut into blocks, with a held-out tail")
    add("dataset.text", config=specs.TextConfig, factory=f"{_P}.data.text:TextDataset",
        summary="an embedded corpus (Python stdlib sources or the KJV Bible), byte or BPE tokens",
        aliases=("dataset.corpus",))
    add("dataset.npy_supervised", config=specs.NpySupervisedConfig,
        factory=f"{_P}.data.supervised:NpySupervisedDataset", summary="inputs and targets from two .npy files")
    add("dataset.digits", config=specs.DigitsConfig, factory=f"{_P}.data.supervised:DigitsDataset",
        summary="scikit-learn's 8x8 digits as images or vectors, 10 classes")
    add("dataset.graph_npy", config=specs.GraphNpyConfig, factory=f"{_P}.data.graph:GraphNpyDataset",
        summary="one graph (features, adjacency, labels) from .npy files, node masks")
    add("dataset.karate", config=specs.KarateConfig, factory=f"{_P}.data.graph:KarateDataset",
        summary="networkx's karate club graph: 34 nodes, 2 clubs")
    add("dataset.diffusion_vector", config=specs.DiffusionVectorConfig,
        factory=f"{_P}.data.diffusion:DiffusionVectorDataset",
        summary="vectors noised by the DDPM forward process (x_t, t, eps) for eps-prediction")


@hookimpl
def caramba_register_tokenizers(registry: Any) -> None:
    registry.add("byte", factory=f"{_P}.data.tokenizers:ByteTokenizer",
                 summary="UTF-8 bytes (256 ids) plus an end-of-text id")
    registry.add("bpe", factory=f"{_P}.data.tokenizers:train_bpe",
                 summary="a byte-level BPE trained with `tokenizers` on a corpus and cached")


@hookimpl
def caramba_register_objectives(registry: Any) -> None:
    add = registry.add
    add("objective.next_token_ce", config=specs.NextTokenCEConfig, factory=f"{_P}.objectives:NextTokenCE",
        summary="cross entropy of next-token logits, plus the context's aux losses")
    add("objective.classification_ce", config=specs.ClassificationCEConfig,
        factory=f"{_P}.objectives:ClassificationCE", summary="cross entropy of class logits, with accuracy")
    add("objective.mse", config=specs.MSEConfig, factory=f"{_P}.objectives:MSE", summary="mean squared error")
    add("objective.diffusion_eps", config=specs.DiffusionEpsConfig, factory=f"{_P}.objectives:DiffusionEps",
        summary="MSE between predicted and true noise (DDPM eps-prediction)", aliases=("objective.diffusion",))
    add("objective.node_classification", config=specs.NodeClassificationConfig,
        factory=f"{_P}.objectives:NodeClassification",
        summary="cross entropy on the nodes of a mask (train_mask when training, val_mask otherwise)")


@hookimpl
def caramba_register_optimizers(registry: Any) -> None:
    registry.add("adamw", factory=f"{_P}.optim:build_adamw", summary="AdamW, fused where the device has it")
    registry.add("sgd", factory=f"{_P}.optim:build_sgd", summary="SGD with momentum and optional Nesterov")
    registry.add("lion", factory=f"{_P}.optim:build_lion", summary="Lion (Chen et al. 2023), sign updates")
    registry.add("swats", factory=f"{_P}.swats:build_swats",
                 summary="SWATS (Keskar & Socher 2017): Adam, then SGD at the projected learning rate")
    registry.add("pidao", factory=f"{_P}.pidao:build_pidao",
                 summary="PIDAO (Chen et al. 2024): a PID controller on the gradient, semi-implicit steps")
    registry.add("adafactor", factory=f"{_P}.optim:build_adafactor",
                 summary="Adafactor (Shazeer & Stern 2018), torch's implementation: factored second moments")


@hookimpl
def caramba_register_schedulers(registry: Any) -> None:
    registry.add("constant", factory=f"{_P}.optim:Schedule.constant", summary="constant after linear warmup",
                 aliases=("none",))
    registry.add("linear", factory=f"{_P}.optim:Schedule.linear",
                 summary="linear warmup, then linear decay to min_lr_ratio")
    registry.add("cosine", factory=f"{_P}.optim:Schedule.cosine",
                 summary="linear warmup, then cosine decay to min_lr_ratio")


@hookimpl
def caramba_register_trainers(registry: Any) -> None:
    registry.add("trainer.standard", config=specs.StandardTrainerConfig, factory=f"{_P}.standard:StandardTrainer",
                 summary="supervised training: AMP, accumulation, clipping, eval, checkpoints, resume, DDP/FSDP",
                 aliases=("trainer.train",), run_config=specs.TrainConfig)
    registry.add("trainer.upcycle", config=UpcycleTrainerConfig, factory=f"{_P}.upcycle.trainer:UpcycleTrainer",
                 summary="surgery from a pretrained teacher, blockwise distillation, global fine-tune",
                 run_config=UpcycleTrainConfig)
    registry.add("trainer.orchestrated", config=orchestrator.OrchestratedTrainerConfig,
                 factory=f"{_P}.orchestrator.trainer:OrchestratedTrainer",
                 summary="a portfolio of optimizer strategies switched by policies (safety rule, UCB bandit "
                         "with trial runs), every decision logged", run_config=orchestrator.OrchestratedTrainConfig)


@hookimpl
def caramba_register_switch_policies(registry: Any) -> None:
    registry.add("safety", config=orchestrator.SafetyPolicyConfig, factory=f"{_P}.orchestrator.policies:SafetyPolicy",
                 summary="switch to the safety strategy when the loss or gradient norm spikes")
    registry.add("bandit", config=orchestrator.BanditPolicyConfig, factory=f"{_P}.orchestrator.policies:BanditPolicy",
                 summary="UCB over the portfolio; candidates trial-run from a snapshot, scored on held-out batches")


@hookimpl
def caramba_register_artifacts(registry: Any) -> None:
    registry.add("orchestrator_report", factory=f"{_P}.orchestrator.artifacts:OrchestratorReport",
                 summary="orchestrated runs: decisions into report.json, orchestrator.png (loss with switches)")


@hookimpl
def caramba_register_sinks(registry: Any) -> None:
    registry.add("hdf5", factory=f"{_P}.sinks:HDF5Sink", summary="metrics.h5: one growing dataset per metric")
    registry.add("tensorboard", factory=f"{_P}.sinks:TensorBoardSink", summary="TensorBoard scalars under tb/")
    registry.add("wandb", factory=f"{_P}.sinks:WandbSink",
                 summary="Weights & Biases (offline mode needs no network)")
