"""``caramba serve``: an OpenAI-compatible HTTP server over a caramba language model."""
