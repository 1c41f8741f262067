"""A set of fixed-width digests as a sorted NumPy array: membership for ~100,000 keys at their bytes' cost.

A Python set of 64-character SHA-256 strings costs ~130 bytes a member (~12 MB
for a full-size build's rows); of (source, source_id) tuples, ~200 (a resumed
archive crawl's 57,652 done rows: ~12 MB held for the whole crawl). Here each
member is its digest, ``width`` bytes in a sorted array, with the newest few
in a small set that is merged in when it fills.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

MERGE_EVERY = 4096


def sha256_prefix(hex_digest: str | bytes) -> bytes:
    """The first 128 bits of a hex SHA-256, as bytes: no room for an accidental collision."""
    return bytes.fromhex(hex_digest[:32].decode() if isinstance(hex_digest, bytes) else hex_digest[:32])


class DigestSet:
    def __init__(self, digests: Iterable[bytes] = (), width: int = 16):
        self._dtype = f"S{width}"
        self._sorted = np.unique(np.fromiter(digests, dtype=self._dtype))
        self._recent: set[bytes] = set()

    def __contains__(self, digest: bytes) -> bool:
        if digest in self._recent:
            return True
        probe = np.array(digest, dtype=self._dtype)[()]   # as the array holds it (NumPy drops trailing zero bytes)
        i = int(np.searchsorted(self._sorted, probe))
        return i < len(self._sorted) and self._sorted[i] == probe

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, digest: bytes) -> None:
        """Add a digest not yet in the set."""
        self._recent.add(digest)
        if len(self._recent) >= MERGE_EVERY:
            recent = np.sort(np.array(list(self._recent), dtype=self._dtype))
            self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)   # one new array
            self._recent.clear()
