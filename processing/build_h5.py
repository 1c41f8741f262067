"""python -m processing.build_h5: crawled memes + tiny pictures -> one HDF5 dataset.

Memes (label 1) come from crawl manifests and ``--memes`` folders; non-memes
(label 0) from CIFAR-100 (``--cifar``), folders of 32x32 pictures (``--tiny``,
through exactly CIFAR's x4 path) and ``--non-memes`` folders.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import sys
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from . import reasons
from .cifar import CIFAR100_MD5, CifarError
from .cliutil import UsageError, atomic_write_json, run_main
from .decode import DEFAULT_MAX_PIXELS
from .distribute import run_shards, shard_argv, shard_dir, shard_of, stitch
from .prepare import Options, Row, prepare_any, prepare_chunk
from .sources import MEME, NON_MEME, Input, Job, PixelJob, Skip, from_cifar, from_folder, from_manifests
from .split import SPLIT_NAMES, assign_splits, parse_fractions, source_counts, split_counts
from .transform import FITS, SIZE
from .writer import H5Writer, PartialBuildError, partial_path

CHUNK = 16          # jobs per inter-process task
COMMIT_EVERY = 256  # rows per HDF5 commit: bounds memory and the work lost to a kill


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m processing.build_h5", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("inputs (at least one)")
    src.add_argument("--manifest", action="append", default=[], metavar="PATH",
                     help="crawl manifest (.jsonl) or a folder of them; repeatable")
    src.add_argument("--memes", action="append", default=[], metavar="DIR", help="folder of meme images; repeatable")
    src.add_argument("--non-memes", action="append", default=[], metavar="DIR",
                     help="folder of non-meme images of any size (meme path); repeatable")
    src.add_argument("--cifar", metavar="PATH", help="official cifar-100-python.tar.gz")
    src.add_argument("--cifar-count", type=int, default=8000, metavar="N", help="CIFAR images to take (default 8000)")
    src.add_argument("--cifar-md5", default=CIFAR100_MD5, metavar="HEX",
                     help="expected MD5 of the CIFAR archive (default: the published one)")
    src.add_argument("--tiny", action="append", default=[], metavar="DIR",
                     help="folder of 32x32 non-meme pictures, upsampled x4 like CIFAR; repeatable")
    src.add_argument("--tiny-count", type=int, metavar="N", help="take N pictures from each --tiny folder")
    p.add_argument("--out", required=True, type=Path, metavar="PATH", help="output HDF5 file")
    p.add_argument("--fit", choices=sorted(FITS), default="square",
                   help="square: largest top-anchored square, area-resampled (default); seed: the original top-left k*128 crop")
    p.add_argument("--min-side", type=int, default=SIZE, help="skip images whose short side is below this (default 128)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompression-bomb cap")
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions (default 0.8,0.1,0.1)")
    p.add_argument("--group-by", choices=("none", "template"), default="none",
                   help="template: all images of one template/subfolder land in one split")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none",
                   help="per-image chunk compression: none (default) streams ~4x faster into training; "
                        "lzf/gzip make the file ~3x/5x smaller (see benchmarks/README.md)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode processes (default: cores)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    scale = p.add_argument_group("scale-out (see processing/distribute.py)")
    scale.add_argument("--shards", type=int, default=1, metavar="N",
                       help="build N deterministic shards in parallel and stitch them with a virtual dataset")
    scale.add_argument("--scheduler", metavar="ADDR", help="run shard tasks on this Dask scheduler (tcp://host:8786)")
    p.add_argument("--shard-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--shard-count", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def check_args(args) -> tuple[float, float, float]:
    if not (args.manifest or args.memes or args.non_memes or args.cifar or args.tiny):
        raise UsageError("no inputs: give --manifest, --memes, --non-memes, --tiny or --cifar")
    for path in [*args.manifest, *args.memes, *args.non_memes, *args.tiny]:
        if not Path(path).exists():
            raise UsageError(f"input not found: {path}")
    try:
        fractions = parse_fractions(args.split)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} exists: pass --overwrite to replace it")
    if partial_path(args.out).exists() and not (args.resume or args.overwrite):
        raise UsageError(f"an interrupted build left {partial_path(args.out)}: pass --resume to continue or --overwrite to start over")
    if args.workers < 1 or args.shards < 1:
        raise UsageError("--workers and --shards must be at least 1")
    if args.scheduler and args.shards < 2:
        raise UsageError("--scheduler runs shard tasks: give --shards N (N >= 2) too")
    return fractions


def collect_inputs(args) -> list[Input]:
    inputs: list[Input] = []
    if args.manifest:
        inputs.extend(from_manifests(args.manifest))
    for d in args.memes:
        inputs.extend(from_folder(d, MEME))
    for d in args.non_memes:
        inputs.extend(from_folder(d, NON_MEME))
    for d in args.tiny:
        inputs.extend(from_folder(d, NON_MEME, tiny=True, count=args.tiny_count))
    if args.cifar:
        try:
            inputs.extend(from_cifar(args.cifar, args.cifar_count, args.cifar_md5))
        except CifarError as exc:
            raise UsageError(str(exc)) from None
    if args.shard_count:
        inputs = [x for x in inputs if shard_of(x.key, args.shard_count) == args.shard_index]
    return inputs


def build_params(args, fractions) -> dict:
    """What defines the dataset: a resumed build must use the same."""
    return {
        "fit": args.fit, "size": SIZE, "min_side": args.min_side, "max_pixels": args.max_pixels,
        "split": list(fractions), "group_by": args.group_by, "seed": args.seed,
        "compression": args.compression,
        "inputs": {"manifest": args.manifest, "memes": args.memes, "non_memes": args.non_memes,
                   "tiny": args.tiny, "tiny_count": args.tiny_count,
                   "cifar": args.cifar, "cifar_count": args.cifar_count if args.cifar else None},
        **({"shard": [args.shard_index, args.shard_count]} if args.shard_count else {}),
    }


def run_jobs(jobs: list[Job | PixelJob], options: Options, workers: int) -> Iterator[Row]:
    """Rows in job order; at most ``4 * workers`` chunks in flight (bounded memory)."""
    if workers == 1:
        for job in jobs:
            yield prepare_any(job, options)
        return
    chunks = (jobs[i:i + CHUNK] for i in range(0, len(jobs), CHUNK))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        in_flight: deque = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(prepare_chunk, chunk, options))
            if len(in_flight) >= 4 * workers:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


def write_order(key: tuple[str, str]) -> bytes:
    """Rows are written in a hashed order, so neighbouring rows mix sources and labels: a
    block-shuffled reader (training.data) then gets mixed batches at slice speed."""
    return hashlib.sha1(f"{key[0]}\x00{key[1]}".encode()).digest()


def process(inputs: Iterable[Input], options: Options, workers: int) -> Iterator[Skip | Row]:
    inputs = list(inputs)
    yield from (x for x in inputs if isinstance(x, Skip))
    work = sorted((x for x in inputs if not isinstance(x, Skip)), key=lambda x: write_order(x.key))
    yield from run_jobs(work, options, workers)


def write_all(writer: H5Writer, results: Iterable[Skip | Row], bar) -> None:
    seen_sha = writer.sha256s()
    since_commit = 0
    for r in results:
        if isinstance(r, Skip):
            writer.add_skip(r.source, r.source_id, r.reason, r.label)
        else:
            job = r.job
            reason = r.reason or (reasons.DUPLICATE if r.sha256 in seen_sha else None)
            if reason:
                writer.add_skip(job.source, job.source_id, reason, job.label)
            else:
                seen_sha.add(r.sha256)
                writer.add_row(r.image, job.label, job.source, job.source_id, job.group, r.sha256, r.animated)
        since_commit += 1
        if since_commit >= COMMIT_EVERY:
            writer.commit()
            since_commit = 0
        bar.update(1)
    writer.commit()


def summarize(writer: H5Writer, splits: np.ndarray, inputs_total: int, resumed: int, seconds: float, params: dict) -> dict:
    labels = writer.labels()
    sources = writer.column("source")
    sk = writer.f["skipped"]
    skip_reasons = [s.decode() if isinstance(s, bytes) else s for s in sk["reason"][:]]
    skip_sources = [s.decode() if isinstance(s, bytes) else s for s in sk["source"][:]]
    return {
        "output": str(writer.out),
        "inputs": inputs_total,
        "rows": int(len(labels)),
        "skipped_total": len(skip_reasons),
        "by_label": {"non_meme": int((labels == 0).sum()), "meme": int((labels == 1).sum())},
        "by_split": split_counts(labels, splits),
        "by_source": source_counts(sources, skip_sources),
        "skipped": dict(sorted(Counter(skip_reasons).items())),
        "animated_rows": int(writer.f["animated"][:].sum()),
        "resumed_rows": resumed,
        "seconds": round(seconds, 2),
        "params": params,
    }


def summary_path(out: Path) -> Path:
    return out.with_suffix(".summary.json")


def build_sharded(args) -> dict:
    t0 = time.time()
    fractions = check_args(args)
    if args.overwrite:
        shutil.rmtree(shard_dir(args.out), ignore_errors=True)
        args.out.unlink(missing_ok=True)
    shard_dir(args.out).mkdir(parents=True, exist_ok=True)
    argvs = [shard_argv(args.argv, args.out, i, args.shards) for i in range(args.shards)]
    paths = run_shards(argvs, args.scheduler, args.workers)
    params = build_params(args, fractions)
    summary = stitch([Path(p) for p in paths], args.out, fractions=fractions, seed=args.seed, group_by=args.group_by,
                     params=params)
    summary.update(seconds=round(time.time() - t0, 2), params=params)
    atomic_write_json(summary_path(args.out), summary)
    return summary


def build(args) -> dict:
    if args.shards > 1:
        return build_sharded(args)
    fractions = check_args(args)
    params = build_params(args, fractions)
    if args.overwrite:
        partial_path(args.out).unlink(missing_ok=True)
    inputs = collect_inputs(args)
    options = Options(fit=args.fit, size=SIZE, min_side=args.min_side, max_pixels=args.max_pixels)
    t0 = time.time()
    try:
        writer = H5Writer(args.out, size=SIZE, compression=None if args.compression == "none" else args.compression,
                          params=params, resume=args.resume)
    except PartialBuildError as exc:
        raise UsageError(str(exc)) from None
    done = writer.done_keys()
    todo, seen = [], set(done)
    for x in inputs:
        if x.key not in seen:
            seen.add(x.key)
            todo.append(x)
    resumed = len(done)
    try:
        with tqdm(total=len(inputs), initial=len(inputs) - len(todo), unit="img", desc="build_h5",
                  disable=args.no_progress, file=sys.stderr) as bar:
            write_all(writer, process(todo, options, args.workers), bar)
    except BaseException:
        writer.close()  # what was committed stays for --resume
        raise
    labels = writer.labels()
    keys = [g if (args.group_by == "template" and g) else sha
            for g, sha in zip(writer.column("group"), (s.decode() for s in writer.f["sha256"][:]))]
    splits = assign_splits(labels, keys, fractions, args.seed)
    summary = summarize(writer, splits, len(set(x.key for x in inputs)), resumed, time.time() - t0, params)
    writer.finalize(splits, {"fit": args.fit, "counts": {k: summary[k] for k in ("by_label", "by_split", "skipped")},
                             "params": params})
    atomic_write_json(summary_path(args.out), summary)
    return summary


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
    try:
        summary = build(args)
    except KeyboardInterrupt:
        print(f"build_h5: interrupted; committed rows are kept in {partial_path(args.out)}: "
              "rerun the same command with --resume", file=sys.stderr)
        return 130
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("build_h5", main))
