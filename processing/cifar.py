"""Read CIFAR-100 from the official ``cifar-100-python.tar.gz`` without trusting its pickle or holding its pixels.

The archive holds Python pickles. We check the published MD5 before opening
it and unpickle with an allow-list that admits only what a CIFAR batch is made
of (a dict of lists, bytes and one NumPy array), so a tampered file cannot run
code.

Memory stays flat in the number of pictures: each batch is copied from the
tarball to a spool file on disk, and the unpickler skips over the pixel array's
bytes instead of reading them (the official pickles store them as one raw
string), remembering where they start. A ``PixelRef`` then names one picture
by file and offset; whoever prepares it reads its 3,072 bytes.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .cliutil import file_digest
from .files import MISSING, escape_name, not_regular
from .schema import TINY_SIZE

CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
MEMBERS = ("cifar-100-python/train", "cifar-100-python/test")
PICTURE_BYTES = 3 * TINY_SIZE * TINY_SIZE      # one row of a batch's ``data``: 1,024 red, then green, then blue
SPOOL_ABOVE = 1 << 20                           # raw strings at least this long are skipped, not read

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class CifarError(Exception):
    pass


@dataclass(frozen=True)
class PixelRef:
    """One 32x32 picture inside a spooled batch: ``PICTURE_BYTES`` at ``offset`` of ``path``."""
    path: str
    offset: int

    def read(self) -> np.ndarray:
        """The picture as (32, 32, 3) uint8, read with one ``pread`` (in whichever process prepares it)."""
        fd = _SPOOL_FDS.get(self.path)
        if fd is None:
            fd = _SPOOL_FDS[self.path] = os.open(self.path, os.O_RDONLY)
        data = os.pread(fd, PICTURE_BYTES, self.offset)
        if len(data) != PICTURE_BYTES:
            raise OSError(f"CIFAR spool {self.path} ends before byte {self.offset + PICTURE_BYTES}")
        return np.frombuffer(data, np.uint8).reshape(3, TINY_SIZE, TINY_SIZE).transpose(1, 2, 0)


_SPOOL_FDS: dict[str, int] = {}   # one descriptor per spool file per process


def close_spools() -> None:
    """Close this process's spool descriptors (before the spool folder goes)."""
    while _SPOOL_FDS:
        os.close(_SPOOL_FDS.popitem()[1])


@dataclass(frozen=True)
class _Spooled:
    """A raw string left in the file: ``length`` bytes at ``offset``."""
    offset: int
    length: int


class _Array:
    """What the pickle's NumPy array becomes: its shape and dtype, its bytes in memory or left in the file."""

    def __init__(self, *_args):
        self.shape, self.dtype, self.raw = (), None, None

    def __setstate__(self, state):
        _version, self.shape, self.dtype, _fortran, self.raw = state


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (its opcode table can be extended) with an allow-list and spooled strings.

    Below protocol 4 a pickle has no frames, so a long raw string's bytes sit in
    the file right after its length: we note where and seek past them.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BufferedReader):
        super().__init__(file, encoding="bytes")
        self._spool = file
        self._spool_size = os.fstat(file.fileno()).st_size

    def find_class(self, module: str, name: str):
        if (module, name) in _RECONSTRUCT:
            return _Array
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global in CIFAR pickle: {module}.{name}")

    def _raw_string(self, length_format: str) -> None:
        (length,) = struct.unpack(length_format, self.read(struct.calcsize(length_format)))
        if length < 0:
            raise pickle.UnpicklingError("negative string length")
        if length < SPOOL_ABOVE or self.proto >= 4:
            self.append(self.read(length))
            return
        offset = self._spool.tell()
        if offset + length > self._spool_size:
            raise pickle.UnpicklingError(f"a {length}-byte string runs past the end of the pickle")
        self._spool.seek(length, io.SEEK_CUR)
        self.append(_Spooled(offset, length))

    dispatch[pickle.BINSTRING[0]] = lambda self: self._raw_string("<i")    # Python 2's str (the official files)
    dispatch[pickle.BINBYTES[0]] = lambda self: self._raw_string("<I")     # Python 3's bytes, protocol 3


