"""``--shards N``: build the dataset as N deterministic shards, then stitch them.

Each input goes to shard ``sha1(source, source_id) mod N``; every shard is an
ordinary build (``build_h5`` with ``--shard-index``) written to
``<out>.shards/``, so a finished shard is never rebuilt and an interrupted
one resumes. Shard tasks run on a local process pool, or on a Dask cluster
with ``--scheduler tcp://host:8786`` (the shard folder must be reachable from
every worker); a failed task is retried. The master file maps the shards'
``images`` through an HDF5 virtual dataset (readers see one dataset), copies
the small per-row columns, drops exact duplicates across shards, and assigns
splits with the same order-independent rule as a one-piece build, so the
result holds the same images, labels and splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from . import reasons
from .split import SPLIT_NAMES, assign_splits, source_counts, split_counts
from .writer import LABEL_NAMES, SCHEMA_VERSION, STR, partial_path

RETRIES = 2


def shard_of(key: tuple[str, str], count: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{key[0]}\x00{key[1]}".encode()).digest()[:8], "big") % count


def shard_dir(out: Path) -> Path:
    return out.with_name(out.name + ".shards")


def shard_path(out: Path, index: int, count: int) -> Path:
    return shard_dir(out) / f"shard-{index:05d}-of-{count:05d}.h5"


def shard_argv(argv: list[str], out: Path, index: int, count: int) -> list[str]:
    """The user's command line, narrowed to one shard."""
    drop_with_value = {"--shards", "--scheduler", "--out", "--workers"}
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in drop_with_value:
            skip = "=" not in a
            continue
        if name in ("--resume", "--overwrite"):
            continue
        kept.append(a)
    path = shard_path(out, index, count)
    resume = ["--resume"] if partial_path(path).exists() else []
    return [*kept, "--out", str(path), "--shard-index", str(index), "--shard-count", str(count),
            "--workers", "1", "--no-progress", *resume]


def build_shard(argv: list[str]) -> str:
    """One shard task (top-level so process pools and Dask can ship it)."""
    from .build_h5 import build, parse_args

    args = parse_args(argv)
    if not args.out.exists():
        build(args)
    return str(args.out)


def _with_retries(argv: list[str]) -> str:
    for attempt in range(RETRIES + 1):
        try:
            return build_shard(argv)
        except Exception:
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")


def run_shards(argvs: list[list[str]], scheduler: str | None, workers: int) -> list[str]:
    if scheduler:
        from dask.distributed import Client

        with Client(scheduler) as client:
            futures = client.map(build_shard, argvs, retries=RETRIES, pure=False)
            return client.gather(futures)
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(argvs)))) as pool:
        return list(pool.map(_with_retries, argvs))


def _col(ds) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in ds[:]]


def stitch(shards: list[Path], out: Path, *, fractions, seed: int, group_by: str, params: dict) -> dict:
    """Master file over the shards: VDS images, copied columns, global dedup and splits."""
    columns = {name: [] for name in ("labels", "source", "source_id", "group", "sha256", "animated")}
    skipped = {name: [] for name in ("source", "source_id", "reason", "label")}
    blocks, seen, dup_skips, inputs = [], set(), 0, 0
    for shard in shards:
        with h5py.File(shard, "r") as f:
            sha = [s.decode() for s in f["sha256"][:]]
            keep = [i for i, s in enumerate(sha) if s not in seen and not seen.add(s)]
            dropped = sorted(set(range(len(sha))) - set(keep))
            inputs += json.loads(shard.with_suffix(".summary.json").read_text())["inputs"]
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
            blocks.append((shard, shape, keep))
    labels = np.asarray(columns["labels"], dtype=np.uint8)
    keys = [g if (group_by == "template" and g) else s for g, s in zip(columns["group"], columns["sha256"])]
    splits = assign_splits(labels, keys, fractions, seed)

    n = len(labels)
    size = blocks[0][1][1] if blocks else 128
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
        ds = f.create_dataset("split", data=splits)
        ds.attrs["names"] = json.dumps(SPLIT_NAMES)
        counts = {"by_label": {"non_meme": int((labels == 0).sum()), "meme": int((labels == 1).sum())},
                  "by_split": split_counts(labels, splits), "skipped": dict(sorted(Counter(skipped["reason"]).items()))}
        f.attrs.update({"schema_version": SCHEMA_VERSION, "label_names": json.dumps(LABEL_NAMES),
                        "split_names": json.dumps(SPLIT_NAMES), "fit": params["fit"],
                        "params": json.dumps(params, sort_keys=True), "counts": json.dumps(counts, sort_keys=True),
                        "shards": json.dumps([os.path.relpath(s, out.parent) for s in shards]),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    os.replace(tmp, out)
    return {"output": str(out), "inputs": inputs, "rows": n, "skipped_total": len(skipped["reason"]),
            "by_source": source_counts(columns["source"], skipped["source"]), "animated_rows": int(np.sum(columns["animated"])), "shards": len(shards),
            "cross_shard_duplicates": dup_skips, **counts}
