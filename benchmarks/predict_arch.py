"""``training.predict``'s work per architecture, side by side in one run: decode + fit + model on real files.

    python benchmarks/predict_arch.py [--archs memenet,lite0] [--files 256] [--native 64] [--max-side 512]

For each architecture (untrained: speed does not depend on the weights) the
same real files are scored as ``training.predict`` does: decoded, fitted to
128 px and scored in batches of 32, then ``--native`` of them one at a time at
their own size (``--native-size``, long side capped at ``--max-side``). Each
architecture is warmed up (compilation) before it is timed, and the timed
passes alternate between architectures twice, keeping each one's best, so a
busy machine slows both alike. Prints images/s and each architecture's ratio
to the first; one JSON object last.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="memenet,lite0")
    p.add_argument("--files", type=int, default=256, help="real files scored at 128 px")
    p.add_argument("--native", type=int, default=64, help="of those, scored one at a time at native size")
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32, help="training.predict's --batch-size")
    args = p.parse_args()
    if not SHARED.exists():
        print(f"predict_arch: error: real data not found: {SHARED}", file=sys.stderr)
        return 2

    from training.classifier import load_pixels
    from training.model import build_model
    from training.predict import expand
    from training.preprocess import Preprocess

    found = expand([str(SHARED / "memes"), str(SHARED / "photos"), str(SHARED / "nonmemes-text2")])
    files = [path for path, error in found if error is None]
    files = [files[int(i)] for i in np.linspace(0, len(files) - 1, args.files)]
    pre = Preprocess()
    models = {arch: build_model(arch) for arch in args.archs.split(",")}

    def fitted(model) -> float:
        t0 = time.perf_counter()
        for i in range(0, len(files), args.batch_size):
            model.predict_on_batch(np.stack([load_pixels(f, pre, False, args.max_side)
                                             for f in files[i:i + args.batch_size]]))
        return len(files) / (time.perf_counter() - t0)

    def native(model) -> float:
        t0 = time.perf_counter()
        for f in files[:args.native]:
            model.predict_on_batch(load_pixels(f, pre, True, args.max_side)[None])
        return args.native / (time.perf_counter() - t0)

    for model in models.values():   # compile: the batch shape, and each native shape once
        fitted(model)
        native(model)
    result = {arch: {"fitted_img_s": 0.0, "native_img_s": 0.0} for arch in models}
    for _ in range(2):
        for arch, model in models.items():
            result[arch]["fitted_img_s"] = max(result[arch]["fitted_img_s"], round(fitted(model), 1))
            result[arch]["native_img_s"] = max(result[arch]["native_img_s"], round(native(model), 1))
    first = next(iter(result.values()))
    for arch, r in result.items():
        r["fitted_ratio"] = round(r["fitted_img_s"] / first["fitted_img_s"], 3)
        r["native_ratio"] = round(r["native_img_s"] / first["native_img_s"], 3)
        print(f"{arch:8s}: {r['fitted_img_s']:7.1f} img/s at 128 px (x{r['fitted_ratio']}), "
              f"{r['native_img_s']:6.1f} img/s at native size <= {args.max_side} px (x{r['native_ratio']})")
    print(json.dumps({"files": len(files), "native": args.native, "max_side": args.max_side, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
