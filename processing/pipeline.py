"""The builder's core: a frozen ``BuildConfig`` and the one function that builds from it.

``build_h5`` turns command-line arguments into a config and reports the
summary; ``distribute`` sends per-shard configs to a process pool or Dask.
Neither is imported here, so the core can be called from anywhere (a
notebook, a test, a cluster worker) without a command line.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from . import reasons
from .cifar import CIFAR100_MD5, CifarError, close_spools
from .cliutil import UsageError, atomic_write_json
from .decode import DEFAULT_MAX_PIXELS
from .digestset import DigestSet, sha256_prefix
from .files import DEFAULT_MAX_BYTES, FOLDER, MISSING, NOT_WRITABLE, escape_name, not_regular, writable_folder
from .jobtable import JobTable, key_digests
from .manifest import ManifestChanged, key_digest, manifest_problem
from .neardup import NEAR_DUPLICATE_BITS, image_hashes, near_duplicate_keys
from .prepare import Options, Row, prepare_any, prepare_chunk
from .schema import INPUT_SIZE, MAX_SIDE, MEME, MIN_SIDE, NON_MEME, TINY_SIZE
from .sources import Input, Job, PixelJob, Skip, from_cifar, from_folder, from_manifests
from .split import assign_splits, label_counts, rank_keys, source_counts, split_counts, strata
from .transform import DEFAULT_FIT, FITS, canonical_fit
from .writer import COMMIT_EVERY, H5Writer, OutputBusy, PartialBuildError, lock_path, output_lock, partial_path

CHUNK = 16          # jobs per inter-process task
GROUP_BY = ("none", "template")
COMPRESSIONS = ("none", "lzf", "gzip")


@dataclass(frozen=True)
class BuildConfig:
    """Everything that defines one build (or one shard of a build)."""

    out: Path
    manifests: tuple[str, ...] = ()
    memes: tuple[str, ...] = ()
    non_memes: tuple[str, ...] = ()
    tiny: tuple[str, ...] = ()
    tiny_count: int | None = None
    source_root: str | None = None         # folders' sources named by their path below it (sources.folder_source)
    cifar: str | None = None
    cifar_count: int = 8000
    cifar_md5: str = CIFAR100_MD5
    fit: str = DEFAULT_FIT
    side: int = INPUT_SIZE                 # the dataset's images are side x side x 3
    min_side: int = INPUT_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES     # bytes read per input file; more is ``too_large``
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    group_by: str = "none"
    near_duplicate_bits: int = NEAR_DUPLICATE_BITS   # -1: only exact duplicates stay together
    seed: int = 0
    compression: str = "none"
    checksum: bool = True                  # a Fletcher-32 checksum on each image chunk, checked on read
    workers: int = 1
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    shard: tuple[int, int] | None = None   # (index, count): build only that shard's inputs

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "fit", canonical_fit(self.fit))
        for name in ("manifests", "memes", "non_memes", "tiny"):
            object.__setattr__(self, name, tuple(str(p) for p in getattr(self, name)))

    @property
    def has_inputs(self) -> bool:
        return bool(self.input_paths)

    @property
    def input_paths(self) -> tuple[str, ...]:
        return (*self.manifests, *self.memes, *self.non_memes, *self.tiny, *((self.cifar,) if self.cifar else ()))

    def params(self) -> dict:
        """What defines the dataset's content: a resumed build must use the same."""
        return {
            "fit": self.fit, "size": self.side, "min_side": self.min_side, "max_pixels": self.max_pixels,
            "max_bytes": self.max_bytes, "split": list(self.split), "group_by": self.group_by,
            "near_duplicate_bits": self.near_duplicate_bits, "seed": self.seed,
            "compression": self.compression, "checksum": self.checksum,
            "inputs": {"manifest": _names(self.manifests), "memes": _names(self.memes),
                       "non_memes": _names(self.non_memes), "tiny": _names(self.tiny), "tiny_count": self.tiny_count,
                       **({"source_root": self.source_root} if self.source_root else {}),
                       "cifar": self.cifar, "cifar_count": self.cifar_count if self.cifar else None},
            **({"shard": list(self.shard)} if self.shard else {}),
        }

    def to_dict(self) -> dict:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def check(config: BuildConfig) -> None:
    """Refuse a config that cannot build, before any work (UsageError: one line for the user)."""
    if not config.has_inputs:
        raise UsageError("no inputs: give --manifest, --memes, --non-memes, --tiny or --cifar")
    for path in [*config.manifests, *config.memes, *config.non_memes, *config.tiny]:
        if not os.path.exists(path):
            raise UsageError(f"input not found: {escape_name(path)}")
    for path in config.manifests:
        if problem := manifest_problem(path):
            raise UsageError(f"--manifest {escape_name(path)}: {problem}")
    seen: dict[str, str] = {}
    for option, folders in (("--memes", config.memes), ("--non-memes", config.non_memes), ("--tiny", config.tiny)):
        for path in folders:
            if not os.path.isdir(path):
                raise UsageError(f"not a folder: {escape_name(path)} (--memes, --non-memes and --tiny take folders)")
            real = os.path.realpath(path)
            if real in seen:   # its files would have one key twice: the second would leave no record
                raise UsageError(f"{escape_name(path)} is given twice ({seen[real]} and {option}): "
                                 f"give each folder once, under the label its pictures have")
            seen[real] = option
    if not (MIN_SIDE <= config.side <= MAX_SIDE and config.side % TINY_SIZE == 0):
        raise UsageError(f"--side takes a multiple of {TINY_SIZE} from {MIN_SIDE} to {MAX_SIDE} (32-px pictures are "
                         f"upsampled by a whole factor), got {config.side}")
    if config.source_root is not None and not os.path.isdir(config.source_root):
        raise UsageError(f"--source-root {escape_name(config.source_root)} is not a folder: give the folder the "
                         "input folders' source names are taken below")
    if config.fit not in FITS:
        raise UsageError(f"unknown fit {config.fit!r}; choose from {sorted(FITS)}")
    if config.group_by not in GROUP_BY or config.compression not in COMPRESSIONS:
        raise UsageError(f"--group-by takes {GROUP_BY}, --compression {COMPRESSIONS}")
    if config.workers < 1:
        raise UsageError("--workers must be at least 1")
    if config.max_bytes < 1:
        raise UsageError("--max-bytes must be at least 1")
    if not -1 <= config.near_duplicate_bits < 64:
        raise UsageError("--near-duplicate-bits takes -1 (off) to 63")
    check_out_location(config.out)


