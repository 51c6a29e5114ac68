"""compare: tiny models with a deliberately broken layer are ranked first; end-to-end metrics on real data."""

from __future__ import annotations

import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root, run_in_process
from models import dataset_from, image_model, int8_converter, smooth_images, vectors

import quantdoctor as qd
from quantdoctor.compare.labels import metric_number
from quantdoctor.compare.metrics import ErrorStats
from quantdoctor.diagnosis.pipeline import diagnose_with_float_twin
from quantdoctor.errors import UsageError
from quantdoctor.report.html import SQNR_BANDS


def detector() -> keras.Model:
    """Boxes in pixels (0..640-ish) concatenated with scores in 0..1: one INT8 scale crushes the scores."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,), name="features")
    trunk = keras.layers.Dense(16, activation="relu", name="trunk")(inputs)
    boxes = keras.layers.Lambda(lambda x: x * 640.0, name="boxes")(keras.layers.Dense(4, name="box_head")(trunk))
    scores = keras.layers.Dense(2, activation="sigmoid", name="scores")(trunk)
    return keras.Model(inputs, keras.layers.Concatenate(name="detections")([boxes, scores]), name="detector")


def exploding() -> keras.Model:
    """One layer multiplies a single channel by 1000: a range explosion of its own making."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,), name="features")
    trunk = keras.layers.Dense(16, activation="relu", name="trunk")(inputs)
    gain = tf.constant([1000.0] + [1.0] * 15)
    exploded = keras.layers.Lambda(lambda x: tf.nn.relu6(x * gain), name="explode")(trunk)
    hidden = keras.layers.Dense(16, activation="relu", name="after")(exploded)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(hidden), name="exploding")


@pytest.mark.code("QD503")
def test_concat_of_mismatched_ranges_is_ranked_first_though_its_tensor_sqnr_looks_healthy():
    report = qd.compare(detector(), vectors(200), eval_data=vectors(100, seed=3))
    worst, *others = report.comparison["layers"]
    assert (worst["layer"], worst["op"]) == ("detections", "CONCATENATION")
    # Per-tensor SQNR would miss it: the merged tensor scores better than some healthy layers.
    assert worst["sqnr_db"] > min(row["sqnr_db"] for row in others) and worst["worst_channel_sqnr_db"] < 5
    finding = only(report, "QD503")
    # the scores are crushed to a constant (worst channel 0 dB): an error, counting what is lost
    assert_finding(finding, "QD503", "accuracy", "error", layer="detections", op="CONCATENATION")
    assert finding.message.endswith("2 of its 6 channels (2 values per sample) quantize to a constant and carry "
                                    "nothing.")
    assert "denylisted_nodes=['StatefulPartitionedCall_1:0']" in finding.fix.code


@pytest.mark.code("QD501")
def test_layer_with_its_own_range_explosion_is_ranked_first_and_later_layers_only_inherit():
    report = qd.compare(exploding(), vectors(200), eval_data=vectors(100, seed=3))
    rows = report.comparison["layers"]
    assert rows[0]["layer"] == "explode"
    finding = only(report, "QD501")
    assert_finding(finding, "QD501", "accuracy", "warning", layer="explode")
    after = next(row for row in rows if row["layer"] == "after")
    assert after["own_sqnr_drop_db"] < finding.evidence["own_sqnr_drop_db"]


@pytest.mark.code("QD502")
def test_activations_beyond_the_calibrated_range_are_measured():
    report = qd.compare(detector(), vectors(200) * 0.2, eval_data=vectors(100, seed=3))
    finding = next(f for f in report.findings if f.code == "QD502")
    assert_finding(finding, "QD502", "accuracy", "warning")
    assert finding.evidence["clipped_fraction"] > 0.01


@pytest.mark.code("QD504")
def test_output_that_collapses_to_a_constant():
    model = keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(1, name="regressor")],
                             name="regression")
    report = qd.compare(model, np.zeros((120, 8), np.float32), eval_data=vectors(60, seed=2))
    assert_finding(only(report, "QD504"), "QD504", "accuracy", "error")


@pytest.mark.parametrize("mode", ["int8", "dynamic"])  # kept from before quantization; converted again
def test_float_reference_comes_from_the_worker_that_quantized_the_model(mode):
    report, float_model = diagnose_with_float_twin(detector(), vectors(50), mode=mode)
    assert report.conversion["outcome"] == "ok" and report.audit["fully_integer"] == (mode == "int8")
    float_audit = qd.audit(float_model).audit
    assert not any(t["dtype"] in ("int8", "uint8") for t in float_audit["input_types"] + float_audit["output_types"])
    dense = [op for op in float_audit["float_ops"] if op["op"] == "FULLY_CONNECTED"]
    assert {op["layer"] for op in dense} >= {"trunk", "box_head", "scores"}  # every Dense layer, in float


