"""Deterministic, stratified, optionally grouped train/val/test assignment.

The assignment depends only on the set of (label, key) pairs and the seed,
never on input order, so a dataset built in one piece or in shards gets the
same splits. Rows that share a key (an exact duplicate, or a meme template
with ``--group-by template``) always land in the same split.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable

import numpy as np

from .schema import LABEL_NAMES, SPLIT_NAMES


def parse_fractions(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(f"--split needs three non-negative fractions summing to 1, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def rank_keys(names: Iterable[str | bytes], count: int, seed: int) -> np.ndarray:
    """Each of ``count`` keys' place in the seeded order: SHA-256 of "<seed>\\0<name>" (UTF-8), as fixed-width bytes."""
    prefix = f"{seed}\x00".encode()
    digests = (hashlib.sha256(prefix + (n.encode() if isinstance(n, str) else n)).digest() for n in names)
    return np.fromiter(digests, dtype="S32", count=count)


def assign_splits(labels: np.ndarray, key_ids: np.ndarray, ranks: np.ndarray,
                  fractions=(0.8, 0.1, 0.1)) -> np.ndarray:
    """Split code per row (0 train, 1 val, 2 test); row i has key ``key_ids[i]``, key k comes ``ranks[k]``-th.

    Within each label, the label's keys are ordered by rank and laid along
    [0, 1) by their row counts; a key goes to the split whose interval holds
    its midpoint. Proportions are therefore exact up to one key's size.
    """
    labels, key_ids = np.asarray(labels, np.int64), np.asarray(key_ids, np.int64)
    if not len(labels):
        return np.zeros(0, np.uint8)
    nkeys = len(ranks)
    position = np.empty(nkeys, np.int64)
    position[np.argsort(ranks, kind="stable")] = np.arange(nkeys)
    pairs, row_pair, sizes = np.unique(labels * nkeys + key_ids, return_inverse=True, return_counts=True)
    pair_label = pairs // nkeys
    order = np.lexsort((position[pairs % nkeys], pair_label))          # by label, then by key rank
    sizes, pair_label = sizes[order], pair_label[order]
    ends = np.cumsum(sizes)
    firsts = np.flatnonzero(np.r_[True, pair_label[1:] != pair_label[:-1]])
    run_lengths = np.diff(np.r_[firsts, len(order)])
    before = np.repeat((ends - sizes)[firsts], run_lengths)            # rows of earlier labels
    total = np.repeat(ends[np.r_[firsts[1:], len(order)] - 1], run_lengths) - before
    mid = (ends - sizes - before + sizes / 2) / total
    split_of_pair = np.empty(len(order), np.uint8)
    split_of_pair[order] = np.searchsorted(np.cumsum(fractions)[:-1], mid, side="right")
    return split_of_pair[row_pair.ravel()]


def source_counts(rows: Counter[str], skipped: Counter[str]) -> dict[str, dict[str, int]]:
    """Rows and skipped inputs per source, for the build summary, from the two columns' value counts."""
    return {source: {"rows": rows[source], "skipped": skipped[source]} for source in sorted(rows.keys() | skipped.keys())}


def split_counts(labels: np.ndarray, splits: np.ndarray) -> dict[str, dict[str, int]]:
    c = Counter(zip(splits.tolist(), labels.tolist()))
    return {name: {label: c[(i, value)] for value, label in enumerate(LABEL_NAMES)} for i, name in enumerate(SPLIT_NAMES)}


def label_counts(labels: np.ndarray) -> dict[str, int]:
    labels = np.asarray(labels)
    return {label: int((labels == value).sum()) for value, label in enumerate(LABEL_NAMES)}
