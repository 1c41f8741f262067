"""Deterministic, stratified, optionally grouped train/val/test assignment.

Each (label, source) stratum is split in the given proportions, so every
source has its share of validation and test rows (a source of a few large
templates is not left wholly in train). The assignment depends only on the
set of (label, source, key) rows and the seed, never on input order, so a
dataset built in one piece or in shards gets the same splits. Rows that
share a key (an exact duplicate, a meme template with ``--group-by
template``, near-duplicate pictures) always land in the same split.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable

import numpy as np

from .schema import LABEL_NAMES, SPLIT_NAMES


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(0 <= p <= 1 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:   # NaN fails 0 <= p
        raise ValueError(f"--split needs three non-negative fractions summing to 1, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def rank_keys(names: Iterable[str | bytes], count: int, seed: int) -> np.ndarray:
    """Each of ``count`` keys' place in the seeded order: SHA-256 of "<seed>\\0<name>" (UTF-8), as fixed-width bytes."""
    prefix = f"{seed}\x00".encode()
    digests = (hashlib.sha256(prefix + (n.encode() if isinstance(n, str) else n)).digest() for n in names)
    return np.fromiter(digests, dtype="S32", count=count)


def strata(labels: np.ndarray, sources: Iterable[str]) -> np.ndarray:
    """Each row's stratum, (label, source) as one integer ordered by label, then source name (``sources`` is
    streamed, one name per row)."""
    codes: dict[str, int] = {}
    first_seen = np.fromiter((codes.setdefault(s, len(codes)) for s in sources), np.int64, count=len(labels))
    in_name_order = np.empty(len(codes), np.int64)
    in_name_order[[codes[name] for name in sorted(codes)]] = np.arange(len(codes))
    return np.asarray(labels, np.int64) * max(len(codes), 1) + in_name_order[first_seen]


def assign_splits(row_strata: np.ndarray, key_ids: np.ndarray, ranks: np.ndarray,
                  fractions=(0.8, 0.1, 0.1)) -> np.ndarray:
    """Split code per row (0 train, 1 val, 2 test); row i is in stratum ``row_strata[i]`` and has key
    ``key_ids[i]``; key k's place in the seeded order is ``ranks[k]`` (``rank_keys``).

    A key joins one stratum, the smallest among its rows', so its rows never
    straddle splits. Within each stratum, keys are ordered by rank and laid
    along [0, 1) by their row counts; a key goes to the split whose interval
    holds its midpoint. Every stratum (each label of each source) is therefore
    split in the given proportions, exactly up to one key's size.
    """
    row_strata, key_ids = np.asarray(row_strata, np.int64), np.asarray(key_ids, np.int64)
    if not len(key_ids):
        return np.zeros(0, np.uint8)
    nkeys = len(ranks)
    key_stratum = np.full(nkeys, np.iinfo(np.int64).max)
    np.minimum.at(key_stratum, key_ids, row_strata)
    key_rows = np.bincount(key_ids, minlength=nkeys)
    position = np.empty(nkeys, np.int64)
    position[np.argsort(ranks, kind="stable")] = np.arange(nkeys)
    used = np.flatnonzero(key_rows)
    order = used[np.lexsort((position[used], key_stratum[used]))]     # by stratum, then by key rank
    sizes, stratum = key_rows[order], key_stratum[order]
    ends = np.cumsum(sizes)
    firsts = np.flatnonzero(np.r_[True, stratum[1:] != stratum[:-1]])
    run_lengths = np.diff(np.r_[firsts, len(order)])
    before = np.repeat((ends - sizes)[firsts], run_lengths)            # rows of earlier strata
    total = np.repeat(ends[np.r_[firsts[1:], len(order)] - 1], run_lengths) - before
    mid = (ends - sizes - before + sizes / 2) / total
    split_of_key = np.zeros(nkeys, np.uint8)
    split_of_key[order] = np.searchsorted(np.cumsum(fractions)[:-1], mid, side="right")
    return split_of_key[key_ids]


def source_counts(rows: Counter[str], skipped: Counter[str]) -> dict[str, dict[str, int]]:
    """Rows and skipped inputs per source, for the build summary, from the two columns' value counts."""
    return {source: {"rows": rows[source], "skipped": skipped[source]} for source in sorted(rows.keys() | skipped.keys())}


def split_counts(labels: np.ndarray, splits: np.ndarray) -> dict[str, dict[str, int]]:
    c = Counter(zip(splits.tolist(), labels.tolist()))
    return {name: {label: c[(i, value)] for value, label in enumerate(LABEL_NAMES)} for i, name in enumerate(SPLIT_NAMES)}


def label_counts(labels: np.ndarray) -> dict[str, int]:
    labels = np.asarray(labels)
    return {label: int((labels == value).sum()) for value, label in enumerate(LABEL_NAMES)}
