"""The classifiers. Both take raw uint8 pixels of any size; scaling is inside.

* ``original``: the original project's network, layer for layer, for comparison.
* ``memenet`` (default): four conv/BatchNorm stages, SPP head, dropout.
"""

from __future__ import annotations

import keras
from keras import layers

from . import ARCHS, canonical_arch
from .spp import SpatialPyramidPooling


def original_model(levels=(1, 2, 4)) -> keras.Model:
    inputs = keras.Input(shape=(None, None, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for i, (filters, kernel) in enumerate([(4, 8), (8, 7), (16, 6), (32, 5), (64, 4)]):
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu")(x)
        if i < 4:
            x = layers.MaxPooling2D(2)(x)
    x = SpatialPyramidPooling(levels)(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="original")


def memenet(levels=(1, 2, 4), widths=(32, 64, 128, 256), dropout: float = 0.3) -> keras.Model:
    inputs = keras.Input(shape=(None, None, 3), name="pixels")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    for filters in widths:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(widths[-1], 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = SpatialPyramidPooling(levels)(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="memenet")


def build_model(arch: str) -> keras.Model:
    """A fresh, uncompiled classifier: ``memenet`` or ``original`` (``seed`` is accepted for the latter)."""
    arch = canonical_arch(arch)
    if arch == "original":
        return original_model()
    if arch == "memenet":
        return memenet()
    raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHS}")