def _pixel_offsets(spool: Path, name: str) -> tuple[int, int]:
    """(offset of the first picture, number of pictures) in a spooled batch."""
    with open(spool, "rb") as fh:
        try:
            batch = _RestrictedUnpickler(fh).load()
        except pickle.UnpicklingError:
            raise
        except Exception as exc:   # a corrupt pickle can break any opcode of the unpickler, in any way
            raise pickle.UnpicklingError(f"{type(exc).__name__}: {exc}") from None
    array = batch.get(b"data") if isinstance(batch, dict) else None
    if not isinstance(array, _Array):
        raise ValueError(f"{name} has no pixel array 'data'")
    if np.dtype(array.dtype) != np.uint8 or len(array.shape) != 2 or array.shape[1] != PICTURE_BYTES:
        raise ValueError(f"{name}: 'data' is {array.dtype} {array.shape}, expected uint8 (N, {PICTURE_BYTES})")
    count = int(array.shape[0])
    length = array.raw.length if isinstance(array.raw, _Spooled) else len(array.raw)
    if length != count * PICTURE_BYTES:
        raise ValueError(f"{name}: 'data' holds {length} bytes for {count} pictures")
    if isinstance(array.raw, _Spooled):
        return array.raw.offset, count
    with open(spool, "ab") as fh:   # a short batch, or bytes pickled the Python-3 protocol-2 way: held, then spooled
        offset = fh.tell()
        fh.write(array.raw)
    return offset, count


def iter_cifar100(path: str | Path, count: int, spool_dir: str | Path,
                  expected_md5: str = CIFAR100_MD5) -> Iterator[tuple[str, PixelRef]]:
    """Up to ``count`` pictures as (id, ``PixelRef``): the train batch first ("train:17"), then the test batch.

    The batches are spooled into ``spool_dir``, which must outlive the refs.
    Raises CifarError for a missing, altered or malformed archive, before the
    first picture.
    """
    path = Path(path)
    name = escape_name(str(path))
    kind = not_regular(path)
    if kind == MISSING:
        raise CifarError(f"CIFAR archive not found: {name} (download cifar-100-python.tar.gz, see datasets/cifar100.md)")
    if kind:
        raise CifarError(f"CIFAR archive {name} is {kind}, not a regular file: give the .tar.gz")
    actual = file_digest(path, "md5")
    if expected_md5 and actual != expected_md5.lower():
        raise CifarError(f"CIFAR archive {name} has MD5 {actual}, expected {expected_md5}: re-download it")
    batches: list[tuple[str, str, int, int]] = []   # (split, spool file, first offset, pictures taken)
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in MEMBERS:
                left = count - sum(taken for *_, taken in batches)
                if left <= 0:
                    break
                fh = tar.extractfile(member)
                if fh is None:
                    raise CifarError(f"{name} has no member {member}")
                split = member.rsplit("/", 1)[1]
                spool = Path(spool_dir) / f"cifar-{split}.pickle"
                with open(spool, "wb") as out:
                    shutil.copyfileobj(fh, out, 1 << 20)
                offset, n = _pixel_offsets(spool, member)
                batches.append((split, str(spool), offset, min(n, left)))
    except (tarfile.TarError, KeyError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            struct.error) as exc:
        raise CifarError(f"CIFAR archive {name} is not in the official format: {exc}") from None
    for split, spool, offset, taken in batches:
        for i in range(taken):
            yield f"{split}:{i}", PixelRef(spool, offset + i * PICTURE_BYTES)


def write_cifar100_tarball(path: str | Path, images: np.ndarray, test_images: np.ndarray | None = None) -> str:
    """Write a tarball in the official layout (for tests and the demo corpus); return its MD5.

    Protocol 3 stores the pixels as one raw string, as the official Python 2 pickles do.
    """
    path = Path(path)

    def batch(imgs: np.ndarray) -> bytes:
        n = len(imgs)
        return pickle.dumps({
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            b"batch_label": b"training batch 1 of 1",
            b"fine_labels": [i % 100 for i in range(n)],
            b"coarse_labels": [i % 20 for i in range(n)],
            b"data": np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(n, PICTURE_BYTES)),
        }, protocol=3)

    members = {"cifar-100-python/train": batch(images),
               "cifar-100-python/test": batch(test_images if test_images is not None else images[:0])}
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return file_digest(path, "md5")