def nothing_to_build(config: BuildConfig) -> UsageError:
    """The error for a build whose inputs exist but hold no image or manifest record."""
    return UsageError(f"no inputs: no image or manifest record in {', '.join(_names(config.input_paths))}; "
                      "crawl first, or name folders and manifests that hold some")


def _names(paths: tuple[str, ...]) -> list[str]:
    return [escape_name(p) for p in paths]


def check_out_location(out: Path) -> None:
    """Refuse an output that cannot be written, before any input is read.

    A folder; anything else that is not a regular file (a device, a FIFO, a
    link to nothing: replacing it would replace the device or write where the
    link points); a folder not writable; a name too long for the file system,
    for the output or a file the build writes beside it. A missing parent
    folder is fine when it can be made (the writer makes it).
    """
    name = escape_name(str(out))
    existing, problem = writable_folder(out.parent)
    if problem:
        raise UsageError(f"cannot write {name}: {escape_name(str(existing))} is "
                         f"{'not writable' if problem == NOT_WRITABLE else 'not a folder'}")
    longest = max((partial_path(out).name, lock_path(out).name, summary_path(out).name, out.name + ".shards"), key=len)
    if len(os.fsencode(longest)) > os.pathconf(existing, "PC_NAME_MAX"):
        raise UsageError(f"--out {name}: the name is too long for the file system (the build writes "
                         f"{escape_name(longest)} beside it): give a shorter one")
    kind = not_regular(out)
    if kind == FOLDER:
        raise UsageError(f"--out {name} is a folder: give a file name such as {escape_name(str(out / 'dataset.h5'))}")
    if kind == MISSING and os.path.islink(out):
        raise UsageError(f"--out {name} is a link to nothing: give the file name itself")
    if kind not in (None, MISSING):
        raise UsageError(f"--out {name} is {kind}, not a regular file: give a file name")


@contextmanager
def locked_output(out: Path) -> Iterator[None]:
    """The body runs holding ``<out>.lock``, so two builds never write one output (UsageError for the second)."""
    with ExitStack() as stack:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(output_lock(out))
        except OutputBusy as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot write {escape_name(str(out))}: {exc.strerror or exc}") from None
        yield


