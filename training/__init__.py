"""Train, evaluate and apply the any-size meme classifier (Keras 3, any backend)."""

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the console

ARCHS = ("memenet", "original", "lite0")  # see training.model
DEFAULT_ARCH = "lite0"   # of training.run and make demo: the report's comparison, README "Results"
DEPRECATED_ARCHS = {"seed": "original"}  # the original network's old name, still accepted


def canonical_arch(name: str) -> str:
    return DEPRECATED_ARCHS.get(name, name)


def folder_arg(text: str) -> Path:
    """argparse type of an output folder: not empty (``Path("")`` is the current folder, which run --overwrite
    and demo would replace)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return Path(text)
