"""The preflight of a Keras model that converts, from the converter's own trace (runs in the worker).

`from_keras_model` traces the model into its serving function before it converts it. quantdoctor reads
the preflight inventory from that very graph, as soon as it is traced, instead of tracing the model a
second time (`tf_private.shadow_keras_export_trace`). The worker's response then reaches the stage
`converting` with the model's layer scopes and the inventory, as it did when quantdoctor traced first.

A model that is not converted (`--no-convert`) has no converter to trace it: the worker traces it itself
(`own_trace`). So does the preflight when the converter reports no serving function of its own: a model it
could not trace (never called, a failing call, a tf_keras model) fails that trace as well and has no graph,
as before; a release whose converter exports Keras models another way still gets its graph, traced twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quantdoctor import tf_private
from quantdoctor.isolation.protocol import write_message

if TYPE_CHECKING:
    from quantdoctor.convert.worker import ConversionResponse


class ConverterTrace:
    """Where the worker's response gets its preflight and layer scopes when the converter traces the model."""

    def __init__(self, keras_model: Any, response: ConversionResponse, response_path: Path, loaded_at: float) -> None:
        self._model, self._response, self._path, self._loaded_at = keras_model, response, response_path, loaded_at
        self._scopes: dict[str, str] = {}
        self._installed = self._reported = False
        self._failure: BaseException | None = None

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Around the conversion: the TF name scope each layer is traced under (`recorded_layer_scopes`)."""
        with tf_private.recorded_layer_scopes(self._model) as scopes:
            self._scopes = scopes
            yield

    def install(self, converter: Any) -> None:
        """Have `converter` report its trace of the model to this preflight."""
        tf_private.shadow_keras_export_trace(converter, self._traced)
        self._installed = True

    def settle(self, converted: bool) -> None:
        """After the conversion, whatever its outcome: what reading the trace raised is quantdoctor's own
        failure, never the user's conversion error (raised again here, however the converter wrapped it).
        A converter that `converted` the model without reporting its trace is a TensorFlow that no longer
        exports Keras models as `shadow_keras_export_trace` expects; one that failed before tracing it (a
        setting it refuses first, such as integer-only ops without samples) leaves the preflight to
        quantdoctor's own trace, as before."""
        if self._failure is not None:
            raise self._failure
        if not self._installed or self._reported:
            return
        if converted:
            raise tf_private.TensorFlowChanged(
                "the converter converted the Keras model without exporting it through "
                "_convert_keras_to_saved_model: quantdoctor has no graph for its preflight")
        with self.recording():
            self._traced(None)

    def _traced(self, function: Any) -> None:
        """The converter traced the model into `function` (None: it traced no serving function, and will
        freeze the model instead): the preflight inventory, written with the stage `converting`."""
        self._reported = True
        try:
            if function is None:
                function = own_trace(self._model)
            self._response.model.layer_scopes = dict(self._scopes)
            self._response.preflight = preflight_inventory(function, self._loaded_at)
            self._response.stage = "converting"
            write_message(self._path, self._response)
        except BaseException as exc:
            self._failure = exc
            raise


def own_trace(keras_model: Any) -> Any:
    """The serving function `from_keras_model` exports the model with, traced by quantdoctor itself
    (`intake.model.trace_keras`); None when the model cannot be traced so (the converter then freezes it)."""
    from quantdoctor.intake.model import trace_keras

    try:
        return trace_keras(keras_model)
    except Exception as exc:
        changed = tf_private.changed_in(exc)
        if changed is not None:
            raise changed from exc
        return None


def preflight_inventory(function: Any, loaded_at: float) -> dict[str, Any]:
    """The preflight inventory of the serving graph; `seconds` counts from the end of model loading
    (so it includes tracing a Keras model). Empty without a single serving function."""
    if function is None:
        return {}
    from quantdoctor.convert.graph_inventory import inventory

    result = inventory(function)
    result["seconds"] = round(time.perf_counter() - loaded_at, 3)
    return result
