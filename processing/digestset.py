"""A set of hex digests at 16 bytes each: how a build remembers the SHA-256 of every row it wrote.

A Python set of 64-character strings costs ~130 bytes per row (~12 MB for a
full-size build, growing with it). Here the first 128 bits of each digest sit
in a sorted NumPy array, with the newest few in a small set that is merged in
when it fills; 128 bits leave no room for an accidental collision.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

PREFIX = "S16"
MERGE_EVERY = 4096


def _prefix(hex_digest: str | bytes) -> bytes:
    return bytes.fromhex(hex_digest[:32].decode() if isinstance(hex_digest, bytes) else hex_digest[:32])


class DigestSet:
    def __init__(self, digests: Iterable[str | bytes] = ()):
        self._sorted = np.unique(np.array([_prefix(d) for d in digests], dtype=PREFIX))
        self._recent: set[bytes] = set()

    def __contains__(self, hex_digest: str) -> bool:
        p = _prefix(hex_digest)
        if p in self._recent:
            return True
        probe = np.array(p, dtype=PREFIX)[()]   # as the array holds it (NumPy drops trailing zero bytes)
        i = int(np.searchsorted(self._sorted, probe))
        return i < len(self._sorted) and self._sorted[i] == probe

    def add(self, hex_digest: str) -> None:
        self._recent.add(_prefix(hex_digest))
        if len(self._recent) >= MERGE_EVERY:
            recent = np.sort(np.array(list(self._recent), dtype=PREFIX))
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)   # one new array
            self._recent.clear()
