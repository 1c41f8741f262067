"""Peak memory of a process and everything it starts: the one sampler every benchmark uses.

Summed RSS counts a page shared by a parent and its forked workers in every
process; summed PSS (proportional set size) counts it once, split between
them, so it is the fairer figure for pools of forked workers. Both are kept.
"""

from __future__ import annotations

import threading

import psutil


def tree_memory(root: psutil.Process, pss: bool = False) -> tuple[int, int]:
    """(summed RSS, summed PSS or 0) of ``root`` and all its descendants now; psutil.Error if it is gone."""
    tree = [root, *root.children(recursive=True)]
    if not pss:
        return sum(p.memory_info().rss for p in tree), 0
    full = [p.memory_full_info() for p in tree]
    return sum(m.rss for m in full), sum(m.pss for m in full)


class PeakMemory:
    """The highest ``tree_memory`` of a process while in the ``with`` block, sampled every ``interval`` seconds.

    ``peak_rss`` and ``peak_pss`` (0 unless ``pss``); a process that has ended is simply no longer sampled.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.02, pss: bool = False):
        self.proc, self.interval, self.pss = psutil.Process(pid), interval, pss
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()

    def sample(self) -> None:
        try:
            rss, pss = tree_memory(self.proc, self.pss)
        except psutil.Error:
            return
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "PeakMemory":
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
