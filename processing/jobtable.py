"""The build's work list on disk: each input pickled to a spool file, only a NumPy index in memory.

A full-size build has ~120,000 inputs (57,652 archive rows, 10,158 imgur links,
50,000 CIFAR pictures). Held as Python objects (paths, ids, hashes) they cost
~400 bytes each in the parent for the whole build, and every forked decode
worker starts with a share of them. The table holds 32 bytes per input: its
key's write-order digest, where its pickle lies in the spool file, and
whether it is a skip. Inputs are read back one at a time, in write order,
by ``skips()`` and ``jobs()``.

The spool file is written and read by one build in its own private temporary
folder (``pipeline.build``), so unpickling it trusts nothing outside the build.
"""

from __future__ import annotations

import os
import pickle
from array import array
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .manifest import KEY_DIGEST, key_digest
from .sources import Input, Job, PixelJob, Skip


def key_digests(keys: Iterable[tuple[str, str]]) -> np.ndarray:
    return np.array([key_digest(k) for k in keys], dtype=KEY_DIGEST)


class JobTable:
    """Inputs appended with ``add``; after ``finish`` each distinct key's first input, minus the keys done."""

    def __init__(self, spool_dir: str | Path):
        self._path = Path(spool_dir) / "inputs.pickles"
        self._fh = open(self._path, "w+b")
        self._digests = bytearray()
        self._offsets = array("q")
        self._is_skip = bytearray()
        self._order: np.ndarray | None = None
        self.total = 0    # distinct keys, set by finish

    def add(self, item: Input) -> None:
        self._digests += key_digest(item.key)
        self._offsets.append(self._fh.tell())
        self._is_skip.append(isinstance(item, Skip))
        pickle.dump(item, self._fh, protocol=pickle.HIGHEST_PROTOCOL)

    def finish(self, done: np.ndarray) -> None:
        """Keep the first input of each key (in the order added), drop the keys whose digest is in ``done``,
        and order the rest by key digest: rows are written in that order, so neighbouring rows mix sources and
        labels and a block-shuffled reader (training.data) gets mixed batches at slice speed."""
        self._offsets.append(self._fh.tell())   # the end of the last pickle
        self._fh.flush()
        digests = np.frombuffer(bytes(self._digests), dtype=KEY_DIGEST)
        del self._digests
        order = np.argsort(digests, kind="stable")          # equal digests keep the order they were added in
        first = np.ones(len(order), bool)
        first[1:] = digests[order][1:] != digests[order][:-1]
        order = order[first]
        self.total = len(order)
        self._order = order[~np.isin(digests[order], done)]

    def __len__(self) -> int:
        """Inputs left to do (after ``finish``)."""
        return len(self._order)

    def _read(self, i: int) -> Input:
        start, end = self._offsets[i], self._offsets[i + 1]
        return pickle.loads(os.pread(self._fh.fileno(), end - start, start))

    def _where(self, skip: bool) -> Iterator[Input]:
        rows = self._order[np.frombuffer(self._is_skip, bool)[self._order] == skip]
        return (self._read(int(i)) for i in rows)

    def skips(self) -> Iterator[Skip]:
        return self._where(True)

    def jobs(self) -> Iterator[Job | PixelJob]:
        return self._where(False)

    def __enter__(self) -> "JobTable":
        return self

    def __exit__(self, *exc) -> None:
        """Close the spool file and let the index go; ``total`` stays."""
        self._fh.close()
        self._offsets = self._is_skip = self._order = None