@pytest.mark.code("QD505")
def test_integer_input_model_and_a_user_provided_tflite(tmp_path):
    model = image_model()
    tflite = tmp_path / "int8.tflite"
    tflite.write_bytes(int8_converter(model, dataset_from(smooth_images(120)), strict=True, int8_io=True).convert())
    report = qd.compare(model, eval_data=smooth_images(40, seed=4), tflite=tflite)
    assert_finding(only(report, "QD505"), "QD505", "accuracy", "info")
    assert report.comparison["samples"] == 40
    assert report.comparison["end_to_end"]["cosine"] > 0.99


@pytest.fixture(scope="module")
def digits_model():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    model = keras.Sequential([keras.Input((8, 8, 1), name="image"),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
                              keras.layers.Flatten(name="flatten"), keras.layers.Dense(10, name="classifier")],
                             name="digits")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    keras.utils.set_random_seed(0)
    model.fit(images[:1400], digits.target[:1400], epochs=4, batch_size=64, verbose=0)
    return model, images, digits.target


def test_accuracy_on_real_digits_and_a_user_metric(digits_model):
    model, images, labels = digits_model

    def mean_logit(_labels, outputs):
        return float(np.mean(outputs))

    report = qd.compare(model, images[:300], eval_data=images[1400:1600], labels=labels[1400:1600],
                        metric=mean_logit)
    e2e = report.comparison["end_to_end"]
    assert e2e["accuracy_float"] > 0.8
    assert abs(e2e["accuracy_float"] - e2e["accuracy_quant"]) < 0.05
    assert e2e["top1_agreement"] > 0.9
    assert e2e["metric_float"] == pytest.approx(e2e["metric_quant"], abs=0.5)
    assert {row["layer"] for row in report.comparison["layers"]} >= {"conv", "classifier"}
    assert not [f.code for f in report.findings if f.code in ("QD510", "QD511")]  # the float model works


def test_a_confident_softmax_is_not_clipped_activations(digits_model):
    """INT8 SOFTMAX outputs have LiteRT's fixed scale 1/256: a probability of 1.0 reads 0.996. That is
    the op's grid, not a calibrated range the eval data exceeds (no QD502)."""
    model, images, labels = digits_model
    sharpened = keras.layers.Rescaling(5.0)(model.outputs[0])  # confident: many rows reach 1.0
    probabilities = keras.Model(model.inputs, keras.layers.Softmax()(sharpened))
    report = qd.compare(probabilities, images[:300], eval_data=images[1400:1600], labels=labels[1400:1600])
    softmax = next(row for row in report.comparison["layers"] if row["op"] == "SOFTMAX")
    assert softmax["float_range"][1] > softmax["quantized_range"][1]  # confident rows reach past 255/256
    assert "QD502" not in [f.code for f in report.findings]


def test_a_metric_gets_regression_targets_as_given_and_must_return_a_number(digits_model):
    """A regression head (Dense(3), default names: a value near 300 next to two near 0) judged by the
    user's negative MSE on float targets. The targets are no class labels: no accuracy is made up from
    them, and the head's constant argmax is no "one class for every input" (QD510)."""
    _, images, _ = digits_model
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    head = keras.layers.Dense(3)
    model = keras.Model(inputs, head(keras.layers.Flatten()(inputs)))
    kernel, _ = head.get_weights()
    head.set_weights([kernel, np.array([300.0, 0.0, 0.0], np.float32)])
    targets = model.predict(images[1400:1500], verbose=0) + 0.01  # (100, 3) floats
    received = []

    def negative_mse(truth, outputs):
        received.append(truth)
        return -float(np.mean((outputs - truth) ** 2))

    report = qd.compare(model, images[:100], eval_data=images[1400:1500], labels=targets, metric=negative_mse)
    e2e = report.comparison["end_to_end"]
    assert received[0].shape == (100, 3) and np.array_equal(received[0], targets)
    assert e2e["metric_float"] == pytest.approx(-1e-4, rel=0.05)  # the targets are the float outputs + 0.01
    assert e2e["metric_quant"] < e2e["metric_float"] and "accuracy_float" not in e2e
    codes = [f.code for f in report.findings]
    assert "QD510" not in codes  # the head's constant argmax (channel 0, near 300) is no class
    assert set(only(report, "QD518").evidence["lost_channels"]) <= {1, 2}  # the small ones, under one scale
    counts = np.arange(100) % 10  # whole numbers, yet no classes of this head: the metric's own targets
    whole = qd.compare(model, images[:100], eval_data=images[1400:1500], labels=counts,
                       metric=lambda truth, outputs: -float(np.mean((outputs[:, 1] - truth) ** 2)))
    assert whole.comparison["end_to_end"]["metric_float"] < 0 and "QD510" not in [f.code for f in whole.findings]
    with pytest.raises(UsageError, match="the metric returned ndarray, not a number"):
        qd.compare(model, images[:100], eval_data=images[1400:1500], labels=targets,
                   metric=lambda truth, outputs: outputs - truth)
    with pytest.raises(UsageError, match="labels have shape \\(100, 3\\)"):  # without a metric: class labels only
        qd.compare(model, images[:100], eval_data=images[1400:1500], labels=targets)


