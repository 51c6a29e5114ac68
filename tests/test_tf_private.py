"""One test per hook of `quantdoctor.tf_private`: each fails loudly when TensorFlow moves what it wraps."""

from __future__ import annotations

import tensorflow as tf

from quantdoctor import tf_private


def test_quantization_aware_graph_is_the_converters_own_check():
    plain = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([1, 4], tf.float32))
    fake_quant = tf.function(lambda x: tf.quantization.fake_quant_with_min_max_args(x, -1.0, 1.0)) \
        .get_concrete_function(tf.TensorSpec([1, 4], tf.float32))
    assert tf_private.is_quantization_aware_graph(plain.graph.as_graph_def()) is False
    assert tf_private.is_quantization_aware_graph(fake_quant.graph.as_graph_def()) is True


def test_tf2_converter_is_told_from_the_tf1_one():
    function = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([1, 4], tf.float32))
    assert tf_private.is_tf2_converter(tf.lite.TFLiteConverter.from_concrete_functions([function], None))
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4])
        with tf.compat.v1.Session() as session:
            tf1 = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [x * 2.0])
    assert not tf_private.is_tf2_converter(tf1)


def test_tf1_only_converter_attributes_are_read_from_tensorflows_classes():
    names = tf_private.tf1_only_converter_attributes()
    assert {"inference_type", "quantized_input_stats", "default_ranges_stats", "change_concat_input_ranges",
            "reorder_across_fake_quant", "post_training_quantize", "target_ops"} <= set(names)
    assert not {"inference_input_type", "optimizations", "representative_dataset"} & set(names)
    # The two aliases are what the TF1 converter maps onto TF2-style settings.
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4])
        with tf.compat.v1.Session() as session:
            tf1 = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [x * 2.0])
    tf1.post_training_quantize = True
    assert tf1.optimizations == [tf.lite.Optimize.DEFAULT]
