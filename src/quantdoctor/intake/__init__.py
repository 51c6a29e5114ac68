"""Intake: the model, the calibration data and the converter settings, as the user gave them."""