def check_existing(config: BuildConfig) -> None:
    """Refuse to replace a finished or interrupted build unasked (run holding the output lock)."""
    if config.out.exists() and not config.overwrite:
        raise UsageError(f"{config.out} exists: pass --overwrite to replace it")
    if partial_path(config.out).exists() and not (config.resume or config.overwrite):
        raise UsageError(f"an interrupted build left {partial_path(config.out)}: "
                         "pass --resume to continue or --overwrite to start over")


def shard_of(key: tuple[str, str], count: int) -> int:
    """The shard an input belongs to: a stable hash of its key, independent of input order."""
    return int.from_bytes(key_digest(key)[:8], "big") % count


def collect_inputs(config: BuildConfig, spool_dir: str | Path) -> Iterator[Input]:
    """Every input of the build (or of its shard), streamed; CIFAR's pixels are spooled into ``spool_dir``."""
    sources: list[Iterable[Input]] = [from_manifests(list(config.manifests))] if config.manifests else []
    named = {"source_root": config.source_root}
    sources += [from_folder(d, MEME, **named) for d in config.memes]
    sources += [from_folder(d, NON_MEME, **named) for d in config.non_memes]
    sources += [from_folder(d, NON_MEME, tiny=True, count=config.tiny_count, **named) for d in config.tiny]
    if config.cifar:
        sources.append(from_cifar(config.cifar, config.cifar_count, config.cifar_md5, spool_dir))
    try:
        for item in itertools.chain.from_iterable(sources):
            if not config.shard or shard_of(item.key, config.shard[1]) == config.shard[0]:
                yield item
    except (CifarError, ManifestChanged) as exc:
        raise UsageError(str(exc)) from None


def run_jobs(jobs: Iterable[Job | PixelJob], options: Options, workers: int) -> Iterator[Row]:
    """Rows in job order; at most ``4 * workers`` chunks in flight (bounded memory)."""
    if workers == 1:
        for job in jobs:
            yield prepare_any(job, options)
        return
    jobs = iter(jobs)
    chunks = iter(lambda: list(itertools.islice(jobs, CHUNK)), [])
    with ProcessPoolExecutor(max_workers=workers) as pool:
        in_flight: deque = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(prepare_chunk, chunk, options))
            if len(in_flight) >= 4 * workers:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


