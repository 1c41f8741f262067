"""python -m processing.build_h5: crawled memes + tiny pictures -> one HDF5 dataset.

Memes (label 1) come from crawl manifests and ``--memes`` folders; non-memes
(label 0) from CIFAR-100 (``--cifar``), folders of 32x32 pictures (``--tiny``,
through exactly CIFAR's x4 path) and ``--non-memes`` folders.

With no input option it reads what the crawlers wrote (every manifest under
data/crawl/manifests) plus data/cifar-100-python.tar.gz when present, and
writes data/dataset.h5 (see processing/paths.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import paths, pipeline
from .cifar import CIFAR100_MD5
from .cliutil import ArgumentParser, UsageError, count, positive_int, run_main
from .decode import DEFAULT_MAX_PIXELS
from .distribute import build_sharded
from .files import DEFAULT_MAX_BYTES
from .neardup import NEAR_DUPLICATE_BITS
from .pipeline import COMPRESSIONS, GROUP_BY, BuildConfig
from .schema import INPUT_SIZE, SPLIT_NAMES
from .split import parse_fractions
from .transform import DEFAULT_FIT, DEPRECATED_NAMES, FITS
from .writer import partial_path


def parse_args(argv=None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m processing.build_h5", description=__doc__)
    src = p.add_argument_group(f"inputs (default, where present: {paths.MANIFEST_DIR}, {paths.CIFAR_TARBALL}, "
                               f"{paths.TINY_DIR}/, {paths.NON_MEME_DIR}/)")
    src.add_argument("--manifest", action="append", default=[], metavar="PATH",
                     help="crawl manifest (.jsonl) or a folder of them; repeatable")
    src.add_argument("--memes", action="append", default=[], metavar="DIR", help="folder of meme images; repeatable")
    src.add_argument("--non-memes", action="append", default=[], metavar="DIR",
                     help="folder of non-meme images of any size (meme path); repeatable")
    src.add_argument("--cifar", metavar="PATH", help="official cifar-100-python.tar.gz")
    src.add_argument("--cifar-count", type=count, default=8000, metavar="N", help="CIFAR images to take (default 8000)")
    src.add_argument("--cifar-md5", default=CIFAR100_MD5, metavar="HEX",
                     help="expected MD5 of the CIFAR archive (default: the published one)")
    src.add_argument("--tiny", action="append", default=[], metavar="DIR",
                     help="folder of 32x32 non-meme pictures, upsampled x4 like CIFAR; repeatable")
    src.add_argument("--tiny-count", type=count, metavar="N", help="take N pictures from each --tiny folder")
    src.add_argument("--source-root", metavar="DIR",
                     help="name each folder's rows by its path below DIR (source folder:memes/world/hindi/...) "
                          "instead of by the folder's own name, so folders of one name stay apart")
    p.add_argument("--out", type=Path, default=paths.DATASET, metavar="PATH",
                   help=f"output HDF5 file (default {paths.DATASET})")
    p.add_argument("--fit", choices=[*sorted(FITS), *DEPRECATED_NAMES], default=DEFAULT_FIT,
                   help="letterbox: the whole image, aspect kept, centred on grey (default); square: largest "
                        "top-anchored square, area-resampled; original: the original project's top-left k*128 "
                        "crop ('seed' is its old name)")
    p.add_argument("--side", type=positive_int, default=INPUT_SIZE, metavar="N",
                   help=f"the images are N x N x 3 (a multiple of 32; default {INPUT_SIZE}); training.run trains at "
                        "this side and the model predicts at it")
    p.add_argument("--min-side", type=positive_int,
                   help="skip images whose short side is below this (default: --side)")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb cap")
    p.add_argument("--max-bytes", type=positive_int, default=DEFAULT_MAX_BYTES, metavar="N",
                   help=f"read at most N bytes of a file; a larger one is skipped as too_large "
                        f"(default {DEFAULT_MAX_BYTES}, 64 MiB)")
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions (default 0.8,0.1,0.1)")
    p.add_argument("--group-by", choices=GROUP_BY, default="none",
                   help="template: all images of one template/subfolder land in one split")
    p.add_argument("--near-duplicate-bits", type=int, default=NEAR_DUPLICATE_BITS, metavar="N",
                   help="rows not grouped by template whose pictures' 64-bit dHashes differ in at most N bits "
                        f"share a split (default {NEAR_DUPLICATE_BITS}; -1: only exact duplicates)")
    p.add_argument("--seed", type=count, default=0, help="split seed")
    p.add_argument("--compression", choices=COMPRESSIONS, default="none",
                   help="per-image chunk compression: none (default) streams ~4x faster into training; "
                        "lzf/gzip make the file ~3x/5x smaller (see benchmarks/README.md)")
    p.add_argument("--checksum", action=argparse.BooleanOptionalAction, default=True,
                   help="a Fletcher-32 checksum on each image chunk, verified on every read: a damaged image is an "
                        "error, not a wrong picture (default on; costs a few percent of read speed, see "
                        "benchmarks/README.md)")
    p.add_argument("--workers", type=positive_int, default=pipeline.default_workers(), help="decode processes (default: cores)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = p.add_argument_group("scale-out (see processing/distribute.py)")
    scale.add_argument("--shards", type=positive_int, default=1, metavar="N",
                       help="build N deterministic shards in parallel and stitch them with a virtual dataset")
    scale.add_argument("--scheduler", metavar="ADDR", help="run shard tasks on this Dask scheduler (tcp://host:8786)")
    return p.parse_args(argv)


def default_inputs(args) -> None:
    """The bare command: the crawlers' manifests and the CIFAR tarball at their conventional places."""
    if args.manifest or args.memes or args.non_memes or args.tiny or args.cifar:
        return
    if paths.MANIFEST_DIR.is_dir() and any(paths.MANIFEST_DIR.glob("*.jsonl")):
        args.manifest = [str(paths.MANIFEST_DIR)]
    if paths.CIFAR_TARBALL.is_file():
        args.cifar = str(paths.CIFAR_TARBALL)
    args.tiny = [str(paths.TINY_DIR)] if paths.TINY_DIR.is_dir() else []
    args.non_memes = [str(paths.NON_MEME_DIR)] if paths.NON_MEME_DIR.is_dir() else []
    if not (args.manifest or args.cifar or args.tiny or args.non_memes):
        raise UsageError(f"no inputs: nothing in {paths.MANIFEST_DIR} (run scrapy crawl loc_archive / imgur_meme "
                         f"first), no {paths.CIFAR_TARBALL}, {paths.TINY_DIR}/ or {paths.NON_MEME_DIR}/; "
                         "or name inputs with --manifest, --memes, --non-memes, --tiny, --cifar")


