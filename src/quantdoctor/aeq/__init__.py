"""Float `.tflite` models quantized with ai-edge-quantizer (AEQ): what the diagnosis adds for them.

The quantization itself runs in `convert/aeq_worker.py`; the input and its recipe are taken in by
`intake/float_tflite.py`. Here: the checks on the model before the run (`inputs`), and the
findings only an AEQ run has (`findings`): its errors by catalog code, and the ops it silently
left in float against the recipe, checked against the model it produced.
"""
