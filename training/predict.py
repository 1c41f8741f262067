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

from processing.cliutil import ArgumentParser, fraction, positive_int, run_main
from processing.decode import DEFAULT_MAX_PIXELS
from processing.files import DEFAULT_MAX_BYTES, FOLDER, escape_name, not_regular, walk
from processing.reasons import EMPTY_FOLDER, MISSING_FILE, UNREADABLE, Rejected

from .classifier import load_classifier, load_pixels, min_native_side, predict_probs


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
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"an image of more than N pixels is a decompression_bomb (default {DEFAULT_MAX_PIXELS})")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
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
            probs = predict_probs(model, [np.stack([x for _, x in batch])])
            for (p, _), prob in zip(batch, probs):
                emit(p, prob)
            batch.clear()

    for path, error in files:
        if error:
            failed += 1
            emit(path, error=error)
            continue
        try:
            pixels = load_pixels(path, pre, args.native_size, args.max_side, min_side, args.max_bytes, args.max_pixels)
        except Rejected as exc:
            failed += 1
            emit(path, error=exc.reason)
            continue
        if args.native_size:
            emit(path, float(predict_probs(model, [pixels[None]])[0]))
        else:
            batch.append((path, pixels))
            if len(batch) >= args.batch_size:
                flush()
    flush()
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main("training.predict", main))
