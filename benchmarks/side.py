"""What the input side costs, side by side in one run: lite0 training steps and predict at 128, 160 and 224 px.

    python benchmarks/side.py [--sides 128,160,224] [--files 128] [--steps 6] [--batch-size 32]

For each side a fresh lite0 model (the weights do not change the speed)
trains on the same batches of real pictures fitted to that side, the whole
model unfrozen as after the warm-up, and predicts the same real files as
``training.predict`` does (decode, fit to the side, batches of 32). Each side
is warmed up (compilation) first; the timed passes alternate between sides
twice, keeping each side's best, so a busy machine slows all alike. Prints
images/s, seconds per training epoch of the cross-validation's data (about
4,000 pictures) and each side's ratio to the first; one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.testkit import SHARED  # noqa: E402

EPOCH_IMAGES = 4000   # a cross-validation fold trains on about this many pictures per epoch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sides", default="128,160,224")
    p.add_argument("--files", type=int, default=128, help="real files predicted, and trained on, at each side")
    p.add_argument("--steps", type=int, default=6, help="training steps timed per pass")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    if not SHARED.exists():
        print(f"side: error: real data not found: {SHARED}", file=sys.stderr)
        return 2

    import keras

    from training.classifier import load_pixels
    from training.model import build_model, pretrained_trunk, set_trunk_training
    from training.predict import expand
    from training.preprocess import Preprocess

    found = expand([str(SHARED / "memes"), str(SHARED / "photos"), str(SHARED / "nonmemes-text4")])
    files = [path for path, error in found if error is None]
    files = [files[int(i)] for i in np.linspace(0, len(files) - 1, args.files)]
    sides = [int(s) for s in args.sides.split(",")]
    setups = {}
    for side in sides:
        model = build_model("lite0")
        set_trunk_training(pretrained_trunk(model), True)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
        pre = Preprocess(size=side)
        x = np.stack([load_pixels(f, pre, False, 512) for f in files])
        y = (np.arange(len(x)) % 2).astype(np.int32)
        setups[side] = (model, pre, x, y)

    def train(side) -> float:
        model, _, x, y = setups[side]
        t0 = time.perf_counter()
        for step in range(args.steps):
            i = (step * args.batch_size) % (len(x) - args.batch_size + 1)
            model.train_on_batch(x[i:i + args.batch_size], y[i:i + args.batch_size])
        return args.steps * args.batch_size / (time.perf_counter() - t0)

    def predict(side) -> float:
        model, pre, _, _ = setups[side]
        t0 = time.perf_counter()
        for i in range(0, len(files), args.batch_size):
            model.predict_on_batch(np.stack([load_pixels(f, pre, False, 512) for f in files[i:i + args.batch_size]]))
        return len(files) / (time.perf_counter() - t0)

    for side in sides:   # compile
        train(side)
        predict(side)
    result = {side: {"train_img_s": 0.0, "predict_img_s": 0.0} for side in sides}
    for _ in range(2):
        for side in sides:
            result[side]["train_img_s"] = max(result[side]["train_img_s"], round(train(side), 1))
            result[side]["predict_img_s"] = max(result[side]["predict_img_s"], round(predict(side), 1))
    first = result[sides[0]]
    for side, r in result.items():
        r["epoch_s"] = round(EPOCH_IMAGES / r["train_img_s"], 1)
        r["train_ratio"] = round(r["train_img_s"] / first["train_img_s"], 3)
        r["predict_ratio"] = round(r["predict_img_s"] / first["predict_img_s"], 3)
        print(f"{side:4d} px: train {r['train_img_s']:6.1f} img/s (x{r['train_ratio']}, {r['epoch_s']} s per "
              f"{EPOCH_IMAGES}-picture epoch), predict {r['predict_img_s']:6.1f} img/s (x{r['predict_ratio']})")
    print(json.dumps({"files": len(files), "steps": args.steps, "batch_size": args.batch_size,
                      **{str(k): v for k, v in result.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
