"""Training on several devices and processes (training.parallel): the sharded stream, the rendezvous, and the
runs on 2 host devices and on 2 processes against the one-device run."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.support.testkit import ROOT, captioned_dataset, free_port
from processing.cliutil import UsageError
from training.data import H5Batches
from training.parallel import cluster_from, fingerprint, rendezvous


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Train split 64 rows: a multiple of the batch, so no padding."""
    return captioned_dataset(tmp_path_factory.mktemp("parallel"), "0.64,0.16,0.2")


def test_shards_of_a_batch_are_the_batch(dataset):
    """Synthesis, text non-memes, degradation, flips and crops: the shards, put together, are the unsharded batch;
    padding rows weigh 0."""
    kw = dict(shuffle=True, seed=5, augment=True, degrade_memes=0.5, smooth_tiny=0.5, synth_memes=0.3,
              synth_nonmemes=0.2, balance_classes=True)
    whole = H5Batches(dataset, "train", 10, pad_to=4, **kw)
    parts = [H5Batches(dataset, "train", 10, shard=(k, 2), pad_to=4, **kw) for k in range(2)]
    for i in range(len(whole)):
        x, y, w = whole[i]
        xs, ys, ws = zip(*(p[i] for p in parts))
        assert np.array_equal(np.concatenate(xs), x) and np.array_equal(np.concatenate(ys), y)
        assert np.array_equal(np.concatenate(ws), w) and len(y) % 4 == 0
    last = whole[len(whole) - 1]        # 64 rows in batches of 10: the last has 4 rows, padded to 4: none added
    assert len(last[1]) == 4 and (last[2] > 0).all()
    tail = H5Batches(dataset, "train", 12, pad_to=8, **kw)[5]     # 64 = 5 x 12 + 4: padded to 8, 4 weigh 0
    assert len(tail[1]) == 8 and (tail[2][4:] == 0).all() and (tail[2][:4] > 0).all()


def test_cluster_settings_from_flags_or_keras_variables():
    assert cluster_from(None, None, None, environ={}) is None
    assert cluster_from("127.0.0.1:1234", 2, 1, environ={}) == ("127.0.0.1:1234", 2, 1)
    env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:99,10.0.0.2:99", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
           "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    assert cluster_from(None, None, None, environ=env) == ("10.0.0.1:99", 2, 1)
    for bad in (("127.0.0.1:1234", 2, None), ("nohost", 2, 0), ("127.0.0.1:1234", 2, 2)):
        with pytest.raises(UsageError):
            cluster_from(*bad, environ={})
    with pytest.raises(UsageError, match="set all of"):
        cluster_from(None, None, None, environ={"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"})


def meet(address, n, datasets, timeout=5.0, ids=None):
    """Each process's rendezvous in a thread; the error text of each (None: it may go on)."""
    out = {}

    def one(pid, data):
        try:
            rendezvous(address, n, pid, data, timeout)
            out[pid] = None
        except UsageError as exc:
            out[pid] = str(exc)

    threads = [threading.Thread(target=one, args=(pid, data)) for pid, data in zip(ids or range(n), datasets)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    return out


@pytest.mark.slow   # a Python with JAX per process
def test_rendezvous_forms_a_cluster_or_says_why_in_every_process():
    a = fingerprint((4, 8, 8, 3), np.array([0, 1, 0, 1]), np.array([0, 0, 1, 2]), "{}")
    b = fingerprint((4, 8, 8, 3), np.array([0, 1, 1, 1]), np.array([0, 0, 1, 2]), "{}")
    assert a != b
    assert meet(f"127.0.0.1:{free_port()}", 3, [a, a, a]) == {0: None, 1: None, 2: None}
    mixed = meet(f"127.0.0.1:{free_port()}", 2, [a, b])
    assert all("dataset of process(es) [1] differs" in mixed[p] for p in (0, 1))
    t0 = time.monotonic()
    alone = meet(f"127.0.0.1:{free_port()}", 3, [a, a], timeout=1.0)     # process 2 never comes
    assert time.monotonic() - t0 < 10 and all("[2] did not join within 1 s" in alone[p] for p in (0, 1))
    nobody = meet(f"127.0.0.1:{free_port()}", 2, [a], timeout=1.0, ids=[1])
    assert "could not reach the coordinator" in nobody[1]


def run(args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "training.run", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "KERAS_BACKEND": "jax", **(env or {})})


def weights(run_dir):
    from training.classifier import load_classifier
    model, _ = load_classifier(run_dir)
    return [np.asarray(w) for w in model.get_weights()]


TRAIN = ["--arch", "memenet", "--epochs", "2", "--batch-size", "8", "--verbose", "0", "--sizes", "64",
         "--synth-memes", "0.3", "--synth-nonmemes", "0.2"]
TOLERANCE = 1e-3   # measured 5e-5 (largest weight 3.8): reduction order on two devices, amplified by Adam


@pytest.fixture(scope="module")
def one_device(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("dev1") / "run"
    r = run(["--data", dataset, "--out", out, *TRAIN, "--devices", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_devices_train_the_one_device_model(dataset, one_device, tmp_path):
    out = tmp_path / "dev2"
    r = run(["--data", dataset, "--out", out, *TRAIN], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data parallel on 2 devices in 1 process(es)" in r.stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["devices"], report["processes"], report["global_batch"], report["backend"]) == (2, 1, 8, "jax")
    for a, b in zip(weights(one_device), weights(out)):
        assert np.abs(a - b).max() < TOLERANCE
    r = run(["--data", dataset, "--out", tmp_path / "odd", *TRAIN, "--batch-size", "7"],
            env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert r.returncode == 2 and "must divide by the 2 devices" in r.stderr


@pytest.mark.slow
def test_two_processes_train_the_one_device_model_and_only_process_0_writes(dataset, one_device, tmp_path):
    out = tmp_path / "proc2"
    address = f"127.0.0.1:{free_port()}"
    cmds = [[sys.executable, "-m", "training.run", "--data", str(dataset), "--out", str(out), *TRAIN,
             "--coordinator", address, "--num-processes", "2", "--process-id", str(i)] for i in range(2)]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in cmds]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "process 1 done; process 0 writes" in outs[1][1]
    report = json.loads((out / "report.json").read_text())
    assert (report["devices"], report["processes"]) == (2, 2)
    for a, b in zip(weights(one_device), weights(out)):
        assert np.abs(a - b).max() < TOLERANCE


@pytest.mark.slow
def test_unreachable_coordinator_and_tensorflow_are_one_line(dataset, tmp_path):
    t0 = time.monotonic()
    r = run(["--data", dataset, "--out", tmp_path / "x", "--coordinator", f"127.0.0.1:{free_port()}",
             "--num-processes", "2", "--process-id", "1", "--coordinator-timeout", "2"])
    assert r.returncode == 2 and "could not reach the coordinator" in r.stderr and time.monotonic() - t0 < 120
    assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1
    r = run(["--data", dataset, "--out", tmp_path / "y", "--devices", "2"], env={"KERAS_BACKEND": "tensorflow"})
    assert r.returncode == 2 and "runs on JAX: set KERAS_BACKEND=jax" in r.stderr
