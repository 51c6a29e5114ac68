"""The eval samples as the rows both models run on: one array per input of the quantized model."""

from __future__ import annotations

from quantdoctor.audit.tflite_model import TFLiteModel
from quantdoctor.intake.data import CalibrationSet, Sample
from quantdoctor.runtime.feed import fitted_rows, tflite_inputs


def eval_rows(evaluation: CalibrationSet, quant_model: TFLiteModel) -> CalibrationSet:
    """The eval samples as the rows the models run on, one array per model input (batches split);
    a UsageError names the first sample that does not fit the model."""
    inputs = tflite_inputs(quant_model)
    samples = [Sample(sample.kind, row, sample.signature_key)
               for number, sample in enumerate(evaluation.samples)
               for row in fitted_rows(inputs, sample.values, f"eval sample #{number}",
                                      by_name=sample.kind in ("dict", "signature"))]
    return CalibrationSet(samples, source=evaluation.source)