@pytest.mark.parametrize("value", ["0.5", float("inf"), float("nan"), np.array([0.5, 0.5]), None])
def test_a_metric_result_must_be_one_finite_number(value):
    with pytest.raises(UsageError, match="the metric returned"):
        metric_number(value)
    assert metric_number(np.float32(0.25)) == 0.25 and metric_number(np.array(1.5)) == 1.5


def test_a_multi_output_model_is_compared_in_its_own_output_order(digits_model):
    """Keras outputs [class scores (10), a 2-value head]: LiteRT lists the tensors the other way round.
    Accuracy reads the first *model* output, and the metric gets the outputs in the model's order."""
    _, images, labels = digits_model
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(10, activation="softmax")(hidden), keras.layers.Dense(2)(hidden)])
    shapes = []

    def first_output_mean(truth, outputs):
        shapes.extend(output.shape[1:] for output in outputs)
        return float(np.mean(outputs[0]))

    report = qd.compare(model, images[:100], eval_data=images[1400:1500], labels=labels[1400:1500],
                        metric=first_output_mean)
    assert shapes[:2] == [(10,), (2,)]
    e2e = report.comparison["end_to_end"]
    assert 0 <= e2e["accuracy_float"] <= 1 and e2e["metric_float"] == pytest.approx(0.1, abs=1e-3)  # softmax rows


