"""Optimizers that train some variables at a multiple of the learning rate (a head beside a pretrained trunk).

Keras 3 optimizers take one learning rate; these wrap Adam, AdamW and SGD so
that the variables named in ``scaled_paths`` update at ``path_scale`` times
it. The scale is applied to the step size, not to the gradient (Adam's step
does not change when a gradient is scaled). Registered, so a checkpoint
with its optimizer state loads back (``--resume``).
"""

from __future__ import annotations

import keras


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
