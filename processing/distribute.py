"""``--shards N``: build the dataset as N deterministic shards, then stitch them.

Each input goes to shard ``sha1(source, source_id) mod N``; every shard is an
ordinary build of the same ``BuildConfig`` narrowed to its shard, written to
``<out>.shards/``, so a finished shard is never rebuilt and an interrupted
one resumes. Shard tasks run on a local process pool, or on a Dask cluster
with ``--scheduler tcp://host:8786`` (the shard folder must be reachable from
every worker); a failed task is retried. The master file maps the shards'
``images`` through an HDF5 virtual dataset (readers see one dataset), copies
the small per-row columns, drops exact duplicates across shards, and assigns
splits with the same order-independent rule as a one-piece build, so the
result holds the same images, labels and splits, and the same file
attributes (``schema.dataset_attrs``) plus ``shards``.

The build function is handed in (``build_sharded(pipeline.build, ...)``), so a
task ships a config and a top-level function, never a command line.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from . import reasons
from .cliutil import UsageError, atomic_write_json
from .files import escape_name
from .neardup import image_hashes
from .pipeline import (BuildConfig, check, check_existing, for_shard, locked_output, nothing_to_build, split_keys,
                       summary_path)
from .schema import INPUT_SIZE, dataset_attrs
from .split import assign_splits, label_counts, source_counts, split_counts, strata
from .writer import STR, partial_path, write_split

RETRIES = 2
SCHEDULER_TIMEOUT = 10   # seconds to reach a Dask scheduler before the build is refused

Build = Callable[[BuildConfig], dict]


def shard_dir(out: Path) -> Path:
    return out.with_name(out.name + ".shards")


def shard_path(out: Path, index: int, count: int) -> Path:
    return shard_dir(out) / f"shard-{index:05d}-of-{count:05d}.h5"


def build_shard(build: Build, config: BuildConfig) -> str:
    """One shard task: a finished shard is kept, an interrupted one resumes."""
    if not config.out.exists():
        build(replace(config, resume=partial_path(config.out).exists()))
    return str(config.out)


def _with_retries(build: Build, config: BuildConfig) -> str:
    for attempt in range(RETRIES + 1):
        try:
            return build_shard(build, config)
        except Exception:
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")


def connect_scheduler(address: str):
    """A Dask client of the scheduler at ``address``; UsageError (one line) if it is malformed or unreachable."""
    from dask.distributed import Client

    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, ValueError, TypeError) as exc:   # TimeoutError is an OSError
        cause = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"cannot use --scheduler {escape_name(address)}: {cause}; start one (dask scheduler) "
                         f"and give its tcp://HOST:PORT") from None


def run_shards(build: Build, configs: list[BuildConfig], client, workers: int) -> list[str]:
    """Run ``build`` on every shard config, on a Dask cluster (``client``) or a local process pool (None)."""
    if client is not None:
        futures = client.map(build_shard, [build] * len(configs), configs, retries=RETRIES, pure=False)
        return client.gather(futures)
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(configs)))) as pool:
        return list(pool.map(_with_retries, [build] * len(configs), configs))


def build_sharded(build: Build, config: BuildConfig, count: int, scheduler: str | None = None) -> dict:
    """``count`` shards of ``config`` built by ``build`` (e.g. ``pipeline.build``), stitched into ``config.out``."""
    t0 = time.time()
    check(config)
    with connect_scheduler(scheduler) if scheduler else nullcontext() as client, locked_output(config.out):
        check_existing(config)
        if config.overwrite:
            shutil.rmtree(shard_dir(config.out), ignore_errors=True)
            config.out.unlink(missing_ok=True)
        shard_dir(config.out).mkdir(parents=True, exist_ok=True)
        configs = [for_shard(config, shard_path(config.out, i, count), i, count) for i in range(count)]
        paths = run_shards(build, configs, client, config.workers)
        if not sum(json.loads(summary_path(Path(p)).read_text())["inputs"] for p in paths):
            shutil.rmtree(shard_dir(config.out), ignore_errors=True)
            raise nothing_to_build(config)
        params = config.params()
        summary = stitch([Path(p) for p in paths], config.out, config=config)
        summary.update(seconds=round(time.time() - t0, 2), params=params)
        atomic_write_json(summary_path(config.out), summary)
        return summary


def _col(ds) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in ds[:]]


def stitch(shards: list[Path], out: Path, *, config: BuildConfig) -> dict:
    """Master file over the shards: VDS images, copied columns, global dedup and splits."""
    columns = {name: [] for name in ("labels", "source", "source_id", "group", "sha256", "animated")}
    skipped = {name: [] for name in ("source", "source_id", "reason", "label")}
    blocks, seen, dup_skips, inputs, hashes = [], set(), 0, 0, []
    for shard in shards:
        with h5py.File(shard, "r") as f:
            sha = [s.decode() for s in f["sha256"][:]]
            keep = [i for i, s in enumerate(sha) if s not in seen and not seen.add(s)]
            dropped = sorted(set(range(len(sha))) - set(keep))
            inputs += json.loads(summary_path(shard).read_text())["inputs"]
            src = {"labels": f["labels"][:], "source": _col(f["source"]), "source_id": _col(f["source_id"]),
                   "group": _col(f["group"]), "sha256": sha, "animated": f["animated"][:]}
            for name, values in src.items():
                columns[name].extend(values[i] for i in keep)
            for i in dropped:
                for name, value in (("source", src["source"][i]), ("source_id", src["source_id"][i]),
                                    ("reason", reasons.DUPLICATE), ("label", src["labels"][i])):
                    skipped[name].append(value)
            dup_skips += len(dropped)
            sk = f["skipped"]
            skipped["source"] += _col(sk["source"])
            skipped["source_id"] += _col(sk["source_id"])
            skipped["reason"] += _col(sk["reason"])
            skipped["label"] += list(sk["label"][:])
            shape = f["images"].shape
            hashes.append(image_hashes(f["images"])[keep])
            blocks.append((shard, shape, keep))
    labels = np.asarray(columns["labels"], dtype=np.uint8)
    keys = split_keys(columns["group"], columns["sha256"], np.concatenate(hashes or [[]]), config)
    splits = assign_splits(strata(labels, columns["source"]), *keys, config.split)

    n = len(labels)
    size = blocks[0][1][1] if blocks else INPUT_SIZE
    layout = h5py.VirtualLayout(shape=(n, size, size, 3), dtype=np.uint8)
    dst = 0
    for shard, shape, keep in blocks:
        source = h5py.VirtualSource(os.path.relpath(shard, out.parent), "images", shape=shape)
        runs = np.split(np.asarray(keep, dtype=int), np.flatnonzero(np.diff(keep) != 1) + 1) if keep else []
        for run in runs:
            layout[dst:dst + len(run)] = source[run[0]:run[-1] + 1]
            dst += len(run)
    tmp = partial_path(out)
    with h5py.File(tmp, "w") as f:
        f.create_virtual_dataset("images", layout)
        f.create_dataset("labels", data=labels)
        for name in ("source", "source_id", "group"):
            f.create_dataset(name, data=np.array(columns[name], dtype=object), dtype=STR)
        f.create_dataset("sha256", data=np.array(columns["sha256"], dtype="S64"))
        f.create_dataset("animated", data=np.asarray(columns["animated"], dtype=np.uint8))
        g = f.create_group("skipped")
        for name in ("source", "source_id", "reason"):
            g.create_dataset(name, data=np.array(skipped[name], dtype=object), dtype=STR)
        g.create_dataset("label", data=np.asarray(skipped["label"], dtype=np.uint8))
        write_split(f, splits)
        counts = {"by_label": label_counts(labels), "by_split": split_counts(labels, splits),
                  "skipped": dict(sorted(Counter(skipped["reason"]).items()))}
        f.attrs.update(dataset_attrs(fit=config.fit, params=config.params(), counts=counts,
                                     extra={"shards": [os.path.relpath(s, out.parent) for s in shards]}))
    os.replace(tmp, out)
    return {"output": escape_name(str(out)), "inputs": inputs, "rows": n, "skipped_total": len(skipped["reason"]),
            "by_source": source_counts(Counter(columns["source"]), Counter(skipped["source"])), "animated_rows": int(np.sum(columns["animated"])), "shards": len(shards),
            "cross_shard_duplicates": dup_skips, **counts}