def test_cli_compare_writes_html_that_a_real_browser_renders_with_charts(tmp_path, digits_model):
    from PIL import Image

    model, images, labels = digits_model
    model.save(tmp_path / "digits.keras")
    np.save(tmp_path / "calib.npy", images[:200])
    np.save(tmp_path / "eval.npy", images[1400:1500])
    np.save(tmp_path / "labels.npy", labels[1400:1500])
    result = run_in_process("compare", str(tmp_path / "digits.keras"), "--data", str(tmp_path / "calib.npy"),
                            "--eval-data", str(tmp_path / "eval.npy"), "--labels", str(tmp_path / "labels.npy"),
                            "--html", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr
    assert "accuracy quant" in result.stdout
    page = (tmp_path / "report.html").read_text()
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # self-contained: nothing to fetch
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1100,1600", (tmp_path / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    histogram = np.array([0x1c, 0x7e, 0xd6])
    bars = sum(np.sum(np.all(np.abs(pixels.astype(int) - np.array(_rgb(color))) < 8, axis=1)) for _, color in SQNR_BANDS)
    assert bars > 500  # the per-layer bars rendered, in the colours of their SQNR bands
    assert np.sum(np.all(np.abs(pixels.astype(int) - histogram) < 8, axis=1)) > 500  # and the histograms


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy-pass", "compiled-pass"])
def test_error_statistics_match_a_direct_computation_over_all_samples(compiled):
    """Each pass (dequantize, compare, per channel; NumPy's and the compiled one) against a direct computation
    on the same values, all samples at once."""
    rng = np.random.default_rng(0)
    scale, zero_point = 0.05, -3
    stats = ErrorStats(scale=scale, zero_point=zero_point)
    references, stored_values, dequantized = [], [], []
    for _ in range(3):
        real = rng.normal(0, 4, size=(1, 5, 4, 3)).astype(np.float32)
        real[..., 2] *= 0.01  # a quiet channel: its SQNR is the worst
        stored = np.clip(np.round(real / scale) + zero_point, -128, 127).astype(np.int8)
        stats.add(real, stored, compiled)
        references.append(real)
        stored_values.append(stored)
        dequantized.append((stored.astype(np.float64) - zero_point) * scale)
    real, got = np.concatenate(references).astype(np.float64), np.concatenate(dequantized)
    error = got - real
    assert stats.count == real.size
    assert stats.sqnr_db == pytest.approx(10 * np.log10(np.sum(real**2) / np.sum(error**2)))
    per_channel = [10 * np.log10(np.sum(real[..., c] ** 2) / np.sum(error[..., c] ** 2)) for c in range(3)]
    assert stats.worst_channel_sqnr_db == pytest.approx(min(per_channel)) == pytest.approx(per_channel[2])
    assert stats.cosine == pytest.approx(np.sum(real * got) / np.sqrt(np.sum(real**2) * np.sum(got**2)))
    assert stats.rmse_over_scale == pytest.approx(np.sqrt(np.mean(error**2)) / scale)
    assert stats.max_abs_error == pytest.approx(np.max(np.abs(error)))
    assert (stats.low, stats.high) == pytest.approx((real.min(), real.max()))
    low, high = scale * (-128 - zero_point), scale * (127 - zero_point)
    outside = np.mean((real < low - scale / 2) | (real > high + scale / 2))
    assert outside > 0 and stats.clipped_fraction == pytest.approx(outside)
    on_grid = np.clip(np.round(real / scale) * scale, low, high)  # each float value on the tensor's own grid
    grid = [10 * np.log10(np.sum((real[..., c] - real[..., c].mean()) ** 2) / np.sum((on_grid - real)[..., c] ** 2))
            for c in range(3)]
    assert stats.worst_channel_grid_sqnr_db == pytest.approx(min(grid), rel=1e-4)
    assert not stats.collapsed

    lanes = [ErrorStats(scale=scale, zero_point=zero_point) for _ in range(2)]  # samples split, as lanes do
    lanes[0].add(references[0], stored_values[0], compiled)
    for real_part, stored_part in zip(references[1:], stored_values[1:]):
        lanes[1].add(real_part, stored_part, compiled)
    merged = ErrorStats.merged(lanes)
    assert merged.count == stats.count and merged.sums == pytest.approx(stats.sums)
    assert merged.max_abs_error == pytest.approx(stats.max_abs_error) and merged.low == pytest.approx(stats.low)

    stuck = ErrorStats(scale=scale, zero_point=zero_point)
    stuck.add(real.astype(np.float32), np.full(real.shape, 7, dtype=np.int8), compiled)
    assert stuck.collapsed

    as_floats = ErrorStats()  # a tensor the quantized model keeps in float: compared as is
    as_floats.add(real.astype(np.float32), got.astype(np.float32), compiled)
    assert as_floats.sqnr_db == pytest.approx(stats.sqnr_db, rel=1e-4)
    assert as_floats.rmse_over_scale is None and as_floats.clipped_fraction == 0


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.float32])
def test_the_numpy_and_the_compiled_pass_give_the_same_statistics(dtype):
    """Both passes on one stored type, over more rows than the compiled pass sums in one float32 block, with values
    clipped at both ends of the calibrated range: the same sums, extremes and clipped counts."""
    rng = np.random.default_rng(1)
    real = rng.normal(0, 3, size=(2, 700, 6)).astype(np.float32)
    real[:, :, 1] += 40  # a channel far off the calibrated range: clipped
    if dtype is np.float32:  # a tensor the quantized model keeps in float
        passes = [ErrorStats(), ErrorStats()]
        stored = (real + rng.normal(0, 0.01, size=real.shape)).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        scale, zero_point = 6 / (int(info.max) - int(info.min)), (int(info.max) + int(info.min) + 1) // 2
        passes = [ErrorStats(scale=scale, zero_point=zero_point, qmin=int(info.min), qmax=int(info.max))
                  for _ in range(2)]
        stored = np.clip(np.round(real / scale) + zero_point, info.min, info.max).astype(dtype)
    for sample in range(2):
        for stats, compiled in zip(passes, (False, True)):
            stats.add(real[sample], stored[sample], compiled)
    numpy_pass, compiled_pass = passes
    assert numpy_pass.count == compiled_pass.count == real.size
    assert numpy_pass.sums == pytest.approx(compiled_pass.sums, rel=1e-5, abs=1e-6)
    assert numpy_pass.clipped_fraction == compiled_pass.clipped_fraction
    assert (numpy_pass.clipped_fraction > 0) == (dtype is not np.float32)  # a float tensor has no range to clip to
    # The grid SQNR's variation is a difference of two large sums (the offset channel): float32 blocks round it apart.
    assert numpy_pass.worst_channel_grid_sqnr_db == pytest.approx(compiled_pass.worst_channel_grid_sqnr_db, rel=1e-4)


