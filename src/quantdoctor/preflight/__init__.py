"""Static checks before and around conversion: the TF graph and the calibration data."""