def process(table: JobTable, options: Options, workers: int) -> Iterator[Skip | Row]:
    """The table's skips, then its jobs' rows, each in write order."""
    yield from table.skips()
    yield from run_jobs(table.jobs(), options, workers)


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):   # not glibc: nothing to trim
        return lambda pad: 0


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``, as Dask's workers do).

    Rows arrive from the workers in ~0.8 MB pickles between 12 MB commits; glibc
    keeps what they free inside its heap, and over a full-size build the
    builder's own memory grew with the row count (61 -> 73 MB over 110,000
    rows, ~66 -> 71 MB with this; ~1 ms per commit).
    """
    _MALLOC_TRIM(0)


def write_all(writer: H5Writer, results: Iterable[Skip | Row], bar) -> None:
    seen_sha = DigestSet(sha256_prefix(s) for s in writer.f["sha256"][:])
    since_commit = 0
    for r in results:
        if isinstance(r, Skip):
            writer.add_skip(r.source, r.source_id, r.reason, r.label)
        else:
            job = r.job
            reason = r.reason or (reasons.DUPLICATE if sha256_prefix(r.sha256) in seen_sha else None)
            if reason:
                writer.add_skip(job.source, job.source_id, reason, job.label)
            else:
                seen_sha.add(sha256_prefix(r.sha256))
                writer.add_row(r.image, job.label, job.source, job.source_id, job.group, r.sha256, r.animated)
        since_commit += 1
        if since_commit >= COMMIT_EVERY:
            writer.commit()
            release_free_memory()
            since_commit = 0
        bar.update(1)
    writer.commit()


def summary_path(out: Path) -> Path:
    return Path(out).with_suffix(".summary.json")


def split_keys(groups: Iterable[str], sha256s: Iterable[str], hashes: np.ndarray,
               config: BuildConfig) -> tuple[np.ndarray, np.ndarray]:
    """What must stay together in one split, as ``split.assign_splits`` takes it: a key id per row, each key's rank.

    A row's key is its template (with ``--group-by template``), else its bytes'
    SHA-256; rows whose pictures are near duplicates (``processing.neardup``;
    ``hashes`` their dHashes, one per row) take the lowest-ranked key among
    them. The columns are streamed: per row only the rank and a few integers are held.
    """
    by_template = np.zeros(len(hashes), bool)

    def names() -> Iterator[str]:
        for i, (group, sha256) in enumerate(zip(groups, sha256s)):
            by_template[i] = config.group_by == "template" and bool(group)
            yield group if by_template[i] else sha256

    ranks, ids = np.unique(rank_keys(names(), len(hashes), config.seed), return_inverse=True)   # ids in rank order
    ids, free = ids.ravel(), ~by_template
    ids[free] = near_duplicate_keys(ids[free], hashes[free], config.near_duplicate_bits)
    return ids, ranks


def summarize(writer: H5Writer, splits: np.ndarray, inputs_total: int, resumed: int, seconds: float,
              params: dict) -> dict:
    labels = writer.labels()
    skip_reasons = writer.counts("reason", group="skipped")
    return {
        "output": escape_name(str(writer.out)),
        "inputs": inputs_total,
        "rows": int(len(labels)),
        "skipped_total": sum(skip_reasons.values()),
        "by_label": label_counts(labels),
        "by_split": split_counts(labels, splits),
        "by_source": source_counts(writer.counts("source"), writer.counts("source", group="skipped")),
        "skipped": dict(sorted(skip_reasons.items())),
        "animated_rows": int(writer.f["animated"][:].sum()),
        "resumed_rows": resumed,
        "seconds": round(seconds, 2),
        "params": params,
    }


def build(config: BuildConfig) -> dict:
    """Build one HDF5 file (a whole dataset, or one shard) from ``config``; returns its summary.

    Every input ends as a row or a skip with its reason; the file appears under
    its final name only when complete, and ``<out>.summary.json`` beside it
    says ``rows + skipped == inputs``. Raises UsageError for a config that
    cannot build (or whose output another build is writing).
    """
    check(config)
    with locked_output(config.out):
        check_existing(config)
        # beside the output, not in /tmp (often memory): CIFAR's batches wait there on disk
        with tempfile.TemporaryDirectory(prefix=".spool-", dir=config.out.parent) as spool_dir:
            try:
                return _build(config, spool_dir)
            finally:
                close_spools()


def _build(config: BuildConfig, spool_dir: str) -> dict:
    params = config.params()
    if config.overwrite and not config.resume:
        partial_path(config.out).unlink(missing_ok=True)
    with JobTable(spool_dir) as table:
        added = 0
        for added, item in enumerate(collect_inputs(config, spool_dir), 1):
            table.add(item)
        if not added and not config.shard:   # a shard may hold nothing; a whole build of nothing is a mistake
            raise nothing_to_build(config)
        t0 = time.time()
        try:
            writer = H5Writer(config.out, size=config.side,
                              compression=None if config.compression == "none" else config.compression,
                              checksum=config.checksum,
                              params=params, resume=config.resume)
        except PartialBuildError as exc:
            raise UsageError(str(exc)) from None
        done = key_digests(writer.done_keys())
        table.finish(done)
        release_free_memory()   # what reading the inputs freed, before the workers fork and share it
        options = Options(fit=config.fit, size=config.side, min_side=config.min_side, max_pixels=config.max_pixels,
                          max_bytes=config.max_bytes)
        try:
            with tqdm(total=table.total, initial=table.total - len(table), unit="img", desc="build_h5",
                      disable=not config.progress, file=sys.stderr) as bar:
                write_all(writer, process(table, options, config.workers), bar)
            writer.end_rows()
        except BaseException:
            writer.close()  # what was committed stays for --resume
            raise
    keys = split_keys(writer.column("group"), writer.column("sha256"), image_hashes(writer.f["images"]), config)
    splits = assign_splits(strata(writer.labels(), writer.column("source")), *keys, config.split)
    summary = summarize(writer, splits, table.total, len(done), time.time() - t0, params)
    writer.finalize(splits, fit=config.fit, params=params,
                    counts={k: summary[k] for k in ("by_label", "by_split", "skipped")})
    atomic_write_json(summary_path(config.out), summary)
    return summary


def default_workers() -> int:
    return os.cpu_count() or 1


def for_shard(config: BuildConfig, out: Path, index: int, count: int) -> BuildConfig:
    """The config of one shard task: its own file, one decode process, resuming its own partial file."""
    return replace(config, out=Path(out), shard=(index, count), workers=1, progress=False, overwrite=False,
                   resume=False)
