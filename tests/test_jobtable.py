import hashlib
import random

from processing import digestset
from processing.cifar import PixelRef
from processing.digestset import DigestSet, sha256_prefix
from processing.jobtable import JobTable, key_digests
from processing.manifest import key_digest
from processing.sources import Job, PixelJob, Skip


def test_table_keeps_each_keys_first_input_minus_done_in_write_order(tmp_path):
    inputs = [Job(label=1, source="loc", source_id=str(i), path=f"/x/{i}.jpg", group="t") for i in range(40)]
    inputs += [Skip(label=1, source="loc", source_id="3", reason="http_404"),        # a later repeat: dropped
               Skip(label=1, source="imgur", source_id="gone", reason="removed"),
               PixelJob(label=0, source="cifar100", source_id="train:0", pixels=PixelRef("/s", 96))]
    done = key_digests([("loc", "7"), ("loc", "8"), ("nowhere", "x")])
    with JobTable(tmp_path) as table:
        for item in inputs:
            table.add(item)
        table.finish(done)
        skips, jobs = list(table.skips()), list(table.jobs())
        assert table.total == 42 and len(table) == 40
    assert skips == [inputs[41]]
    expected = [x for x in inputs[:40] if x.source_id not in ("7", "8")] + [inputs[42]]
    assert jobs == sorted(expected, key=lambda x: key_digest(x.key))


def test_empty_table(tmp_path):
    with JobTable(tmp_path) as table:
        table.finish(key_digests([]))
        assert (table.total, len(table), list(table.skips()), list(table.jobs())) == (0, 0, [], [])


def test_digest_set_membership_across_merges(monkeypatch):
    monkeypatch.setattr(digestset, "MERGE_EVERY", 7)
    rng = random.Random(0)
    held = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(50)]
    held += ["00" * 32, "ab" * 15 + "00" * 17, "ff" * 32]   # prefixes ending in zero bytes, the extremes
    digests = DigestSet(sha256_prefix(d) for d in held[:10])
    for d in held[10:]:
        digests.add(sha256_prefix(d))
    assert all(sha256_prefix(d) in digests for d in held) and len(digests) == len(held)
    others = [hashlib.sha256(str(-i).encode()).hexdigest() for i in range(1, 200)] + ["ab" * 15 + "01" + "00" * 16]
    assert not any(sha256_prefix(d) in digests for d in others)
    as_hdf5_gives_it = ("ab" * 15 + "00" * 17).encode()
    assert sha256_prefix("ab" * 15 + "00" * 17) in DigestSet([sha256_prefix(as_hdf5_gives_it)])
    rng.shuffle(held)
    assert all(sha256_prefix(d) in DigestSet(map(sha256_prefix, held)) for d in held)
