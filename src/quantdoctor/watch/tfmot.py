"""The tfmot side of run/watch (quantization-aware training): filled in below."""

MODULES: dict = {}
