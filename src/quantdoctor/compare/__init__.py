"""compare: float vs quantized outputs, end to end and layer by layer, in the user's layer names."""
