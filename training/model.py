"""The classifiers. All take raw uint8 pixels of any size; scaling is inside.

* ``original``: the original project's network, layer for layer, for comparison.
* ``memenet``: four conv/BatchNorm stages learned from scratch, SPP head, dropout.
* ``lite0``: SPP-net's own design, a convolutional trunk pretrained on ImageNet
  (EfficientNet-Lite0, ``training.backbones``) under the SPP head, fine-tuned.
"""

from __future__ import annotations

import keras
from keras import layers

from . import ARCHS, canonical_arch
from .backbones import efficientnet_lite, imagenet
from .spp import SpatialPyramidPooling

TRUNK = "efficientnet_lite0"   # the pretrained trunk's layer name in a lite0 model


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


def lite0(levels=(1, 2, 4), dropout: float = 0.3, pretrained: bool = True) -> keras.Model:
    """The ImageNet-pretrained EfficientNet-Lite0 trunk -> SPP of its 1280-channel map -> dropout -> 2 classes.

    The trunk's input scaling is the first layer, so the model takes the same
    uint8 pixels as the others (and the HDF5 contract stays uint8). At 128 px the
    last map is 4 x 4 (one SPP bin per cell at the finest level); a side of 32 px
    gives a 1 x 1 map, which every pyramid level still pools.
    """
    inputs = keras.Input(shape=(None, None, 3), name="pixels")
    x = layers.Rescaling(1.0 / imagenet.STD, offset=-imagenet.MEAN / imagenet.STD, name="imagenet_scale")(inputs)
    trunk = efficientnet_lite.trunk(TRUNK)
    if pretrained:
        efficientnet_lite.load_imagenet_weights(trunk)
    x = trunk(x)
    x = SpatialPyramidPooling(levels)(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(2, activation="softmax", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="lite0")


def pretrained_trunk(model: keras.Model) -> keras.Model | None:
    """The pretrained trunk inside a classifier, None for a model learned from scratch."""
    return next((layer for layer in model.layers if layer.name == TRUNK), None)


def set_trunk_training(trunk: keras.Model, trainable: bool, train_bn: bool = False) -> None:
    """Freeze the trunk, or unfreeze it with its batch-norm layers kept frozen (``train_bn``: trained too).

    A frozen BatchNormalization runs in inference mode in Keras 3, so its
    ImageNet statistics are used, never re-estimated from the small CPU
    batches, whose mix of memes, 32-px pictures and synthesis is unlike ImageNet.
    """
    trunk.trainable = trainable
    for layer in trunk.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = trainable and train_bn


def build_model(arch: str, levels=(1, 2, 4)) -> keras.Model:
    """A fresh, uncompiled classifier: ``memenet``, ``original`` (``seed`` is accepted for it) or ``lite0``, its
    SPP head pooling the grids ``levels``."""
    arch = canonical_arch(arch)
    if arch == "original":
        return original_model(levels)
    if arch == "memenet":
        return memenet(levels)
    if arch == "lite0":
        return lite0(levels)
    raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHS}")
