"""Checks and reads on a ``processing.build_h5`` file that need no Keras.

Kept apart from ``training.data`` so commands can reject a bad file in a
clean one-line error before the (slow, chatty) deep-learning import.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

SPLITS = ("train", "val", "test")


class DatasetError(Exception):
    pass


def open_dataset(path) -> h5py.File:
    """Open and check a dataset file; DatasetError with a clear message if it is not one."""
    if not os.path.exists(path):
        raise DatasetError(f"dataset not found: {path} (build one with python -m processing.build_h5)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file ({exc}); rebuild it with processing.build_h5") from None
    missing = [k for k in ("images", "labels", "split") if k not in f]
    if missing:
        f.close()
        raise DatasetError(f"{path} lacks {', '.join(missing)}: not a finished processing.build_h5 dataset")
    return f


def split_indices(path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with open_dataset(path) as f:
        names = json.loads(f.attrs.get("split_names", json.dumps(SPLITS)))
        if split not in names:
            raise DatasetError(f"unknown split {split!r}; the file has {names}")
        idx = np.flatnonzero(f["split"][:] == names.index(split))
        return idx, f["labels"][:][idx]


def read_rows(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (sorted) as one array, reading each contiguous run as a slice."""
    out = np.empty((len(idx), *ds.shape[1:]), dtype=ds.dtype)
    if len(idx) == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(idx)]])
    for s, e in zip(starts, ends):
        ds.read_direct(out, np.s_[idx[s]:idx[s] + (e - s)], np.s_[s:e])
    return out
