"""caramba-layers: every layer, topology, embedder and model system, as a caramba plugin."""
