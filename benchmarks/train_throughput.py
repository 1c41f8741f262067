"""Training throughput from the HDF5 stream vs the same data already in memory; predict throughput; and
(``--parallel``) training on 1 device, 2 devices and 2 processes side by side.

    python benchmarks/train_throughput.py [--data DATASET.h5] [--arch memenet] [--steps 30]
    python benchmarks/train_throughput.py --parallel [--batch-size 64] [--steps 12]

Without --data a synthetic dataset of random pixels is built in a temp
folder. ``--parallel`` trains, each in fresh processes on KERAS_BACKEND=jax
(devices are fixed when JAX starts): one device; two host devices of one
process (``--xla_force_host_platform_device_count=2``; on a GPU machine, the
visible GPUs); two processes on 127.0.0.1 of one device each, every process
reading its share of each global batch from the HDF5 file. Global images/s,
timed over ``--steps`` steps after a compiling pass, and each one's ratio to
the one-device run. Both training measurements use the same compiled model, batch size
and number of steps, after a warm-up (compilation) pass. Set KERAS_BACKEND=jax
on the GPU machine. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.testkit import SHARED  # noqa: E402
from training import ARCHS, DEPRECATED_ARCHS  # noqa: E402


def synthetic(path: Path, n: int) -> Path:
    """Random pixels in build_h5's default layout (one uncompressed image per chunk)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
                         chunks=(1, 128, 128, 3))
        f.create_dataset("labels", data=(np.arange(n) % 4 == 0).astype(np.uint8))
        f.create_dataset("split", data=np.zeros(n, np.uint8))
    return path


def child(args) -> int:
    """One training process of a --parallel measurement: prints its global images/s (process 0)."""
    from training.data import H5Batches
    from training.model import build_model
    from training.parallel import cluster_from, setup

    import keras

    cluster = cluster_from(args.coordinator, args.num_processes, args.process_id)
    topology = setup(args.child, args.batch_size, cluster, "benchmark", 120)
    keras.utils.set_random_seed(0)   # every process starts from the same weights
    stream = H5Batches(args.data, "train", args.batch_size, shuffle=True, shard=topology.shard,
                       pad_to=topology.devices, workers=args.workers, use_multiprocessing=False)
    model = build_model(args.arch)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(stream, epochs=1, steps_per_epoch=2, verbose=0)   # compile
    t0 = time.perf_counter()
    model.fit(stream, epochs=1, steps_per_epoch=args.steps, verbose=0)
    if topology.writes:
        print(json.dumps({"img_s": args.steps * args.batch_size / (time.perf_counter() - t0)}))
    return 0


def parallel(args, data: Path) -> dict:
    """1 device, 2 devices in one process, 2 processes: global training images/s and ratios to 1 device."""
    import os
    import socket
    import subprocess

    base = [sys.executable, __file__, "--data", str(data), "--arch", args.arch, "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--workers", str(args.workers)]
    env = {**os.environ, "KERAS_BACKEND": "jax"}

    def rate(cmds, extra_env=None) -> float:
        procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**env, **(extra_env or {})}) for c in cmds]
        outs = [p.communicate(timeout=1800) for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit("train_throughput: a parallel run failed: " + outs[0][1][-1500:] + outs[-1][1][-1500:])
        return json.loads(outs[0][0].strip().splitlines()[-1])["img_s"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two_hosts = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    rates = {"1 device": rate([[*base, "--child", "1"]]),
             "2 devices, 1 process": rate([[*base, "--child", "all"]], two_hosts),
             "2 processes": rate([[*base, "--child", "1", "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                                   "2", "--process-id", str(i)] for i in range(2)])}
    one = rates["1 device"]
    for name, r in rates.items():
        print(f"{name:22s}: {r:7.1f} img/s (x{r / one:.2f})")
    return {name: {"img_s": round(r, 1), "ratio": round(r / one, 3)} for name, r in rates.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path)
    p.add_argument("--parallel", action="store_true", help="1 device vs 2 devices vs 2 processes (JAX)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--coordinator", help=argparse.SUPPRESS)
    p.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    p.add_argument("--arch", default="memenet", choices=(*ARCHS, *DEPRECATED_ARCHS))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--predict-limit", type=int, default=522, help="real images to score (0: skip)")
    args = p.parse_args()
    if args.child:
        return child(args)

    import keras

    from training.data import H5Batches
    from training.model import build_model
    from training.classifier import load_pixels
    from training.predict import expand
    from training.preprocess import Preprocess

    tmp = tempfile.TemporaryDirectory()
    data = args.data or synthetic(Path(tmp.name) / "synthetic.h5", args.batch_size * (args.steps + 2))
    if args.parallel:
        print(json.dumps({"arch": args.arch, "batch_size": args.batch_size, "steps": args.steps,
                          **parallel(args, data)}))
        return 0
    stream = H5Batches(data, "train", args.batch_size, shuffle=True, augment=False, workers=args.workers,
                       use_multiprocessing=False)
    steps = min(args.steps, len(stream) - 1)
    batches = [stream[i] for i in range(steps)]
    x_mem = np.concatenate([b[0] for b in batches])
    y_mem = np.concatenate([b[1] for b in batches])

    model = build_model(args.arch)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_mem[: args.batch_size * 2], y_mem[: args.batch_size * 2], batch_size=args.batch_size, epochs=1,
              verbose=0)  # compile

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return steps * args.batch_size / (time.perf_counter() - t0)

    in_memory = timed(lambda: model.fit(x_mem, y_mem, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False))
    streamed = timed(lambda: model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0))
    in_memory2 = timed(lambda: model.fit(x_mem, y_mem, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False))
    in_memory = max(in_memory, in_memory2)
    result = {"backend": keras.backend.backend(), "arch": args.arch, "batch_size": args.batch_size, "steps": steps,
              "train_img_s_in_memory": round(in_memory, 1), "train_img_s_hdf5_stream": round(streamed, 1),
              "stream_over_memory": round(streamed / in_memory, 3)}

    found = expand([str(SHARED / "memes"), str(SHARED / "photos")]) if SHARED.exists() else []
    files = [path for path, error in found if error is None][: args.predict_limit]
    if files:
        pre = Preprocess(fit="square", size=128)
        model.predict_on_batch(np.zeros((64, 128, 128, 3), np.uint8))
        t0 = time.perf_counter()
        for i in range(0, len(files), 64):
            model.predict_on_batch(np.stack([load_pixels(f, pre, False, 1024) for f in files[i:i + 64]]))
        result["predict_img_s_real_files"] = round(len(files) / (time.perf_counter() - t0), 1)
        result["predict_files"] = len(files)
    print(f"train from HDF5 stream: {result['train_img_s_hdf5_stream']} img/s; from memory: "
          f"{result['train_img_s_in_memory']} img/s; ratio {result['stream_over_memory']} (target >= 0.9)")
    if files:
        print(f"predict (decode + fit + model) on {len(files)} real files: {result['predict_img_s_real_files']} img/s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
