"""QD3xx against tiny models and representative datasets that really trigger each signature."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root
from models import Projection, dataset_from, image_model, int8_converter, smooth_images, two_input_model

import quantdoctor as qd
from quantdoctor.litert import interpreter_module

Interpreter = interpreter_module().Interpreter  # LiteRT's, or tf.lite.Interpreter without it


def generator(samples):
    """A representative_dataset yielding `samples` exactly as given."""
    def representative_dataset():
        yield from samples
    return representative_dataset


@pytest.mark.code("QD301")
@pytest.mark.matcher("dataset-required")
def test_missing_dataset_for_integer_only_ops():
    report = qd.diagnose(int8_converter(image_model(), None, strict=True))
    finding = root(report)
    assert_finding(finding, "QD301", "calibration", "error")
    assert "representative_dataset" in finding.evidence["converter_message"]


@pytest.mark.code("QD303")
@pytest.mark.matcher("unsupported-sample-value")
def test_bare_array_instead_of_list():
    samples = [row[None] for row in smooth_images(120)]
    finding = root(qd.diagnose(int8_converter(image_model(), generator(samples))))
    assert_finding(finding, "QD303", "calibration", "error")
    assert finding.fix.code == "yield [sample.astype(np.float32)]"
    assert finding.evidence["samples_affected"] == 120
    assert finding.evidence["converter_message"] == "You need to provide either a dictionary with input names and values"


@pytest.mark.code("QD304")
@pytest.mark.matcher("input-count")
def test_wrong_number_of_arrays_per_sample():
    samples = [[row[None], row[None]] for row in smooth_images(120)]
    finding = root(qd.diagnose(int8_converter(image_model(), generator(samples))))
    assert_finding(finding, "QD304", "calibration", "error")
    assert finding.evidence["model_inputs"] == ["image"]
    assert "expected 1 items got 2" in finding.evidence["converter_message"]


@pytest.mark.code("QD305")
@pytest.mark.matcher("invalid-sample-signature-key")
def test_samples_naming_a_signature_the_model_does_not_have():
    samples = [("serve", {"image": row[None]}) for row in smooth_images(120)]
    finding = root(qd.diagnose(int8_converter(image_model(), generator(samples))))
    assert_finding(finding, "QD305", "calibration", "error")
    assert "naming signature 'serve', which the model does not have" in finding.message
    # TF 2.21 quotes the key; 2.18 says only that it is invalid.
    assert finding.evidence["converter_message"] in ('Invalid signature_key provided: "serve"',
                                                     "Invalid signature_key provided.")


@pytest.mark.code("QD305")
@pytest.mark.matcher("sample-dict-key-missing")
def test_dict_keys_that_do_not_match_the_input_names():
    images, meta = smooth_images(120, size=8), np.random.default_rng(1).normal(size=(120, 4)).astype(np.float32)
    samples = [{"img": i[None], "metadata": m[None]} for i, m in zip(images, meta)]
    finding = root(qd.diagnose(int8_converter(two_input_model(), generator(samples))))
    assert_finding(finding, "QD305", "calibration", "error", input="image, meta")
    assert sorted(finding.evidence["input_names"]) == ["image", "meta"]
    assert finding.evidence["converter_message"] in ("KeyError: 'image'", "KeyError: 'meta'")


def test_dict_samples_with_the_right_names_convert_cleanly():
    images, meta = smooth_images(120, size=8), np.random.default_rng(1).normal(size=(120, 4)).astype(np.float32)
    samples = [{"image": i[None], "meta": m[None]} for i, m in zip(images, meta)]
    report = qd.diagnose(int8_converter(two_input_model(), generator(samples)))
    assert report.conversion["outcome"] == "ok" and report.findings == []


@pytest.mark.code("QD313")
def test_list_samples_for_two_inputs_are_flagged_whatever_order_the_converter_picks():
    images, meta = smooth_images(120, size=8), np.random.default_rng(1).normal(size=(120, 4)).astype(np.float32)
    samples = [[i[None], m[None]] for i, m in zip(images, meta)]
    report = qd.diagnose(int8_converter(two_input_model(), generator(samples)))
    finding = only(report, "QD313")
    assert finding.evidence["items_belong_to"] == ["image", "meta"]  # the shapes say so
    # The converter's input order varies between processes: the list either happens to fit (a
    # warning: it rests on the converter's order), or the kernel that fails on the mispairing
    # confirms it (the root cause).
    if report.conversion["outcome"] == "ok":
        assert_finding(finding, "QD313", "calibration", "warning")
    else:
        assert_finding(finding, "QD313", "calibration", "error")
        assert root(report) is finding and finding.evidence["confirmed_by_converter"] == "QD310"


@pytest.mark.code("QD306")
@pytest.mark.matcher("resize-input")
def test_sample_of_another_image_size():
    samples = [[row[None]] for row in smooth_images(120, size=32)]
    finding = root(qd.diagnose(int8_converter(image_model(size=16), generator(samples))))
    assert_finding(finding, "QD306", "calibration", "error", input="image")
    assert finding.evidence["sample_shape"] == [1, 32, 32, 3]
    assert "ResizeInputTensorStrict" in finding.evidence["converter_message"]


@pytest.mark.code("QD306", "QD310")
@pytest.mark.matcher("kernel-failed-to-prepare")
def test_missing_batch_axis_fails_a_kernel_and_is_mapped_to_the_sample_shape():
    samples = [[row] for row in smooth_images(120)]
    report = qd.diagnose(int8_converter(image_model(), generator(samples)))
    assert_finding(root(report), "QD306", "calibration", "error", input="image")
    prepare = only(report, "QD310")
    assert_finding(prepare, "QD310", "calibration", "error", op="CONV_2D")
    assert prepare.evidence["sample_shapes"] == "(16, 16, 3)"
    assert re.search(r"Node number \d+ \(CONV_2D\) failed to prepare", prepare.evidence["converter_message"])
    assert "tensorflow/lite" not in prepare.message  # no TF source paths in the report


@pytest.mark.code("QD307")
def test_nan_samples_are_accepted_by_the_converter_but_not_by_quantdoctor():
    images = smooth_images(120)
    images[3, 0, 0, 0] = np.nan
    report = qd.diagnose(int8_converter(image_model(), dataset_from(images)))
    assert report.conversion["outcome"] == "ok"
    finding = root(report)
    assert_finding(finding, "QD307", "calibration", "error", input="image")
    assert finding.evidence == {"samples_affected": 1, "nan": 1, "inf": 0}
    assert report.verdict == "converted_with_problems"


@pytest.mark.code("QD308")
def test_too_few_samples_warns():
    finding = only(qd.diagnose(int8_converter(image_model(), dataset_from(smooth_images(20)))), "QD308")
    assert_finding(finding, "QD308", "calibration", "warning")
    assert finding.evidence["samples"] == 20


@pytest.mark.code("QD311")
def test_constant_input_warns():
    zeros = np.zeros((120, 16, 16, 3), np.float32)
    finding = only(qd.diagnose(int8_converter(image_model(), dataset_from(zeros))), "QD311")
    assert_finding(finding, "QD311", "calibration", "warning", input="image")


@pytest.mark.code("QD312")
@pytest.mark.matcher("dataset-raised")
def test_generator_that_raises_is_reported_with_its_position():
    def representative_dataset():
        for index, row in enumerate(smooth_images(120)):
            if index == 7:
                raise KeyError("missing_file.png")
            yield [row[None]]

    report = qd.diagnose(int8_converter(image_model(), representative_dataset))
    finding = root(report)
    assert_finding(finding, "QD312", "calibration", "error")
    assert "KeyError" in finding.message and "sample 7" in finding.message
    assert finding.evidence["samples_before_error"] == 7
    assert finding.evidence["converter_message"].startswith("the representative dataset raised KeyError: 'missing_file.png'")


def test_real_images_do_not_look_like_noise():
    report = qd.diagnose(int8_converter(image_model(), dataset_from(smooth_images(120))))
    assert report.findings == [] and report.verdict == "ok"
    assert report.audit["fully_integer"] is True


@pytest.mark.code("QD314")
def test_inference_data_outside_the_calibrated_range_is_measured():
    calibration = smooth_images(120)  # normalised to [0, 1]
    raw_pixels = smooth_images(60, seed=5) * 255.0  # inference forgot to normalise
    report = qd.diagnose(image_model(), calibration, eval_data=raw_pixels, convert=False)
    finding = only(report, "QD314")
    assert_finding(finding, "QD314", "calibration", "warning", input="image")
    assert finding.evidence["clipped_fraction"] > 0.9
    assert "not normalised" in finding.message

    twice = qd.diagnose(image_model(), calibration, eval_data=calibration / 255.0, convert=False)
    assert "normalised twice" in only(twice, "QD314").message
    same = qd.diagnose(image_model(), calibration, eval_data=smooth_images(60, seed=7), convert=False)
    assert not [f for f in same.findings if f.code == "QD314"]


@pytest.mark.code("QD315")
@pytest.mark.matcher("signature-key-none")
def test_signatures_without_samples_stay_float(tmp_path):
    """Two signatures, list samples: the calibrator feeds one, the other converts and stays float, silently."""
    module = Projection()
    path = tmp_path / "model"
    tf.saved_model.save(module, str(path), signatures={"encode": module.encode, "decode": module.decode})
    rows = np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)

    report = qd.diagnose(path, generator([[row[None]] for row in rows]))
    assert report.conversion["outcome"] == "ok" and not report.audit["fully_integer"]
    finding = root(report)
    assert_finding(finding, "QD315", "calibration", "error")
    assert finding.evidence["without_samples"] == ["decode", "encode"]  # in the produced model's order
    assert finding.evidence["float_signatures"] == ["encode"]  # read from the produced model: 'decode' got them all
    assert "QD105" in [f.code for f in report.findings]  # the float op the audit sees: the consequence

    encode_only = qd.diagnose(path, generator([("encode", {"x": row[None]}) for row in rows]))
    assert not encode_only.audit["fully_integer"]
    assert only(encode_only, "QD315").evidence["without_samples"] == ["decode"]
    assert only(encode_only, "QD315").evidence["float_signatures"] == ["decode"]

    dicts = qd.diagnose(path, generator([{"x": row[None]} for row in rows]))  # refused, not silently float
    assert dicts.conversion["outcome"] == "error" and "signature_key is None" in dicts.conversion["error_excerpt"]
    assert_finding(root(dicts), "QD315", "calibration", "error")
    assert root(dicts).evidence["converter_message"] == "SignatureDef signature_key is None and model has 2 Signatures"
    assert "QD904" not in [f.code for f in dicts.findings]

    both = qd.diagnose(path, generator([(key, {"x": row[None]}) for row in rows for key in ("encode", "decode")]))
    assert both.audit["fully_integer"] and "QD315" not in [f.code for f in both.findings]  # the catalog's fix


def same_shape_inputs(*names: str):
    """A Keras model whose inputs, declared in this order, all take (None, 4)."""
    inputs = [keras.Input((4,), name=name) for name in names]
    merged = keras.layers.Concatenate()([keras.layers.Dense(3)(x) for x in inputs])
    return keras.Model(inputs, keras.layers.Dense(2)(merged))


def scales_by_input(tflite: bytes) -> dict[str, float]:
    signature = Interpreter(model_content=tflite).get_signature_runner()
    return {name: detail["quantization"][0] for name, detail in signature.get_input_details().items()}


def test_list_samples_for_same_shape_inputs_reaching_the_wrong_input_are_an_error():
    """Lists in model.inputs order [alpha, beta]; the converter takes [beta, alpha]. Every array
    fits every input, so nothing fails: alpha's 0..1 data calibrates beta, beta's 0..100 alpha."""
    rng = np.random.default_rng(3)
    samples = [[rng.uniform(0, 1, (1, 4)).astype(np.float32), rng.uniform(0, 100, (1, 4)).astype(np.float32)]
               for _ in range(120)]
    report = qd.diagnose(int8_converter(same_shape_inputs("alpha", "beta"), generator(samples), int8_io=True))
    assert report.conversion["outcome"] == "ok"
    finding = only(report, "QD313")
    assert_finding(finding, "QD313", "calibration", "error", input="beta")
    assert finding.evidence["converter_order"] == ["beta", "alpha"]
    assert finding.evidence["declared_order"] == ["alpha", "beta"]
    assert "calibrated input 'beta' with the arrays meant for 'alpha'" in finding.message
    scales = scales_by_input(report.tflite_model)  # the produced model proves the mispairing happened
    assert scales["beta"] < 0.01 < 0.3 < scales["alpha"]
    assert root(report) is finding


def test_list_samples_for_same_shape_inputs_in_the_converters_order_warn_with_that_order():
    rng = np.random.default_rng(3)
    samples = [[rng.uniform(0, 1, (1, 4)).astype(np.float32), rng.uniform(0, 100, (1, 4)).astype(np.float32)]
               for _ in range(120)]
    report = qd.diagnose(int8_converter(same_shape_inputs("zeta", "alpha"), generator(samples), int8_io=True))
    finding = only(report, "QD313")
    assert_finding(finding, "QD313", "calibration", "warning")
    assert "in the converter's order: 'zeta', 'alpha'" in finding.message
    scales = scales_by_input(report.tflite_model)
    assert scales["zeta"] < 0.01 < 0.3 < scales["alpha"]  # paired as meant, this time
    preflight = qd.diagnose(same_shape_inputs("zeta", "alpha"), generator(samples), convert=False)
    assert_finding(only(preflight, "QD313"), "QD313", "calibration", "warning")
    assert "the model declares 'zeta', 'alpha'" in only(preflight, "QD313").message
    named = [{"zeta": z, "alpha": a} for z, a in samples]  # the fix: dicts pair by name
    assert "QD313" not in [f.code for f in qd.diagnose(same_shape_inputs("zeta", "alpha"), generator(named),
                                                        convert=False).findings]


@pytest.mark.code("QD306", "QD310", "QD201")
@pytest.mark.matcher("kernel-failed-to-prepare")
def test_the_data_finding_the_converter_confirms_is_the_root_cause_before_errors_it_never_reached():
    """Samples without a batch axis AND float64: TRANSPOSE fails to prepare on the first sample's shape,
    before the calibrator ever looks at the dtype. The shape finding is the root cause."""
    inputs = keras.Input((8, 8, 3))
    transposed = keras.layers.Permute((2, 1, 3))(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(transposed))
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    samples = [[row.astype(np.float64)] for row in smooth_images(120, size=8)]
    report = qd.diagnose(int8_converter(model, generator(samples)))
    codes = [f.code for f in report.findings if f.severity == "error"]
    assert codes[:3] == ["QD306", "QD310", "QD201"], codes
    shape = root(report)
    assert_finding(shape, "QD306", "calibration", "error", input=model.inputs[0].name)
    assert shape.evidence["confirmed_by_converter"] == "QD310"
    assert "(TRANSPOSE) failed to prepare" in shape.evidence["converter_message"]
    assert_finding(only(report, "QD310"), "QD310", "calibration", "error", op="TRANSPOSE")
    assert "confirmed_by_converter" not in only(report, "QD201").evidence


def concrete_function_converter_fed_dicts():
    """A converter from one concrete function (no signature) whose samples are dicts keyed by input name, and
    the rows behind them."""
    weights = tf.Variable(np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def project(x):
        return tf.matmul(x, weights)

    rows = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([project.get_concrete_function()], project)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = generator([{"x": row[None]} for row in rows])
    return converter, rows


@pytest.mark.code("QD315")
@pytest.mark.matcher("signature-key-none")
def test_dict_samples_for_concrete_functions_are_told_to_be_lists():
    """A converter from concrete functions has no signature: dict samples are refused ("model has 0 Signatures").
    The fix was to yield (signature_key, dict) tuples for signatures that do not exist; it is list samples."""
    converter, rows = concrete_function_converter_fed_dicts()
    finding = root(qd.diagnose(converter))
    assert_finding(finding, "QD315", "calibration", "error")
    assert finding.evidence["no_signature"] and "list samples only" in finding.message
    assert "yield [x[None]" in finding.fix.code and "signature_key" not in finding.fix.summary

    converter.representative_dataset = generator([[row[None]] for row in rows])  # the fix, as written
    assert qd.diagnose(converter).conversion["outcome"] == "ok"


def test_fix_of_dict_samples_for_concrete_functions_says_the_model_does_not_convert():
    """No repair answers QD315 without signatures: fix said "the model converted but did not pass verification"
    of a model the converter refused."""
    converter, _ = concrete_function_converter_fed_dicts()
    result = qd.fix(converter)
    assert not result.verified and result.after.root_cause.code == "QD315"
    (blocked,) = result.blocked
    assert blocked.reason == "The model still does not convert (see the last diagnosis)."
    assert "converted" not in blocked.instruction
