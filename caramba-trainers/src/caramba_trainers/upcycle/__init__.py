"""Upcycling: architecture surgery from a pretrained teacher, then distillation (``trainer.upcycle``)."""
