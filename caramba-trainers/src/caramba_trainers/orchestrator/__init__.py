"""Orchestrated training: a portfolio of optimizer strategies, telemetry of the training
stream, and switching policies (``trainer.orchestrated``)."""
