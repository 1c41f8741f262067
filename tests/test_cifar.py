import io
import os
import pickle
import pickletools
import tarfile

import numpy as np
import pytest

from processing import cifar
from processing.cifar import CifarError, iter_cifar100, write_cifar100_tarball


def load(path, count, spool, md5=cifar.CIFAR100_MD5):
    ids, refs = zip(*iter_cifar100(path, count, spool, md5)) if count else ((), ())
    return np.stack([r.read() for r in refs]) if refs else np.zeros((0, 32, 32, 3), np.uint8), list(ids)


def tarball(path, payloads: dict) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in payloads.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return cifar.file_digest(path, "md5")


def as_python2(payload: bytes) -> bytes:
    """A protocol-3 pickle rewritten the way Python 2's cPickle wrote the official files (str, not bytes)."""
    out, ops = bytearray(), list(pickletools.genops(payload))
    for (op, arg, pos), nxt in zip(ops, [*(o[2] for o in ops[1:]), len(payload)]):
        raw = payload[pos:nxt]
        if op.name == "PROTO":
            raw = b"\x80\x02"
        elif op.name in ("SHORT_BINBYTES", "BINBYTES"):
            raw = (b"U" if op.name == "SHORT_BINBYTES" else b"T") + raw[1:]
        out += raw
    return bytes(out)


def batch(images: np.ndarray, protocol: int) -> bytes:
    return pickle.dumps({b"batch_label": b"x", b"fine_labels": list(range(len(images))),
                         b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy()},
                        protocol=protocol)


def test_roundtrip_train_then_test(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    md5 = write_cifar100_tarball(tmp_path / "c.tar.gz", train, test)
    images, ids = load(tmp_path / "c.tar.gz", 7, tmp_path, md5)
    assert images.shape == (7, 32, 32, 3)
    assert np.array_equal(images[:5], train) and np.array_equal(images[5:], test[:2])
    assert ids[0] == "train:0" and ids[-1] == "test:1"


@pytest.mark.parametrize("form", ["python2", "protocol3", "protocol2-codecs"])
def test_pixels_stay_on_disk_in_every_pickle_form(tmp_path, monkeypatch, form):
    """A large pixel string is skipped by the unpickler (its bytes never read), whichever way it was pickled."""
    monkeypatch.setattr(cifar, "SPOOL_ABOVE", 4096)
    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    payload = {"python2": as_python2(batch(images, 3)), "protocol3": batch(images, 3),
               "protocol2-codecs": batch(images, 2)}[form]
    md5 = tarball(tmp_path / "c.tar.gz", {"cifar-100-python/train": payload})
    spool = tmp_path / "spool"
    spool.mkdir()
    got, ids = load(tmp_path / "c.tar.gz", 4, spool, md5)
    assert np.array_equal(got, images) and ids == [f"train:{i}" for i in range(4)]
    spooled = (spool / "cifar-train.pickle").stat().st_size
    # raw forms are referenced in place; the Python-3 protocol-2 form (latin-1 text) is decoded and appended
    assert spooled == len(payload) + (len(images) * 3072 if form == "protocol2-codecs" else 0)


def test_count_limits_and_refs_cross_processes(tmp_path):
    images = np.arange(3 * 32 * 32 * 3, dtype=np.uint32).astype(np.uint8).reshape(3, 32, 32, 3)
    md5 = write_cifar100_tarball(tmp_path / "c.tar.gz", images)
    refs = [r for _, r in iter_cifar100(tmp_path / "c.tar.gz", 2, tmp_path, md5)]
    assert len(refs) == 2
    copy = pickle.loads(pickle.dumps(refs[1]))     # what a build worker receives
    cifar.close_spools()
    assert np.array_equal(copy.read(), images[1])


def test_wrong_checksum_refused(tmp_path):
    write_cifar100_tarball(tmp_path / "c.tar.gz", np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(CifarError, match="MD5"):
        load(tmp_path / "c.tar.gz", 2, tmp_path)  # the published MD5 cannot match


@pytest.mark.parametrize("payload, message", [
    (pickle.dumps({b"labels": [1]}, protocol=3), "no pixel array"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.float32)}, protocol=3), "expected uint8"),
    (pickle.dumps([1, 2], protocol=3), "no pixel array"),
    (b"not a pickle at all", "official format"),
])
def test_malformed_batches_are_refused(tmp_path, payload, message):
    md5 = tarball(tmp_path / "c.tar.gz", {"cifar-100-python/train": payload})
    with pytest.raises(CifarError, match=message):
        load(tmp_path / "c.tar.gz", 1, tmp_path, md5)


def test_truncated_pixel_string_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "SPOOL_ABOVE", 4096)
    payload = batch(np.zeros((4, 32, 32, 3), np.uint8), 3)
    md5 = tarball(tmp_path / "c.tar.gz", {"cifar-100-python/train": payload[:-5000]})
    with pytest.raises(CifarError, match="runs past the end"):
        load(tmp_path / "c.tar.gz", 4, tmp_path, md5)


def test_malicious_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    md5 = tarball(tmp_path / "evil.tar.gz", {"cifar-100-python/train": pickle.dumps({b"data": Evil()}, protocol=2)})
    with pytest.raises(CifarError, match="forbidden"):
        load(tmp_path / "evil.tar.gz", 1, tmp_path, md5)
    assert not (tmp_path / "pwned").exists()


def test_corrupted_pickles_end_in_one_error(tmp_path, monkeypatch):
    """Seeded random damage to a batch: each archive loads or is refused with CifarError, nothing else."""
    import random

    monkeypatch.setattr(cifar, "SPOOL_ABOVE", 4096)
    good = batch(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8), 3)
    rng, outcomes = random.Random(0), set()
    for _ in range(300):
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.3:
            damaged = damaged[:rng.randrange(len(damaged))]
        md5 = tarball(tmp_path / "c.tar.gz", {"cifar-100-python/train": bytes(damaged)})
        try:
            load(tmp_path / "c.tar.gz", 3, tmp_path, md5)
            outcomes.add("loaded")
        except CifarError:
            outcomes.add("refused")
    assert outcomes == {"loaded", "refused"}


@pytest.mark.parametrize("kind", ["missing", "folder", "fifo"])
def test_an_archive_that_is_not_a_file_is_one_clear_error(tmp_path, kind):
    path = tmp_path / "cifar-100-python.tar.gz"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(CifarError, match="not found" if kind == "missing" else "not a regular file"):
        load(path, 1, tmp_path)
