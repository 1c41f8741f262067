"""Optimizers that train some variables at a multiple of the learning rate (a head beside a pretrained trunk),
and the loss with label smoothing for integer labels.

Keras 3 optimizers take one learning rate; these wrap Adam, AdamW and SGD so
that the variables named in ``scaled_paths`` update at ``path_scale`` times
it. The scale is applied to the step size, not to the gradient (Adam's step
does not change when a gradient is scaled). Registered, so a checkpoint
with its optimizer state loads back (``--resume``). Keras' sparse cross-entropy
has no label smoothing: ``SmoothedSparseCrossentropy`` is the categorical one
on one-hot labels moved ``smoothing`` towards uniform.
"""

from __future__ import annotations

import keras
from keras import ops


def _scaled(base: type) -> type:
    class Scaled(base):
        def __init__(self, *args, scaled_paths=(), path_scale: float = 1.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.scaled_paths = frozenset(scaled_paths)
            self.path_scale = float(path_scale)

        def build(self, variables):
            super().build(variables)
            self._scaled_indices = {i for i, v in enumerate(variables) if v.path in self.scaled_paths}

        def update_step(self, gradient, variable, learning_rate):
            # the backend's own variable may stand in for the Keras one (TensorFlow): found by its index
            if self._get_variable_index(variable) in self._scaled_indices:
                learning_rate = learning_rate * self.path_scale
            super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {**super().get_config(), "scaled_paths": sorted(self.scaled_paths), "path_scale": self.path_scale}

    Scaled.__name__ = Scaled.__qualname__ = f"Scaled{base.__name__}"
    return keras.saving.register_keras_serializable(package="meme_recognition")(Scaled)


OPTIMIZERS = {"adam": _scaled(keras.optimizers.Adam), "adamw": _scaled(keras.optimizers.AdamW),
              "sgd": _scaled(keras.optimizers.SGD)}


def make_optimizer(name: str, lr: float, scaled_paths=(), path_scale: float = 1.0):
    """``name`` (adam, adamw, sgd: Nesterov momentum 0.9) at ``lr``; ``scaled_paths`` at ``path_scale`` x ``lr``."""
    extra = {"momentum": 0.9, "nesterov": True} if name == "sgd" else {}
    return OPTIMIZERS[name](lr, scaled_paths=scaled_paths, path_scale=path_scale, **extra)


@keras.saving.register_keras_serializable(package="meme_recognition")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of softmax outputs against integer labels, the one-hot targets smoothed:
    ``(1 - smoothing) * one_hot + smoothing / classes``."""

    def __init__(self, smoothing: float = 0.0, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), classes, dtype=y_pred.dtype)
        target = one_hot * (1.0 - self.smoothing) + self.smoothing / classes
        return keras.losses.categorical_crossentropy(target, y_pred)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


def make_loss(smoothing: float):
    """Keras' sparse cross-entropy, or with ``smoothing`` > 0 the smoothed one."""
    return SmoothedSparseCrossentropy(smoothing) if smoothing else "sparse_categorical_crossentropy"
