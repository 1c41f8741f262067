"""python -m training.predict MODEL PATH... [--json] [--threshold T] [--native-size]

Prints one line per image: path, meme probability, label. Folders are read
recursively. By default each image is cropped and pooled exactly as in
training; ``--native-size`` feeds it at its own size instead (what the SPP
head is for), with the long side capped by ``--max-side``. A file that cannot
be read gets an error line; the rest still run. Exit code 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from processing.cliutil import run_main
from processing.decode import decode_image
from processing.reasons import MISSING_FILE, UNREADABLE, Rejected

from .preprocess import Preprocess


def expand(paths: list[str]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")))
        else:
            out.append(p)
    return out


def cap_long_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def load_pixels(path: Path, pre: Preprocess, native: bool, max_side: int) -> np.ndarray:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Rejected(MISSING_FILE) from None
    except OSError as exc:
        raise Rejected(UNREADABLE, exc.strerror or str(exc)) from None
    rgb = decode_image(data).rgb
    if native:
        return cap_long_side(rgb, max_side)
    return pre.apply(rgb)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.predict", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="run folder (with model.keras) or a .keras file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p.add_argument("--threshold", type=float, help="meme probability threshold (default: the one stored with the model)")
    p.add_argument("--native-size", action="store_true", help="feed each image at its own size (SPP)")
    p.add_argument("--max-side", type=int, default=1024, help="with --native-size, cap the long side (default 1024)")
    p.add_argument("--batch-size", type=int, default=32)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .evaluate import load_classifier

    files = expand(args.paths)
    model, pre = load_classifier(args.model)
    pre = pre.with_threshold(args.threshold)
    failed = 0

    def emit(path, prob=None, error=None):
        if args.json:
            rec = {"path": str(path), "error": error} if error else {
                "path": str(path), "meme_probability": round(float(prob), 6), "label": pre.label(prob)}
            print(json.dumps(rec))
        elif error:
            print(f"{path}\terror\t{error}")
        else:
            print(f"{path}\t{prob:.4f}\t{pre.label(prob)}")

    batch: list[tuple[Path, np.ndarray]] = []

    def flush():
        if batch:
            probs = np.asarray(model.predict_on_batch(np.stack([x for _, x in batch])))[:, 1]
            for (p, _), prob in zip(batch, probs):
                emit(p, prob)
            batch.clear()

    for path in files:
        try:
            pixels = load_pixels(path, pre, args.native_size, args.max_side)
        except Rejected as exc:
            failed += 1
            emit(path, error=exc.reason)
            continue
        if args.native_size:
            emit(path, float(np.asarray(model.predict_on_batch(pixels[None]))[0, 1]))
        else:
            batch.append((path, pixels))
            if len(batch) >= args.batch_size:
                flush()
    flush()
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main("training.predict", main))
