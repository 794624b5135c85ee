"""caramba-trainers: the standard trainer and what it trains with.

Datasets, tokenizers, objectives, optimizers, learning-rate schedules, checkpoints,
metrics sinks and distributed wrapping, each registered as a caramba plugin component.
The reusable pieces (checkpoint I/O, optimizer and schedule construction, the step
helpers) are importable on their own for other trainers:

* :mod:`caramba_trainers.checkpoint` -- safetensors + JSON checkpoints, atomic, resumable;
* :mod:`caramba_trainers.optim` -- ``build_optimizer``, ``Lion``, ``Schedule``;
* :mod:`caramba_trainers.loop` -- device/precision setup, batches, the optimizer step;
* :mod:`caramba_trainers.distributed` -- DDP and FSDP2 under ``torchrun``.

Importing this package does not import torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
