"""Tensors out of PyTorch's legacy (non-zip) ``.pth`` files, with numpy alone and no code run.

A legacy file is five pickles and raw bytes, one after another: a magic
number, the format version, a little header of type sizes, the object itself
(here a ``state_dict``: an ``OrderedDict`` of tensors whose storages are
pickled by reference, as "persistent ids"), the list of storage keys, then each
storage's element count (8 bytes, little-endian) and data in that order.

Unpickling is the dangerous part: a pickle may name any callable and call it.
``_Restricted`` resolves exactly the names a tensor dictionary needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` mapped onto a
local function that makes a numpy view, and the typed storage classes mapped
onto numpy dtypes); any other name is refused and nothing from ``torch`` is
imported. Every way a file can fail to be such a dictionary is a
``WeightsError`` with one line.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C   # torch.serialization.MAGIC_NUMBER
PROTOCOL_VERSION = 1001                 # torch.serialization.PROTOCOL_VERSION
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class WeightsError(ValueError):
    """A file that is not a legacy PyTorch tensor dictionary this reader accepts; one line."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


class _Storage:
    def __init__(self, dtype, numel: int):
        self.dtype, self.numel = np.dtype(dtype), int(numel)
        self.data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    """A tensor before its storage's bytes are read: a strided view into it."""
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise WeightsError("a tensor's storage is missing from the file")
        if self.shape and min(self.shape) == 0:
            return np.zeros(self.shape, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if last >= len(data):
            raise WeightsError("a tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.shape,
                                               [s * data.itemsize for s in self.stride], writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stands in for ``torch._utils._rebuild_tensor_v2`` (requires_grad, hooks and metadata are irrelevant)."""
    if not (isinstance(storage, _Storage) and isinstance(storage_offset, int)
            and all(isinstance(v, int) and v >= 0 for v in (storage_offset, *size, *stride))
            and len(size) == len(stride)):
        raise WeightsError("a tensor record is malformed")
    if math.prod(size) > storage.numel:   # an expanded (stride 0) view: weights are never saved so
        raise WeightsError("a tensor has more elements than its storage")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


class _Restricted(pickle.Unpickler):
    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
               **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()}}

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(f"it refers to {module}.{name}, which a file of weights has no need of "
                               f"(refused: unpickling it could run code)") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[4], int) and pid[4] >= 0):
            raise WeightsError(f"a storage reference is malformed: {str(pid)[:60]}")
        key = str(pid[2])
        storage = self.storages.setdefault(key, _Storage(pid[1].dtype, pid[4]))
        if storage.dtype != np.dtype(pid[1].dtype) or storage.numel != pid[4]:
            raise WeightsError(f"storage {key} is declared twice with different types or sizes")
        return storage


def _flatten(obj, prefix: str = ""):
    """(name, tensor ref) of a possibly nested dictionary of tensors."""
    if isinstance(obj, _TensorRef):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (int, float)):   # e.g. a scalar hyper-parameter saved beside the tensors
        return
    else:
        raise WeightsError(f"{prefix or 'the file'} holds a {type(obj).__name__}, not tensors")


def read_state_dict(data: bytes) -> dict[str, np.ndarray]:
    """Name -> numpy array of a legacy ``torch.save(state_dict)`` file's bytes; ``WeightsError`` otherwise."""
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}
    try:
        header = [_Restricted(f, storages).load() for _ in range(3)]
        if header[0] != MAGIC_NUMBER:
            raise WeightsError("it is not a legacy PyTorch file (no magic number; a zip-format file "
                               "is not read here)")
        if header[1] != PROTOCOL_VERSION:
            raise WeightsError(f"its format version is {header[1]!r}, not {PROTOCOL_VERSION}")
        tensors = dict(_flatten(_Restricted(f, storages).load()))
        keys = _Restricted(f, storages).load()
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError,
            RecursionError, MemoryError, OverflowError) as exc:
        raise WeightsError(f"it is not a PyTorch tensor file ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise WeightsError("its list of storages does not match the tensors")
    for key in keys:
        storage = storages[str(key)]
        count = int.from_bytes(f.read(8), "little")
        raw = f.read(min(count, storage.numel) * storage.dtype.itemsize)
        if count != storage.numel or len(raw) != storage.numel * storage.dtype.itemsize:
            raise WeightsError(f"storage {key} is truncated or of the wrong size")
        storage.data = np.frombuffer(raw, storage.dtype)
    return {name: ref.materialise() for name, ref in tensors.items()}


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``read_state_dict`` of a file; ``WeightsError`` names the file."""
    try:
        return read_state_dict(Path(path).read_bytes())
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