@pytest.fixture(scope="module")
def rgb_digits():
    """sklearn digits as raw 0..255 RGB images (digit, half digit, inverted digit), and a model that starts with
    its own Normalization layer, adapted and trained on the raw images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = digits.images / 16.0 * 255.0
    images = np.stack([raw, raw / 2, 255.0 - raw], axis=-1).astype(np.float32)
    keras.utils.set_random_seed(0)
    normalization = keras.layers.Normalization()
    normalization.adapt(images[:1400])
    model = keras.Sequential([keras.Input((8, 8, 3)), normalization,
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[:1400], digits.target[:1400], epochs=4, batch_size=64, verbose=0)
    normalised = (images - images[:1400].mean((0, 1, 2))) / images[:1400].std((0, 1, 2))
    return model, images, normalised.astype(np.float32), digits.target


@pytest.mark.code("QD510", "QD511")
@pytest.mark.slow
def test_float_model_at_chance_on_data_normalised_twice(rgb_digits):
    model, images, normalised, labels = rgb_digits
    report = qd.compare(model, images[:100], eval_data=normalised[1400:1500], labels=labels[1400:1500])
    cause = report.root_cause
    assert_finding(cause, "QD511", "accuracy", "error")
    assert cause.evidence["cause"] == "normalised_twice" and cause.evidence["score"] > 0.7
    assert abs(cause.evidence["data_mean"]) < 0.1 and cause.evidence["model_scale"][0] == pytest.approx(
        1 / images[:1400, ..., 0].std(), rel=0.01)
    assert "normalised twice" in cause.message
    failure = only(report, "QD510")
    assert_finding(failure, "QD510", "accuracy", "error")
    assert failure.evidence["float_accuracy"] < 0.2 and failure.evidence["quant_accuracy"] < 0.2
    assert "quantization is not the problem" in failure.message
    assert report.findings[:2] == [cause, failure]


@pytest.mark.code("QD510", "QD511")
@pytest.mark.slow
def test_float_model_predicting_one_class_without_labels(rgb_digits):
    model, images, normalised, _ = rgb_digits
    report = qd.compare(model, images[:100], eval_data=normalised[1400:1500])
    failure = only(report, "QD510")
    assert failure.evidence["one_class"] is not None and failure.evidence["float_accuracy"] is None
    assert "the float model predicts class" in failure.message and "and so does the quantized model" in failure.message
    assert failure.severity == "warning"  # without labels, one class may be the eval data's own
    cause = only(report, "QD511")
    assert cause.evidence["cause"] == "normalised_twice" and cause.severity == "warning"


@pytest.mark.code("QD510", "QD511")
@pytest.mark.slow
def test_swapped_channel_order_is_found(rgb_digits):
    model, images, _, labels = rgb_digits
    report = qd.compare(model, images[:100], eval_data=images[1400:1500, ..., ::-1], labels=labels[1400:1500])
    cause = only(report, "QD511")
    assert cause.evidence["cause"] == "channels_swapped" and cause.evidence["score"] > 0.7
    assert cause.fix.code.startswith("x = x[..., ::-1]")
    assert only(report, "QD510").evidence["variants_checked"]["channels_swapped"] == cause.evidence["score"]


@pytest.mark.code("QD510", "QD511")
@pytest.mark.slow
def test_eval_data_in_0_1_for_a_model_trained_on_0_255():
    """A model without its own normalisation, trained on raw pixels: fed 0..1, its BatchNormalization subtracts
    the mean of activations 255 times larger, and every input looks the same."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = (digits.images / 16.0 * 255.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3),
                              keras.layers.BatchNormalization(momentum=0.9), keras.layers.ReLU(),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(raw[:1400], digits.target[:1400], epochs=6, batch_size=64, verbose=0)
    report = qd.compare(model, raw[:100], eval_data=raw[1400:1500] / 255.0, labels=digits.target[1400:1500])
    cause = root(report)
    assert_finding(cause, "QD511", "accuracy", "error")
    assert cause.evidence["cause"] == "range_0_1" and "x = x * 255.0" in cause.fix.code
    assert only(report, "QD510").evidence["float_accuracy"] < 0.25
