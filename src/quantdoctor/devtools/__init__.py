"""Developer-time tools: they import TensorFlow at load and are never used by a diagnosis."""
