"""fix's parts without converting: the transforms, the pairing rule, the plan, the registry, the script's defaults."""

from __future__ import annotations

import numpy as np
import pytest

from quantdoctor import catalog
from quantdoctor.catalog import mark_automatic
from quantdoctor.edits import transforms
from quantdoctor.edits.plan import Plan, Step, apply_data_steps, samples_through
from quantdoctor.fix.repairs import REPAIRS, assign_inputs, valid_tf_name
from quantdoctor.intake.data import from_generator
from quantdoctor.intake.recipe import Recipe
from quantdoctor.preflight.data_checks import InputSpec


def test_data_transforms_on_every_sample_form():
    array = np.ones((2, 3), np.float64)
    assert transforms.as_list(array)[0] is array
    assert transforms.as_list(("encode", {"x": array}))[0] == "encode"  # a signature sample stays as it is
    assert transforms.cast_to([array], {0: "float32"})[0].dtype == np.float32
    assert transforms.cast_to(("encode", {"x": array}), {"x": "int32"})[1]["x"].dtype == np.int32
    assert transforms.with_batch_axis({"x": array}, ("x",))["x"].shape == (1, 2, 3)
    assert list(transforms.keyed_by_input([array, array[0]], {0: "a", 1: "b"})) == ["a", "b"]
    assert not transforms.is_finite([np.array([np.nan])]) and transforms.is_finite([np.array([1], np.int64)])
    assert transforms.for_each_signature([array], {"encode": ["x"], "decode": ["y"]}) == [
        ("encode", {"x": array}), ("decode", {"y": array})]


def test_pairing_by_shape_is_made_only_when_one_pairing_fits():
    image, meta = InputSpec("image", (None, 8, 8, 3), "float32"), InputSpec("meta", (None, 4), "float32")
    assert assign_inputs({0: (1, 4), 1: (1, 8, 8, 3)}, [image, meta]) == {0: "meta", 1: "image"}
    assert assign_inputs({"img": (1, 8, 8, 3), "meta": (1, 4)}, [image, meta]) == {"meta": "meta", "img": "image"}
    twin = InputSpec("other", (None, 4), "float32")
    assert assign_inputs({0: (1, 4), 1: (1, 4)}, [meta, twin]) is None  # two inputs of one shape: ambiguous
    assert assign_inputs({0: (1, 4)}, [image, meta]) is None


def test_invalid_names_become_valid_unique_names():
    assert valid_tf_name("my features", set()) == "my_features"
    assert valid_tf_name("_private", set()) == "private"
    assert valid_tf_name("énergie", {"nergie"}) == "nergie_1"


def test_data_steps_run_in_order_and_an_expanding_step_stays_last():
    plan = Plan(Recipe.for_mode("int8"), None)
    plan.add_data_step(Step("QD315", "expand", "for_each_signature", ({"a": ["x"], "b": ["x"]},)))
    plan.add_data_step(Step("QD307", "filter", "is_finite"))
    plan.add_data_step(Step("QD201", "map", "cast_to", ({0: "float32"},)))
    assert [s.kind for s in plan.data_steps] == ["filter", "map", "expand"]
    items = [[np.array([[1.0]])], [np.array([[np.inf]])], [np.array([[2.0]])]]
    out = list(samples_through(items, plan.data_steps))
    assert [key for key, _ in out] == ["a", "b", "a", "b"] and out[0][1]["x"].dtype == np.float32
    calibration = apply_data_steps(from_generator(lambda: iter(items)), plan.data_steps)
    assert len(calibration) == 4 and calibration.samples[0].kind == "signature"
    assert Step("QD201", "map", "cast_to", ({0: "float32"},)).source("sample") == "cast_to(sample, {0: 'float32'})"


def test_every_repair_answers_a_catalog_code_and_marks_its_findings_automatic():
    assert set(REPAIRS) <= set(catalog.CHECKS)
    # The catalog's fix-availability fact and fix's registered repairs are one list.
    assert {code for code, check in catalog.CHECKS.items() if check.automatic_fix} == set(REPAIRS)
    cast, no_kernel = catalog.get("QD201").finding("x"), catalog.get("QD102").finding("y")
    assert [f.fix.automatic for f in mark_automatic([cast, no_kernel])] == [True, False]


def test_the_script_writes_only_settings_that_differ_from_a_new_converter():
    tf = pytest.importorskip("tensorflow")
    import keras

    from quantdoctor.intake.recipe import CONVERTER_FLAGS
    from quantdoctor.report.converter_code import CONVERTER_DEFAULTS

    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    assert {name: getattr(converter, name) for name in CONVERTER_FLAGS} == CONVERTER_DEFAULTS
