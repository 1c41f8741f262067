"""Checks and reads on a ``processing.build_h5`` file that need no Keras.

Kept apart from ``training.data`` so commands can reject a bad file in a
clean one-line error before the (slow, chatty) deep-learning import.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from processing.files import MISSING, escape_name, not_regular
from processing.schema import LABEL_NAMES, MEME, NON_MEME, SPLIT_NAMES
from processing.transform import DEFAULT_FIT, FITS, canonical_fit


class DatasetError(Exception):
    pass


REBUILD = "rebuild it with python -m processing.build_h5"
# what h5py raises on a damaged file: OSError (a bad signature, a failed checksum), KeyError (a member whose
# object header is damaged), ValueError / RuntimeError (a damaged B-tree or heap)
H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError)


def damaged(path, exc: BaseException) -> DatasetError:
    """The one-line error for a file h5py cannot open or read, whatever the damage."""
    detail = str(exc).strip("'\"") or type(exc).__name__
    return DatasetError(f"{escape_name(str(path))} is damaged or not a dataset from processing.build_h5 ({detail}); "
                        f"{REBUILD}")


def open_dataset(path) -> h5py.File:
    """Open and check a dataset file; DatasetError with a one-line message naming the field if it is not one.

    Everything training and evaluation rely on is checked here, once, before
    any work (``check_structure``); the images are checked from their
    metadata only, so this stays cheap for big files.
    """
    name = escape_name(str(path))
    kind = not_regular(path) if str(path) else MISSING
    if kind == MISSING:
        raise DatasetError(f"dataset not found: {name} (build one with python -m processing.build_h5)")
    if kind:
        raise DatasetError(f"dataset {name} is {kind}, not an HDF5 file: give the file processing.build_h5 wrote")
    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise damaged(path, exc) from None
    try:
        missing = [k for k in ("images", "labels", "split") if k not in f]
        if missing:
            raise DatasetError(f"{name} lacks {', '.join(missing)}: not a finished processing.build_h5 dataset")
        check_structure(f)
    except DatasetError:
        f.close()
        raise
    except H5_ERRORS as exc:   # a file damaged past its superblock: h5py fails while reading
        f.close()
        raise damaged(path, exc) from None
    return f


def _describe(obj) -> str:
    """What a member of the file is, for an error message: ``(12,) uint8``, ``a group``."""
    if isinstance(obj, h5py.Dataset):
        return f"{obj.shape} {obj.dtype}"
    return "a group" if isinstance(obj, h5py.Group) else f"a {type(obj).__name__}"


def _is_integer(obj) -> bool:
    return isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iu"


def check_structure(f: h5py.File) -> None:
    """DatasetError naming the file and the field unless ``images`` is (N, H, W, 3) uint8 with H, W >= 1,
    ``labels`` N integers 0/1, ``split`` N integers indexing the split names, and the attributes parse."""
    name = escape_name(f.filename)
    images = f["images"]
    if not (isinstance(images, h5py.Dataset) and images.ndim == 4 and images.shape[3] == 3
            and images.dtype == np.uint8 and min(images.shape[1:3]) >= 1):
        raise DatasetError(f"{name}: images is {_describe(images)}, expected (N, H, W, 3) uint8; {REBUILD}")
    n = images.shape[0]
    names = split_names(f)
    fit = f.attrs.get("fit", DEFAULT_FIT)
    if not isinstance(fit, str) or canonical_fit(fit) not in FITS:
        shown = repr(fit) if isinstance(fit, str) else str(fit)
        raise DatasetError(f"{name}: the fit attribute is {shown}, expected one of {', '.join(FITS)}; {REBUILD}")
    allowed = {"labels": (NON_MEME, MEME), "split": tuple(range(len(names)))}
    meaning = {"labels": ", ".join(f"{v} ({LABEL_NAMES[v]})" for v in allowed["labels"]),
               "split": ", ".join(f"{v} ({s})" for v, s in enumerate(names))}
    for key in ("labels", "split"):
        ds = f[key]
        if not (_is_integer(ds) and ds.ndim == 1 and ds.shape[0] == n):
            raise DatasetError(f"{name}: {key} is {_describe(ds)}, expected ({n},) integers (one per image); "
                               f"{REBUILD}")
        values = ds[:]
        bad = np.flatnonzero(~np.isin(values, allowed[key]))
        if len(bad):
            raise DatasetError(f"{name}: {key} holds {values[bad[0]]} (row {bad[0]}), expected only "
                               f"{meaning[key]}; {REBUILD}")


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
    """The split names a dataset file declares (files from before the attribute: the schema's).

    DatasetError if the ``split_names`` attribute is not a JSON list of distinct names."""
    raw = f.attrs.get("split_names")
    if raw is None:
        return list(SPLIT_NAMES)
    try:
        names = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        names = None
    if not (isinstance(names, list) and names and all(isinstance(s, str) and s for s in names)
            and len(set(names)) == len(names)):
        shown = raw if len(str(raw)) <= 80 else f"{str(raw)[:80]}..."
        raise DatasetError(f"{escape_name(f.filename)}: the split_names attribute is {shown!r}, expected a JSON "
                           f"list of names such as {json.dumps(SPLIT_NAMES)}; {REBUILD}")
    return names


def split_indices(path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with open_dataset(path) as f:
        names = split_names(f)
        if split not in names:
            raise DatasetError(f"unknown split {split!r}; the file has {names}")
        idx = np.flatnonzero(f["split"][:] == names.index(split))
        return idx, f["labels"][:][idx]


MAX_GAP = 8  # read through gaps this small (rows of other splits) rather than start a new read


def read_sources(path, rows: np.ndarray) -> list[str]:
    """The ``source`` of rows ``rows``; a missing or damaged column is the one-line DatasetError."""
    with open_dataset(path) as f:
        if "source" not in f:
            raise DatasetError(f"{path} has no source column (the picture's origin, by which sources and families "
                               "are told apart): rebuild it with processing.build_h5")
        try:
            return [s.decode() for s in f["source"][:][rows]]
        except H5_ERRORS as exc:   # UnicodeDecodeError is a ValueError
            raise damaged(path, exc) from None


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
    try:
        for run in np.split(np.arange(len(idx)), breaks):
            first, last = idx[run[0]], idx[run[-1]]
            if last - first + 1 == len(run):
                ds.read_direct(out, np.s_[first:last + 1], np.s_[run[0]:run[-1] + 1])
            else:
                out[run] = ds[first:last + 1][idx[run] - first]
    except H5_ERRORS as exc:   # a damaged chunk, or one whose Fletcher-32 checksum fails
        raise damaged(ds.file.filename, exc) from None
    return out
