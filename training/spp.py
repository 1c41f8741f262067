"""Spatial Pyramid Pooling for Keras 3 (He et al., 2014), written with ``keras.ops``.

For each pyramid level n the feature map is cut into n x n bins and each bin
is max-pooled, giving a fixed-length vector for any input height and width.
Bin i of n along a side of length L spans [floor(i*L/n), ceil((i+1)*L/n)), so
bins cover the whole map, may overlap by a pixel, and are never empty, even
when L < n. Bins are taken with masks rather than slices, so the same code
runs where shapes are only known at run time (TensorFlow graphs) and where
they are static (JAX).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="meme_recognition")
class SpatialPyramidPooling(keras.layers.Layer):
    """(batch, H, W, C) feature maps of any H, W -> (batch, C * sum(n*n for n in levels)).

    ``levels=(1, 2, 4)`` max-pools the whole map, its 2x2 and its 4x4 bins and
    concatenates them, so a dense head can follow a convolutional trunk that
    takes images of any size. Serialisable: round-trips through ``model.save``.
    """

    def __init__(self, levels=(1, 2, 4), **kwargs):
        super().__init__(**kwargs)
        self.levels = tuple(int(n) for n in levels)
        if not self.levels or min(self.levels) < 1:
            raise ValueError(f"levels must be positive integers, got {levels}")

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"expected (batch, height, width, channels) with known channels, got {input_shape}")
        self.channels = int(input_shape[-1])

    @staticmethod
    def _pool_axis(x, length, n: int, axis: int):
        """Max over n bins along ``axis`` (1 or 2); keeps that axis with size n."""
        positions = ops.arange(length)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        pooled = []
        for i in range(n):
            start = (i * length) // n
            end = ((i + 1) * length + n - 1) // n
            mask = ops.reshape(ops.logical_and(positions >= start, positions < end), shape)
            pooled.append(ops.max(ops.where(mask, x, float("-inf")), axis=axis, keepdims=True))
        return ops.concatenate(pooled, axis=axis)

    def call(self, inputs):
        shape = ops.shape(inputs)
        height, width = shape[1], shape[2]
        outputs = []
        for n in self.levels:
            rows = self._pool_axis(inputs, height, n, axis=1)
            cells = self._pool_axis(rows, width, n, axis=2)
            outputs.append(ops.reshape(cells, (-1, n * n * self.channels)))
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] * sum(n * n for n in self.levels))

    def get_config(self):
        return {**super().get_config(), "levels": list(self.levels)}
