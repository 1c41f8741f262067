import hashlib
import json
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.support.testkit import ROOT, SHARED, image_bytes, picture, save
from processing import build_h5
from processing.cifar import write_cifar100_tarball
from processing.manifest import ManifestWriter, Record
from processing.transform import DEFAULT_FIT, fit_letterbox, tiny_to_input


@pytest.fixture
def corpus(tmp_path):
    """Memes in template folders, a manifest, tiny pictures, CIFAR, and bad files."""
    memes = tmp_path / "memes"
    for t in range(4):
        for i in range(5):
            save(picture(250, 250, seed=t * 10 + i), memes / f"template{t}" / f"{i}.jpg")
    save(picture(250, 250, seed=0), memes / "template0" / "copy_of_0.jpg")   # exact duplicate of 0.jpg? no: re-encode
    (memes / "template0" / "copy_of_0.jpg").write_bytes((memes / "template0" / "0.jpg").read_bytes())
    save(picture(100, 300, seed=99), memes / "template1" / "small.png")       # too small
    (memes / "template2" / "fake.jpg").write_bytes(b"<html>404</html>")        # not an image
    data = image_bytes(picture(300, 300, seed=98), "JPEG")
    (memes / "template3" / "cut.jpg").write_bytes(data[: len(data) // 2])    # truncated

    crawl = tmp_path / "crawl"
    files = crawl / "files"
    with ManifestWriter(crawl / "manifests" / "loc_archive-host-1.jsonl") as w:
        for i in range(3):
            p = save(picture(400, 300, seed=200 + i), files / f"{i}.png")
            w.write(Record(source="loc_archive", source_id=str(i), status="ok", path=str(p),
                           sha256=hashlib.sha256(p.read_bytes()).hexdigest(), template="Crawled Cat"))
        w.write(Record(source="loc_archive", source_id="3", status="http_404"))
        w.write(Record(source="loc_archive", source_id="4", status="md5_mismatch"))

    tiny = tmp_path / "tiny"
    for c in ("cat", "dog"):
        for i in range(6):
            save(picture(32, 32, seed=300 + i + (c == "dog") * 50, caption=None), tiny / c / f"{i}.png")
    save(picture(40, 40, seed=1, caption=None), tiny / "cat" / "wrong.png")

    rng = np.random.default_rng(7)
    cifar_md5 = write_cifar100_tarball(tmp_path / "cifar-100-python.tar.gz",
                                       rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8))
    return {"root": tmp_path, "memes": memes, "manifest": crawl / "manifests", "tiny": tiny,
            "cifar": tmp_path / "cifar-100-python.tar.gz", "cifar_md5": cifar_md5}


def args_for(c, out, *extra):
    return ["--memes", str(c["memes"]), "--manifest", str(c["manifest"]), "--tiny", str(c["tiny"]),
            "--cifar", str(c["cifar"]), "--cifar-md5", c["cifar_md5"], "--cifar-count", "8",
            "--out", str(out), "--no-progress", *extra]


def test_every_input_accounted_for(corpus, tmp_path):
    out = tmp_path / "ds.h5"
    assert build_h5.main(args_for(corpus, out, "--workers", "2", "--compression", "lzf")) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    # 24 meme files + 5 manifest rows + 13 tiny + 8 cifar
    assert summary["inputs"] == 24 + 5 + 13 + 8
    assert summary["rows"] + summary["skipped_total"] == summary["inputs"]
    assert summary["skipped"] == {"duplicate": 1, "http_404": 1, "md5_mismatch": 1, "not_an_image": 1,
                                  "too_small": 1, "truncated": 1, "wrong_size": 1}
    assert summary["by_label"] == {"meme": 20 + 3, "non_meme": 12 + 8}
    with h5py.File(out) as f:
        assert f["images"].shape == (43, 128, 128, 3) and f["images"].dtype == np.uint8
        assert f["images"].chunks == (1, 128, 128, 3) and f["images"].compression == "lzf"
        assert f.attrs["schema_version"] == 1 and json.loads(f.attrs["label_names"]) == ["non_meme", "meme"]
        assert f.attrs["fit"] == DEFAULT_FIT == "letterbox" and "created" in f.attrs and "tool_version" in f.attrs
        assert len(set(f["sha256"][:].tolist())) == 43                 # exact duplicates stored once
        sources = [s.decode() for s in f["source"][:]]
        ids = [s.decode() for s in f["source_id"][:]]
        # the stored tensor is exactly the transform of the decoded file
        i = ids.index("template1/2.jpg")
        rgb = np.asarray(Image.open(corpus["memes"] / "template1" / "2.jpg").convert("RGB"))
        assert np.array_equal(f["images"][i], fit_letterbox(rgb))
        j = ids.index("cat/3.png")
        tiny = np.asarray(Image.open(corpus["tiny"] / "cat" / "3.png"))
        assert np.array_equal(f["images"][j], tiny_to_input(tiny))
        assert sources.count("cifar100") == 8 and sources.count("loc_archive") == 3
        assert set(f["split"][:].tolist()) <= {0, 1, 2}
        assert sorted(s.decode() for s in f["skipped"]["reason"][:]).count("http_404") == 1


def test_workers_do_not_change_the_result(corpus, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    build_h5.main(args_for(corpus, a, "--workers", "1"))
    build_h5.main(args_for(corpus, b, "--workers", "2"))
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in ("images", "labels", "split", "sha256", "source_id"):
            assert np.array_equal(fa[name][:], fb[name][:])


def test_group_by_template_keeps_templates_in_one_split(corpus, tmp_path):
    out = tmp_path / "g.h5"
    build_h5.main(args_for(corpus, out, "--group-by", "template", "--split", "0.5,0.25,0.25"))
    with h5py.File(out) as f:
        groups = [g.decode() for g in f["group"][:]]
        split = f["split"][:]
        labels = f["labels"][:]
    seen = {}
    for g, s, lab in zip(groups, split, labels):
        if lab == 1 and g:
            seen.setdefault(g, set()).add(int(s))
    assert len(seen) == 5 and all(len(v) == 1 for v in seen.values())


def test_original_fit_is_recorded_under_its_new_name(corpus, tmp_path):
    out = tmp_path / "s.h5"
    build_h5.main(["--memes", str(corpus["memes"]), "--fit", "seed", "--out", str(out), "--no-progress"])
    with h5py.File(out) as f:
        assert f.attrs["fit"] == "original"
        assert json.loads(f.attrs["params"])["fit"] == "original"


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "processing.build_h5", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kw)


def empty_file(path):
    path.write_bytes(b"")
    return path


def empty_dir(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("make_args,expect", [
    (lambda c, t: ["--memes", str(t / "nope"), "--out", str(t / "o.h5")], "input not found"),
    (lambda c, t: ["--out", str(t / "o.h5")], "no inputs"),
    (lambda c, t: ["--manifest", str(empty_file(t / "m.jsonl")), "--out", str(t / "o.h5")], "no inputs"),
    (lambda c, t: ["--memes", str(empty_dir(t / "m")), "--non-memes", str(empty_dir(t / "n")),
                   "--out", str(t / "o.h5")], "no inputs"),
    (lambda c, t: ["--memes", str(empty_dir(t / "m")), "--shards", "2", "--out", str(t / "o.h5")], "no inputs"),
    (lambda c, t: ["--cifar", str(c["cifar"]), "--out", str(t / "o.h5")], "MD5"),
    (lambda c, t: ["--memes", str(c["memes"]), "--split", "0.5,0.5", "--out", str(t / "o.h5")], "--split"),
])
@pytest.mark.slow
def test_bad_input_one_line_exit_2(corpus, tmp_path, make_args, expect):
    r = run_cli(*make_args(corpus, tmp_path))
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "o.h5.shards").exists()


@pytest.mark.slow   # three builds
def test_existing_output_refused_unless_overwrite(corpus, tmp_path):
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep me")
    r = run_cli("--memes", str(corpus["memes"]), "--out", str(out), "--no-progress")
    assert r.returncode == 2 and "--overwrite" in r.stderr and out.read_bytes() == b"keep me"
    r = run_cli("--memes", str(corpus["memes"]), "--out", str(out), "--overwrite", "--no-progress")
    assert r.returncode == 0 and h5py.is_hdf5(out)


def test_corrupt_partial_is_a_clear_error(corpus, tmp_path):
    out = tmp_path / "o.h5"
    (tmp_path / "o.h5.partial").write_bytes(b"garbage")
    r = run_cli("--memes", str(corpus["memes"]), "--out", str(out), "--resume")
    assert r.returncode == 2 and "unreadable" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_interrupted_build_resumes(tmp_path):
    """SIGTERM mid-build leaves only a .partial; --resume finishes it to the same dataset."""
    memes = tmp_path / "memes"
    for i in range(700):
        save(picture(512, 512, seed=i, caption=str(i)), memes / f"t{i % 7}" / f"{i}.png")
    out = tmp_path / "ds.h5"
    args = ["--memes", str(memes), "--out", str(out), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "processing.build_h5", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "ds.h5.partial"
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            with h5py.File(partial, "r", locking=False) as f:
                if f.attrs["rows_committed"] >= 256:
                    break
        except (OSError, KeyError):
            pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and not out.exists() and partial.exists()

    assert build_h5.main([*args, "--resume"]) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["resumed_rows"] >= 256 and summary["rows"] == 700 and not partial.exists()

    ref = tmp_path / "ref.h5"
    build_h5.main(["--memes", str(memes), "--out", str(ref), "--workers", "2", "--no-progress"])
    with h5py.File(out) as a, h5py.File(ref) as b:
        order_a, order_b = np.argsort(a["sha256"][:]), np.argsort(b["sha256"][:])
        assert np.array_equal(a["sha256"][:][order_a], b["sha256"][:][order_b])
        assert np.array_equal(a["split"][:][order_a], b["split"][:][order_b])
        assert np.array_equal(a["images"][:][order_a], b["images"][:][order_b])


@pytest.mark.realdata
@pytest.mark.slow
def test_real_memes_and_photos(tmp_path):
    out = tmp_path / "real.h5"
    assert build_h5.main(["--memes", str(SHARED / "memes" / "advice-animals"),
                          "--non-memes", str(SHARED / "photos"),
                          "--tiny", str(SHARED / "tiny" / "cifar10-test"), "--tiny-count", "200",
                          "--group-by", "template", "--out", str(out), "--no-progress"]) == 0
    s = json.loads(out.with_suffix(".summary.json").read_text())
    photos = sum(1 for p in (SHARED / "photos").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert s["rows"] + s["skipped_total"] == s["inputs"] == 322 + photos + 200
    assert s["by_label"]["meme"] >= 300


def rows_by_sha(path):
    with h5py.File(path) as f:
        sha = f["sha256"][:]
        order = np.argsort(sha)
        return {name: f[name][:][order] for name in ("sha256", "labels", "split", "images")}


def assert_same_dataset(a, b):
    ta, tb = rows_by_sha(a), rows_by_sha(b)
    for name in ta:
        assert np.array_equal(ta[name], tb[name]), name


def test_sharded_build_equals_one_piece(corpus, tmp_path):
    one, sharded = tmp_path / "one.h5", tmp_path / "sharded.h5"
    assert build_h5.main(args_for(corpus, one, "--workers", "1")) == 0
    assert build_h5.main(args_for(corpus, sharded, "--shards", "3", "--workers", "2")) == 0
    assert_same_dataset(one, sharded)
    s1 = json.loads(one.with_suffix(".summary.json").read_text())
    s3 = json.loads(sharded.with_suffix(".summary.json").read_text())
    assert (s3["inputs"], s3["rows"], s3["skipped"]) == (s1["inputs"], s1["rows"], s1["skipped"])
    with h5py.File(sharded) as f:
        assert f["images"].is_virtual and len(json.loads(f.attrs["shards"])) == 3
    # a finished shard is not rebuilt on re-run
    shards = sorted((tmp_path / "sharded.h5.shards").glob("*.h5"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    sharded.unlink()
    assert build_h5.main(args_for(corpus, sharded, "--shards", "3")) == 0
    assert [p.stat().st_mtime_ns for p in shards] == mtimes
    assert_same_dataset(one, sharded)


@pytest.mark.slow
def test_sharded_build_on_a_dask_cluster(corpus, tmp_path):
    from dask.distributed import LocalCluster

    one, dist = tmp_path / "one.h5", tmp_path / "dask.h5"
    build_h5.main(args_for(corpus, one, "--workers", "1", "--group-by", "template"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert build_h5.main(args_for(corpus, dist, "--shards", "4", "--group-by", "template",
                                      "--scheduler", cluster.scheduler_address)) == 0
    assert_same_dataset(one, dist)
    from training.data import H5Batches   # training reads the stitched file like any other
    assert sum(len(H5Batches(dist, s, 8).indices) for s in ("train", "val", "test")) == rows_by_sha(one)["labels"].size


@pytest.mark.slow   # starts a Dask cluster
@pytest.mark.timeout(60)
def test_a_scheduler_that_cannot_be_used_is_one_line_before_any_work(corpus, tmp_path, monkeypatch):
    from tests.support.testkit import free_port
    from processing import distribute
    from processing.cliutil import UsageError

    monkeypatch.setattr(distribute, "SCHEDULER_TIMEOUT", 1)
    out = tmp_path / "dask.h5"
    for address, says in ((f"tcp://127.0.0.1:{free_port()}", "Timed out trying to connect"),
                          ("garbage://::", "unknown address scheme")):
        with pytest.raises(UsageError, match=f"cannot use --scheduler {re.escape(address)}: {says}.*tcp://HOST:PORT"):
            build_h5.main(args_for(corpus, out, "--shards", "2", "--scheduler", address))
        assert not out.exists() and not (tmp_path / "dask.h5.shards").exists()


def test_failed_shard_task_is_retried(monkeypatch):
    from processing import distribute

    calls = []

    def flaky(build, config):
        calls.append(config)
        if len(calls) == 1:
            raise OSError("worker lost its disk")
        return "shard.h5"

    monkeypatch.setattr(distribute, "build_shard", flaky)
    assert distribute._with_retries(None, "config") == "shard.h5" and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(distribute, "build_shard",
                        lambda build, config: calls.append(config) or (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        distribute._with_retries(None, "config")
    assert len(calls) == distribute.RETRIES + 1


def test_torn_manifest_line_is_counted(tmp_path):
    p = save(picture(300, 300, seed=1), tmp_path / "files" / "a.png")
    with ManifestWriter(tmp_path / "m" / "loc_archive-h-1.jsonl") as w:
        w.write(Record(source="loc_archive", source_id="1", status="ok", path=str(p)))
    with open(tmp_path / "m" / "loc_archive-h-1.jsonl", "a") as fh:
        fh.write('{"source": "loc_archive", "source_id": "2", "sta')   # killed mid-write
    out = tmp_path / "ds.h5"
    assert build_h5.main(["--manifest", str(tmp_path / "m"), "--out", str(out), "--no-progress"]) == 0
    s = json.loads(out.with_suffix(".summary.json").read_text())
    assert s["rows"] == 1 and s["skipped"] == {"torn_manifest_line": 1} and s["inputs"] == 2
