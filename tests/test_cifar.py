import io
import pickle
import tarfile

import numpy as np
import pytest

from processing.cifar import CifarError, load_cifar100, write_cifar100_tarball


def test_roundtrip_train_then_test(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    md5 = write_cifar100_tarball(tmp_path / "c.tar.gz", train, test)
    images, ids = load_cifar100(tmp_path / "c.tar.gz", 7, md5)
    assert images.shape == (7, 32, 32, 3)
    assert np.array_equal(images[:5], train) and np.array_equal(images[5:], test[:2])
    assert ids[0] == "train:0" and ids[-1] == "test:1"


def test_wrong_checksum_refused(tmp_path):
    write_cifar100_tarball(tmp_path / "c.tar.gz", np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(CifarError, match="MD5"):
        load_cifar100(tmp_path / "c.tar.gz", 2)  # the published MD5 cannot match


def test_malicious_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    payload = pickle.dumps({b"data": Evil()}, protocol=2)
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(CifarError, match="forbidden"):
        load_cifar100(path, 1, expected_md5="")
    assert not (tmp_path / "pwned").exists()
