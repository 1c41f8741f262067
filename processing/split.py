"""Deterministic, stratified, optionally grouped train/val/test assignment.

The assignment depends only on the set of (label, key) pairs and the seed,
never on input order, so a dataset built in one piece or in shards gets the
same splits. Rows that share a key (an exact duplicate, or a meme template
with ``--group-by template``) always land in the same split.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

import numpy as np

from .schema import LABEL_NAMES, SPLIT_NAMES



def parse_fractions(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(f"--split needs three non-negative fractions summing to 1, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def _rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def assign_splits(labels: np.ndarray, keys: list[str], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """Split code per row (0 train, 1 val, 2 test).

    Within each label, keys are ordered by a seeded hash and laid along [0, 1)
    by their row counts; a key goes to the split whose interval holds its
    midpoint. Proportions are therefore exact up to one key's size.
    """
    labels = np.asarray(labels)
    out = np.zeros(len(keys), dtype=np.uint8)
    bounds = np.cumsum(fractions)[:-1]
    rows_by_label_key: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (label, key) in enumerate(zip(labels.tolist(), keys)):
        rows_by_label_key[label][key].append(i)
    for label, by_key in rows_by_label_key.items():
        total = sum(len(v) for v in by_key.values())
        done = 0
        for key in sorted(by_key, key=lambda k: _rank(seed, k)):
            rows = by_key[key]
            mid = (done + len(rows) / 2) / total
            out[rows] = int(np.searchsorted(bounds, mid, side="right"))
            done += len(rows)
    return out


def source_counts(row_sources: list[str], skip_sources: list[str]) -> dict[str, dict[str, int]]:
    """Rows and skipped inputs per source, for the build summary."""
    out: dict[str, dict[str, int]] = {}
    for field_name, sources in (("rows", row_sources), ("skipped", skip_sources)):
        for source, n in Counter(sources).items():
            out.setdefault(source, {"rows": 0, "skipped": 0})[field_name] = n
    return out


def split_counts(labels: np.ndarray, splits: np.ndarray) -> dict[str, dict[str, int]]:
    c = Counter(zip(splits.tolist(), labels.tolist()))
    return {name: {label: c[(i, value)] for value, label in enumerate(LABEL_NAMES)} for i, name in enumerate(SPLIT_NAMES)}


def label_counts(labels: np.ndarray) -> dict[str, int]:
    labels = np.asarray(labels)
    return {label: int((labels == value).sum()) for value, label in enumerate(LABEL_NAMES)}
