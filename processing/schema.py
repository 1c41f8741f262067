"""The data contract between the builder, training and the service, in one place.

Every module that needs the input size, the label or split names, the default
decision threshold or the HDF5 file's attributes takes them from here.
"""

from __future__ import annotations

import json
import time

from . import __version__

SCHEMA_VERSION = 1
INPUT_SIZE = 128                     # side of the square uint8 tensors in the dataset
TINY_SIZE = 32                       # CIFAR-style pictures, upsampled x4 to INPUT_SIZE
MIN_SIDE, MAX_SIDE = 32, 512         # build_h5 --side: a multiple of TINY_SIZE in this range
NON_MEME, MEME = 0, 1
LABEL_NAMES = ("non_meme", "meme")   # index = label value
SPLIT_NAMES = ("train", "val", "test")   # index = split code in the ``split`` dataset
DEFAULT_THRESHOLD = 0.5              # meme probability at or above which an image is called a meme
TOOL_VERSION = f"meme-recognition {__version__}"


def label_name(label: int) -> str:
    return LABEL_NAMES[int(label)]


def predicted_label(probability: float, threshold: float) -> str:
    return LABEL_NAMES[MEME] if probability >= threshold else LABEL_NAMES[NON_MEME]


def dataset_attrs(*, fit: str, params: dict, counts: dict, extra: dict | None = None) -> dict:
    """The attributes of a finished dataset file, for one-piece and sharded builds alike."""
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "label_names": json.dumps(LABEL_NAMES),
        "split_names": json.dumps(SPLIT_NAMES),
        "fit": fit,
        "params": json.dumps(params, sort_keys=True),
        "counts": json.dumps(counts, sort_keys=True),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool_version": TOOL_VERSION,
    }
    for key, value in (extra or {}).items():
        attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value, sort_keys=True)
    return attrs
