"""QD4xx: signatures and model metadata the converter needs."""

from quantdoctor.catalog.check import Check

CHECKS = (
    Check(
        code="QD401", name="ambiguous-signature", severity="error", precedence=10,
        title="The SavedModel has several signatures and none was chosen",
        detects="`from_saved_model` was called without `signature_keys` on a SavedModel with more than one "
                "signature, or with several concrete functions.",
        why="The converter converts one signature at a time unless told which ones; it refuses.",
        example="tf.lite.TFLiteConverter.from_saved_model(path)   # signatures 'encode' and 'decode'",
        fix="Name the signature to convert.",
        fix_code="converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=['serving_default'])",
    ),
    Check(
        code="QD402", name="no-signature", severity="error", precedence=10,
        title="The SavedModel has no signature to convert",
        detects="The SavedModel was saved without signatures (or with an unknown signature key).",
        why="The converter needs a signature to know the model's inputs and outputs.",
        example="tf.saved_model.save(module, path)    # no signatures=...",
        fix="Save the model with a serving signature, or convert its concrete function directly.",
        fix_code="tf.saved_model.save(module, path, signatures={'serving_default': module.__call__.get_concrete_function(spec)})",
    ),
)