def to_config(args) -> BuildConfig:
    default_inputs(args)
    try:
        fractions = parse_fractions(args.split)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.scheduler and args.shards < 2:
        raise UsageError("--scheduler runs shard tasks: give --shards N (N >= 2) too")
    return BuildConfig(
        out=args.out, manifests=args.manifest, memes=args.memes, non_memes=args.non_memes, tiny=args.tiny,
        tiny_count=args.tiny_count, source_root=args.source_root, cifar=args.cifar, cifar_count=args.cifar_count,
        cifar_md5=args.cifar_md5, fit=args.fit, side=args.side, min_side=args.min_side or args.side,
        max_pixels=args.max_pixels, max_bytes=args.max_bytes, split=fractions,
        group_by=args.group_by, near_duplicate_bits=args.near_duplicate_bits, seed=args.seed,
        compression=args.compression, checksum=args.checksum, workers=args.workers, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress)


def print_summary(summary: dict) -> None:
    print(f"wrote {summary['output']}: {summary['rows']} rows "
          f"({summary['by_label']['meme']} memes, {summary['by_label']['non_meme']} non-memes) "
          f"from {summary['inputs']} inputs in {summary['seconds']} s")
    for name in SPLIT_NAMES:
        c = summary["by_split"][name]
        print(f"  {name:5s}: {c['meme']} memes, {c['non_meme']} non-memes")
    if summary["skipped"]:
        print("  skipped: " + ", ".join(f"{k}={v}" for k, v in summary["skipped"].items()))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    config = to_config(args)
    try:
        summary = (build_sharded(pipeline.build, config, args.shards, args.scheduler) if args.shards > 1
                   else pipeline.build(config))
    except KeyboardInterrupt:
        print(f"build_h5: interrupted; committed rows are kept in {partial_path(args.out)}: "
              "rerun the same command with --resume", file=sys.stderr)
        return 130
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("build_h5", main))
