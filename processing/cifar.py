"""Read CIFAR-100 from the official ``cifar-100-python.tar.gz`` without trusting its pickle.

The archive holds Python pickles. We check the published MD5 before opening
it and unpickle with an allow-list that admits only what a CIFAR batch is made
of (a dict of lists, bytes and one NumPy array), so a tampered file cannot run
code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .cliutil import file_digest

CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
MEMBERS = ("cifar-100-python/train", "cifar-100-python/test")

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class CifarError(Exception):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global in CIFAR pickle: {module}.{name}")


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def load_cifar100(path: str | Path, count: int, expected_md5: str = CIFAR100_MD5) -> tuple[np.ndarray, list[str]]:
    """Return up to ``count`` images as (N, 32, 32, 3) uint8 and their ids ("train:17").

    Images come from the train batch first, then the test batch.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarError(f"CIFAR archive not found: {path} (download cifar-100-python.tar.gz, see datasets/cifar100.md)")
    actual = file_md5(path)
    if expected_md5 and actual != expected_md5.lower():
        raise CifarError(f"CIFAR archive {path} has MD5 {actual}, expected {expected_md5}: re-download it")
    images, ids = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in MEMBERS:
                if sum(len(x) for x in images) >= count:
                    break
                fh = tar.extractfile(member)
                if fh is None:
                    raise CifarError(f"{path} has no member {member}")
                # unpickled straight from the member's stream (no second copy of its bytes); only the pixel
                # array is kept, as a view: a 50,000-picture batch is held once
                data = np.asarray(_RestrictedUnpickler(fh, encoding="bytes").load()[b"data"], dtype=np.uint8)
                take = min(len(data), count - sum(len(x) for x in images))
                images.append(data[:take].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                del data
                split = member.rsplit("/", 1)[1]
                ids.extend(f"{split}:{i}" for i in range(take))
    except (tarfile.TarError, KeyError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CifarError(f"CIFAR archive {path} is not in the official format: {exc}") from None
    if not images:
        return np.zeros((0, 32, 32, 3), np.uint8), ids
    return (images[0] if len(images) == 1 else np.concatenate(images)), ids


def write_cifar100_tarball(path: str | Path, images: np.ndarray, test_images: np.ndarray | None = None) -> str:
    """Write a tarball in the official layout (for tests and the demo corpus); return its MD5."""
    path = Path(path)

    def batch(imgs: np.ndarray) -> bytes:
        n = len(imgs)
        return pickle.dumps({
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            b"batch_label": b"training batch 1 of 1",
            b"fine_labels": [i % 100 for i in range(n)],
            b"coarse_labels": [i % 20 for i in range(n)],
            b"data": np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(n, 3072)),
        }, protocol=2)

    members = {"cifar-100-python/train": batch(images),
               "cifar-100-python/test": batch(test_images if test_images is not None else images[:0])}
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return file_md5(path)
