r"""python -m training.predict MODEL PATH... [--json] [--threshold T] [--native-size]

Prints one line per image: path, meme probability, label. Folders are read
recursively. By default each image is cropped and pooled exactly as in
training; ``--native-size`` feeds it at its own size instead (what the SPP
head is for), with the long side capped by ``--max-side``.

Every path given or found ends in exactly one line: a file that cannot be
used gets an error line with its reason (``missing_file``, ``not_a_file`` for
FIFOs/devices/sockets, ``unsupported_size`` for an image too thin for the
model at native size, ``empty_folder`` for a folder with no files, ...) and
the rest still run. Folders are walked like the builder's (each real folder
once, hidden names left out). Paths are printed escaped
(``processing.files.escape_name``: a non-UTF-8 byte as ``\xNN``, a backslash
as ``\\``), so the output is always valid UTF-8, one line per path. Exit
code 1 if any failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from processing.cliutil import ArgumentParser, fraction, positive_int, run_main
from processing.decode import decode_image
from processing.files import DEFAULT_MAX_BYTES, FOLDER, escape_name, not_regular, read_capped, walk
from processing.reasons import EMPTY_FOLDER, MISSING_FILE, UNREADABLE, UNSUPPORTED_SIZE, Rejected

from .preprocess import Preprocess


def expand(paths: list[str]) -> list[tuple[Path | str, str | None]]:
    """Each path to read, or a path with the reason it is an error already.

    An empty argument is ``missing_file`` (``Path("")`` would be the current
    folder); a folder that is empty or cannot be listed gets its reason; any
    other path is left for ``read_capped``, which gives a reason for every way
    it cannot be read (a name too long, a link loop, ...).
    """
    out: list[tuple[Path | str, str | None]] = []
    for text in paths:
        if not text:
            out.append((text, MISSING_FILE))
            continue
        p = Path(text)
        if not_regular(p) != FOLDER:
            out.append((p, None))
            continue
        files, unlisted = walk(p)
        if not files and not unlisted:
            out.append((p, EMPTY_FOLDER))
        out.extend((q, None) for q in files)
        out.extend((d, UNREADABLE) for d in unlisted)
    return out


def min_native_side(model) -> int:
    """The smallest height/width the model turns into a non-empty feature map.

    Walks the layers backwards: a "valid" window of size k and stride s needs
    ``(m - 1) * s + k`` pixels to give m outputs, a "same" one ``(m - 1) * s + 1``.
    """
    import keras

    need = 1
    for layer in reversed(model.layers):
        if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            window = layer.pool_size
        elif isinstance(layer, keras.layers.Conv2D):
            window = layer.kernel_size
        else:
            continue
        stride = max(layer.strides)
        need = (need - 1) * stride + (max(window) if layer.padding == "valid" else 1)
    return need


def cap_long_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def native_input(rgb: np.ndarray, max_side: int, min_side: int) -> np.ndarray:
    """A decoded image as the SPP model takes it at its own aspect: long side capped, ``Rejected`` if too thin.

    Thinner than ``min_side`` (``min_native_side``) the last feature map would
    be empty and the pooled features undefined (the model answers NaN).
    """
    rgb = cap_long_side(rgb, max_side)
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        raise Rejected(UNSUPPORTED_SIZE, f"{w}x{h}: the model needs at least {min_side} pixels a side")
    return rgb


def load_pixels(path: Path, pre: Preprocess, native: bool, max_side: int, min_side: int = 1,
                max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """The model input for one file; ``Rejected`` with the reason for a file it cannot become."""
    rgb = decode_image(read_capped(path, max_bytes)).rgb
    return native_input(rgb, max_side, min_side) if native else pre.apply(rgb)


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m training.predict", description=__doc__)
    p.add_argument("model", help="run folder (with model.keras) or a .keras file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p.add_argument("--threshold", type=fraction, help="meme probability threshold (default: the one stored with the model)")
    p.add_argument("--native-size", action="store_true", help="feed each image at its own size (SPP)")
    p.add_argument("--max-side", type=positive_int, default=1024, help="with --native-size, cap the long side (default 1024)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-bytes", type=positive_int, default=DEFAULT_MAX_BYTES, metavar="N",
                   help=f"a file over N bytes is an error (too_large) (default {DEFAULT_MAX_BYTES}, 64 MiB)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .evaluate import load_classifier

    files = expand(args.paths)
    model, pre = load_classifier(args.model)
    pre = pre.with_threshold(args.threshold)
    min_side = min_native_side(model) if args.native_size else 1
    failed = 0

    def emit(path, prob=None, error=None):
        name = escape_name(str(path))
        if args.json:
            rec = {"path": name, "error": error} if error else {
                "path": name, "meme_probability": round(float(prob), 6), "label": pre.label(prob)}
            print(json.dumps(rec))
        elif error:
            print(f"{name}\terror\t{error}")
        else:
            print(f"{name}\t{prob:.4f}\t{pre.label(prob)}")

    batch: list[tuple[Path, np.ndarray]] = []

    def flush():
        if batch:
            probs = np.asarray(model.predict_on_batch(np.stack([x for _, x in batch])))[:, 1]
            for (p, _), prob in zip(batch, probs):
                emit(p, prob)
            batch.clear()

    for path, error in files:
        if error:
            failed += 1
            emit(path, error=error)
            continue
        try:
            pixels = load_pixels(path, pre, args.native_size, args.max_side, min_side, args.max_bytes)
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
