"""Checks and reads on a ``processing.build_h5`` file that need no Keras.

Kept apart from ``training.data`` so commands can reject a bad file in a
clean one-line error before the (slow, chatty) deep-learning import.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from processing.schema import LABEL_NAMES, SPLIT_NAMES


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


def untrainable(labels: np.ndarray, split: np.ndarray, split_names=SPLIT_NAMES) -> str | None:
    """Why a dataset cannot train a classifier (no rows, one class in train, an empty val or test), or None."""
    if len(labels) == 0:
        return "no rows (every input was skipped; its .summary.json says why): nothing to train on"
    counts = {name: np.bincount(labels[split == code], minlength=len(LABEL_NAMES))
              for code, name in enumerate(split_names)}
    train = counts[split_names[0]]
    if np.count_nonzero(train) < len(LABEL_NAMES):
        have = ", ".join(f"{n} {LABEL_NAMES[i]}" for i, n in enumerate(train))
        return (f"the train split has only one class ({have}): a classifier needs both memes and non-memes; "
                "add the missing class (--memes / --non-memes / --tiny / --cifar) and rebuild")
    for name in split_names[1:]:
        if counts[name].sum() == 0:
            return f"the {name} split is empty: rebuild with more inputs or other --split fractions"
    return None


def split_names(f: h5py.File) -> list[str]:
    """The split names a dataset file declares (files from before the attribute: the schema's)."""
    return json.loads(f.attrs.get("split_names", json.dumps(SPLIT_NAMES)))


def split_indices(path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with open_dataset(path) as f:
        names = split_names(f)
        if split not in names:
            raise DatasetError(f"unknown split {split!r}; the file has {names}")
        idx = np.flatnonzero(f["split"][:] == names.index(split))
        return idx, f["labels"][:][idx]


MAX_GAP = 8  # read through gaps this small (rows of other splits) rather than start a new read


def read_rows(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (sorted) as one array.

    Indices are grouped into runs whose gaps are at most MAX_GAP rows; each
    run is one slice read (h5py fancy indexing is far slower), from which the
    wanted rows are taken.
    """
    out = np.empty((len(idx), *ds.shape[1:]), dtype=ds.dtype)
    if len(idx) == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) > MAX_GAP) + 1
    for run in np.split(np.arange(len(idx)), breaks):
        first, last = idx[run[0]], idx[run[-1]]
        if last - first + 1 == len(run):
            ds.read_direct(out, np.s_[first:last + 1], np.s_[run[0]:run[-1] + 1])
        else:
            out[run] = ds[first:last + 1][idx[run] - first]
    return out
