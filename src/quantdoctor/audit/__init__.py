"""Checks on a produced .tflite model: which ops stayed float, what its inputs and outputs take."""
