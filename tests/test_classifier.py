"""training.classifier: the native-size input rule walks into nested models and counts depthwise convolutions."""

from __future__ import annotations

import numpy as np
import pytest

from processing.reasons import UNSUPPORTED_SIZE, Rejected
from training.classifier import min_native_side, native_input


def nested_model():
    """A trunk built as its own keras.Model (Conv2D then DepthwiseConv2D, both valid, stride 2), used as one layer."""
    import keras

    from training.spp import SpatialPyramidPooling

    trunk_in = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid")(trunk_in)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid")(x)
    trunk = keras.Model(trunk_in, x, name="trunk")
    inputs = keras.Input((None, None, 3))
    x = keras.layers.MaxPooling2D(2)(trunk(inputs))
    x = SpatialPyramidPooling((1, 2))(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def test_min_native_side_walks_a_nested_trunk_and_counts_depthwise_convolutions():
    model = nested_model()
    # backwards: pool 2/2 needs 2; depthwise 3/2 needs (2-1)*2+3 = 5; conv 3/2 needs (5-1)*2+3 = 11
    assert min_native_side(model) == 11
    # the rule is the real one: 11 pixels give a 1x1 map, 10 none (Keras refuses to pool the trunk's 1x1)
    trunk, pool = model.layers[1], model.layers[2]
    assert pool.compute_output_shape(trunk.compute_output_shape((1, 11, 11, 3)))[1:3] == (1, 1)
    with pytest.raises(ValueError, match="zero or negative"):
        pool.compute_output_shape(trunk.compute_output_shape((1, 10, 10, 3)))


def test_native_input_refuses_an_image_thinner_than_the_nested_model_needs():
    need = min_native_side(nested_model())
    assert native_input(np.zeros((need, 40, 3), np.uint8), 1024, need).shape == (need, 40, 3)
    with pytest.raises(Rejected) as info:
        native_input(np.zeros((need - 1, 40, 3), np.uint8), 1024, need)
    assert info.value.reason == UNSUPPORTED_SIZE
