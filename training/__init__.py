"""Train, evaluate and apply the any-size meme classifier (Keras 3, any backend)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console

ARCHS = ("memenet", "original")          # see training.model
DEPRECATED_ARCHS = {"seed": "original"}  # the original network's old name, still accepted


def canonical_arch(name: str) -> str:
    return DEPRECATED_ARCHS.get(name, name)
