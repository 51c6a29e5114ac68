"""Running a produced .tflite: feeding samples to LiteRT, the run check after every conversion,
and finding the op an interpreter dies on."""
