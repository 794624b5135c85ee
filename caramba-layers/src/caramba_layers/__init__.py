"""caramba-layers: every layer, topology, embedder and model system, as a caramba plugin."""

__version__ = "0.1.0"
