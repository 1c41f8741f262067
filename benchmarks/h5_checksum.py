"""What the Fletcher-32 checksum on the image chunks costs, side by side in one run.

    python benchmarks/h5_checksum.py [--rows 4000] [--side 128] [--passes 3]

Writes the same pictures twice in ``processing.build_h5``'s layout (one chunk
per image, uncompressed), once with ``--checksum`` (the default) and once with
``--no-checksum``, then streams each through ``training.data.H5Batches`` (the
training reader: shuffled blocks, batches of 128) several times, the two files
alternating so a busy machine slows both alike; keeps each file's best pass.
Prints write and stream images/s and the checksum's ratio to none; one JSON
object last. The files are dropped from the page cache between passes only
by their size: run it with the rows well inside memory for a warm-cache read
(what an epoch after the first sees).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write(path: Path, images: np.ndarray, labels: np.ndarray, checksum: bool) -> float:
    import h5py

    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        s = images.shape[1]
        f.create_dataset("images", data=images, chunks=(1, s, s, 3), fletcher32=checksum)
        f.create_dataset("labels", data=labels)
        f.create_dataset("split", data=np.zeros(len(labels), np.uint8))
    return len(images) / (time.perf_counter() - t0)


def stream(path: Path) -> float:
    from training.data import H5Batches

    ds = H5Batches(path, "train", 128, shuffle=True)
    t0 = time.perf_counter()
    rows = sum(len(ds[i][1]) for i in range(len(ds)))
    return rows / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--side", type=int, default=128)
    p.add_argument("--passes", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.rows, args.side, args.side, 3), dtype=np.uint8)
    labels = (np.arange(args.rows) % 2).astype(np.uint8)
    res: dict = {"rows": args.rows, "side": args.side}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {c: Path(tmp) / f"{c}.h5" for c in ("none", "fletcher32")}
        for c, path in paths.items():
            res[f"write_img_s_{c}"] = round(write(path, images, labels, c == "fletcher32"))
        best = {c: 0.0 for c in paths}
        for _ in range(args.passes):
            for c, path in paths.items():
                best[c] = max(best[c], stream(path))
        for c in paths:
            res[f"stream_img_s_{c}"] = round(best[c])
    res["stream_ratio"] = round(best["fletcher32"] / best["none"], 3)
    res["write_ratio"] = round(res["write_img_s_fletcher32"] / res["write_img_s_none"], 3)
    print(f"{args.rows} pictures of {args.side} px, one chunk each, best of {args.passes} passes:")
    print(f"  stream (training.data, batches of 128): none {res['stream_img_s_none']} img/s, fletcher32 "
          f"{res['stream_img_s_fletcher32']} img/s: x{res['stream_ratio']}")
    print(f"  write: none {res['write_img_s_none']} img/s, fletcher32 {res['write_img_s_fletcher32']} img/s: "
          f"x{res['write_ratio']}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
