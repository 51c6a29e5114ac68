"""Converter settings ("recipe"): read back from a configured converter or built from a mode.

A recipe is plain JSON-able data, so the isolated worker can apply exactly the settings the user
had, and the report can show them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from quantdoctor import tf_private
from quantdoctor.errors import UsageError
from quantdoctor.intake import options

IO_TYPES = ("float", "int8", "uint8")

# Converter attributes copied verbatim when reading back a user's converter.
CONVERTER_FLAGS = (
    "allow_custom_ops",
    "experimental_new_converter",
    "experimental_new_quantizer",
    "experimental_enable_resource_variables",
    "_experimental_lower_tensor_list_ops",
    "_experimental_default_to_single_batch_in_tensor_list_ops",
    "_experimental_disable_per_channel",
    "_experimental_disable_per_channel_quantization_for_dense_layers",
    "unfold_batchmatmul",
    "legalize_custom_tensor_list_ops",
    "exclude_conversion_metadata",
)

_IO_DTYPES = {"float": "float32", "int8": "int8", "uint8": "uint8"}
# The `tf.lite.Optimize` values that turn quantization on; the last two are deprecated aliases of DEFAULT.
OPTIMIZATIONS = ("DEFAULT", "OPTIMIZE_FOR_SIZE", "OPTIMIZE_FOR_LATENCY")


@dataclass
class Recipe:
    """The converter settings, by name: `Optimize.DEFAULT` is "DEFAULT", `tf.int8` is "int8"."""

    optimizations: list[str] = field(default_factory=list)
    supported_ops: list[str] = field(default_factory=lambda: ["TFLITE_BUILTINS"])
    supported_types: list[str] = field(default_factory=list)
    inference_input_type: str = "float32"
    inference_output_type: str = "float32"
    calibrate: bool = False
    flags: dict[str, Any] = field(default_factory=dict)
    # TF1 converter settings set on a TF2 converter, which ignores them: name -> value as set.
    tf1_settings: dict[str, Any] = field(default_factory=dict)
    # The model is quantization-aware trained: its graph carries FakeQuant ranges. Known once the
    # worker has read the graph (diagnose sets it); the converter then needs no calibration.
    qat_model: bool = False

    @classmethod
    def for_mode(cls, mode: str = "int8", io: str = "float", select_tf_ops: bool = False) -> Recipe:
        """The settings a user would write for `--mode`, `--io` and `--select-tf-ops`."""
        mode = options.checked_mode(mode)
        if io not in IO_TYPES:
            raise UsageError(f"unknown io type '{io}': choose one of {', '.join(IO_TYPES)}")
        if io != "float" and mode not in ("int8", "int8-strict"):
            raise UsageError(f"--io {io} needs full integer quantization: use --mode int8 or int8-strict")
        if mode == "float":
            return cls(supported_ops=["TFLITE_BUILTINS", "SELECT_TF_OPS"] if select_tf_ops else ["TFLITE_BUILTINS"])
        recipe = cls(optimizations=["DEFAULT"])
        if mode in ("int8", "int8-strict"):
            recipe.calibrate = True
            recipe.supported_ops = ["TFLITE_BUILTINS_INT8"] if mode == "int8-strict" else ["TFLITE_BUILTINS"]
        elif mode == "int16x8":
            recipe.calibrate = True
            recipe.supported_ops = ["EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"]
        elif mode == "float16":
            recipe.supported_types = ["float16"]
        recipe.inference_input_type = recipe.inference_output_type = _IO_DTYPES[io]
        if select_tf_ops:
            recipe.supported_ops.append("SELECT_TF_OPS")
        return recipe

    @classmethod
    def from_converter(cls, converter: Any) -> Recipe:
        """Read back every quantization-relevant setting of a configured `tf.lite.TFLiteConverter`."""
        spec = converter.target_spec
        set_here = vars(converter)
        tf1_settings = {name: _jsonable(set_here[name]) for name in tf_private.tf1_only_converter_attributes()
                        if name in set_here} if tf_private.is_tf2_converter(converter) else {}
        return cls(
            optimizations=[_enum_name(o) for o in (converter.optimizations or [])],
            supported_ops=[_enum_name(o) for o in (spec.supported_ops or [])],
            supported_types=[_dtype_name(t) for t in (spec.supported_types or [])],
            inference_input_type=_dtype_name(converter.inference_input_type),
            inference_output_type=_dtype_name(converter.inference_output_type),
            calibrate=converter.representative_dataset is not None,
            flags=tf_private.converter_flags(converter, CONVERTER_FLAGS),
            tf1_settings=tf1_settings,
        )

    @property
    def optimizing(self) -> bool:
        """True when the converter optimizes at all: `OPTIMIZE_FOR_SIZE` and `OPTIMIZE_FOR_LATENCY` are
        deprecated aliases of `DEFAULT` (TF's `QuantizationMode.is_any_optimization_enabled`)."""
        return bool(set(self.optimizations) & set(OPTIMIZATIONS))

    @property
    def mode(self) -> str:
        """The quantdoctor mode these settings amount to."""
        if not self.optimizing:
            return "float"
        if "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8" in self.supported_ops:
            return "int16x8"
        if self.int8_only_ops:
            return "int8-strict"
        if (self.calibrate or self.qat_model) and "float16" not in self.supported_types:
            return "int8"
        if "float16" in self.supported_types:
            return "float16"
        return "dynamic"

    @property
    def reads_calibration_data(self) -> bool:
        """False only where the converter plainly ignores a representative dataset (TF 2.21's
        QuantizationMode): no optimization enabled, or float16 the smallest supported type, with no
        integer ops or integer input/output asked for. Settings that ask for an integer model take
        the data, contradictions included: those are the converter's own errors to report."""
        if self._integer_target:
            return True
        if not {"DEFAULT", "OPTIMIZE_FOR_SIZE", "OPTIMIZE_FOR_LATENCY"} & set(self.optimizations):
            return False
        return not self.supported_types or "int8" in self.supported_types

    @property
    def int8_only_ops(self) -> bool:
        """True when the user asked for integer-only builtin ops (TFLITE_BUILTINS_INT8 alone)."""
        return "TFLITE_BUILTINS_INT8" in self.supported_ops and "TFLITE_BUILTINS" not in self.supported_ops

    @property
    def int8_ops_requested(self) -> bool:
        """True when the converter requires a representative dataset (or QAT ranges) for these settings:
        TFLITE_BUILTINS_INT8 among the ops, or int8 the only supported type (TF's `_is_int8_target_required`)."""
        return "TFLITE_BUILTINS_INT8" in self.supported_ops or self.supported_types == ["int8"]

    @property
    def integer_io(self) -> bool:
        """True when the input or output type asked for is an integer type."""
        return bool({self.inference_input_type, self.inference_output_type} & {"int8", "uint8", "int16"})

    @property
    def needs_calibration(self) -> bool:
        """True when these settings cannot convert without a representative dataset.

        A QAT model brings its own ranges, but the converter checks TFLITE_BUILTINS_INT8 against
        the dataset before it reads the graph, so that setting still needs one.
        """
        if self.qat_model and self.optimizing:
            return self.int8_only_ops
        return (self.calibrate and self.reads_calibration_data) or self._integer_target

    @property
    def _integer_target(self) -> bool:
        """Integer-only ops, int16x8 ops, or integer input/output asked for."""
        int16_ops = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8" in self.supported_ops
        return self.int8_only_ops or int16_ops or self.integer_io

    @property
    def wants_full_integer(self) -> bool:
        """True when the settings ask for integer activations (calibrated INT8 or 16x8)."""
        return self.mode in ("int8", "int8-strict", "int16x8")

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the derived mode first."""
        return {"mode": self.mode, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Inverse of `to_dict`."""
        return cls(**{k: v for k, v in data.items() if k != "mode"})

    def apply(self, converter: Any) -> None:
        """Configure a `tf.lite.TFLiteConverter` with these settings (worker side)."""
        import tensorflow as tf

        converter.optimizations = [getattr(tf.lite.Optimize, name) for name in self.optimizations]
        converter.target_spec.supported_ops = {getattr(tf.lite.OpsSet, name) for name in self.supported_ops}
        converter.target_spec.supported_types = [tf.as_dtype(name) for name in self.supported_types]
        converter.inference_input_type = tf.as_dtype(self.inference_input_type)
        converter.inference_output_type = tf.as_dtype(self.inference_output_type)
        for name, value in self.flags.items():
            tf_private.set_converter_flag(converter, name, value)


def _jsonable(value: Any) -> Any:
    """A converter setting as JSON data: dtypes and enums by name, sets and tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "name", str(value))


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value))


def _dtype_name(value: Any) -> str:
    if value is None:
        return "float32"
    return getattr(value, "name", str(value))
