"""What the synthesis costs beside a training step, side by side in one run.

    python benchmarks/synth.py [--side 128] [--batch-size 64] [--repeat 20] [--synth-memes 0.3] [--synth-nonmemes 0.15]

Times ``training.synth.caption_meme`` in each caption style and
``text_nonmeme`` in each designed-text style (the scripts drawn as in
training) on the same pictures, and a lite0 training step (the whole model
trainable, as the defaults train it) on a batch of the same side. Prints ms
per picture per style, and the share of a training epoch the synthesis adds
at the given ratios: the pictures a batch synthesises (``--synth-memes`` of
its non-memes captioned, ``--synth-nonmemes`` redrawn as text; two thirds of
a batch are non-memes as in the cross-validation's data) times their mean
cost, over the step's time. The reader threads draw while the model trains,
so this share is an upper bound of what an epoch slows. One JSON object last.
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

NON_MEME_SHARE = 2 / 3   # of a batch, as in the cross-validation's data (3,048 of 4,413)


def per_picture_ms(make, style: str, pictures: list[np.ndarray]) -> float:
    """Mean ms per picture after an untimed pass with other seeds (fonts and typeset formulas cached, as they
    are a few batches into an epoch)."""
    for k, pic in enumerate(pictures):
        make(pic, np.random.default_rng(10_000 + k), style)
    t0 = time.perf_counter()
    for k, pic in enumerate(pictures):
        make(pic, np.random.default_rng(k), style)
    return (time.perf_counter() - t0) * 1000 / len(pictures)


def step_ms(side: int, batch: int, repeat: int) -> float:
    import keras

    from training.model import build_model, pretrained_trunk, set_trunk_training
    from training.optim import make_loss, make_optimizer

    model = build_model("lite0", levels=(1,))
    set_trunk_training(pretrained_trunk(model), True)
    model.compile(optimizer=make_optimizer("adamw", 1e-4), loss=make_loss(0.0))
    x = np.random.default_rng(0).integers(0, 256, (batch, side, side, 3)).astype(np.uint8)
    y = (np.arange(batch) % 2).astype("int32")
    model.train_on_batch(x, y)                                  # compile
    t0 = time.perf_counter()
    for _ in range(repeat):
        model.train_on_batch(x, y)
    keras.backend.clear_session()
    return (time.perf_counter() - t0) * 1000 / repeat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=20, help="pictures per style, and timed training steps")
    p.add_argument("--synth-memes", type=float, default=0.3)
    p.add_argument("--synth-nonmemes", type=float, default=0.15)
    args = p.parse_args()
    from training.synth import NONMEME_STYLES, STYLES, caption_meme, text_nonmeme

    rng = np.random.default_rng(0)
    pictures = [np.kron(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
                        np.ones((args.side // 8, args.side // 8, 1), np.uint8)) for _ in range(args.repeat)]
    captions = {s: round(per_picture_ms(caption_meme, s, pictures), 2) for s in STYLES}
    texts = {s: round(per_picture_ms(text_nonmeme, s, pictures), 2) for s in NONMEME_STYLES}
    step = step_ms(args.side, args.batch_size, args.repeat)
    non_memes = args.batch_size * NON_MEME_SHARE
    drawn = non_memes * (args.synth_memes * np.mean(list(captions.values()))
                         + args.synth_nonmemes * np.mean(list(texts.values())))
    res = {"side": args.side, "batch_size": args.batch_size, "caption_ms": captions, "text_ms": texts,
           "step_ms": round(step, 1), "synth_ms_per_batch": round(float(drawn), 1),
           "share_of_step": round(float(drawn / step), 3)}
    print(f"caption styles, ms per picture at {args.side} px: " + ", ".join(f"{k} {v}" for k, v in captions.items()))
    print("designed text, ms per picture: " + ", ".join(f"{k} {v}" for k, v in texts.items()))
    print(f"lite0 training step, batch {args.batch_size} at {args.side} px: {res['step_ms']} ms; synthesis at "
          f"--synth-memes {args.synth_memes} --synth-nonmemes {args.synth_nonmemes}: {res['synth_ms_per_batch']} ms "
          f"a batch = {res['share_of_step']:.1%} of the step (target <= 20%)")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
