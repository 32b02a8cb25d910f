"""HTTP serving: a FastAPI app around a loaded MultiTaskModel, with micro-batching and request limits."""
