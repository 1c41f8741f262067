"""Serving machinery with no web framework in it: micro-batching and admission.

``MicroBatcher`` gathers the images of concurrent requests into one model
call: the first waiting job opens a batch, which closes when it holds
``max_batch`` images or ``max_wait`` seconds have passed. The model runs in a
single worker thread, so the event loop keeps accepting requests meanwhile
and jobs that arrive during a call form the next, fuller batch.

``Gate`` bounds the work in flight: a request either gets a slot at once or
is turned away (the service answers 503), so overload never becomes an
ever-growing queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BatchResult:
    probabilities: np.ndarray   # one per image of the job
    queued_ms: float            # from submit until its model call started
    model_ms: float             # that model call's duration
    batch_images: int           # images in that model call, this job's included


@dataclass
class _Job:
    x: np.ndarray
    future: asyncio.Future
    submitted: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """``predict``: (N, H, W, C) uint8 -> (N,) probabilities; called in one thread, at most ``max_batch`` at once."""

    def __init__(self, predict, max_batch: int, max_wait: float):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._jobs: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task | None = None
        self.calls = 0          # model calls made; read by /healthz and the tests

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._jobs:
            job.future.cancel()
        self._jobs.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def waiting(self) -> int:
        """Jobs queued for the next model call."""
        return len(self._jobs)

    async def submit(self, x: np.ndarray) -> BatchResult:
        """Score the images of ``x`` together with whatever else is waiting."""
        job = _Job(x, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._arrived.set()
        return await job.future

    async def _gather(self) -> list[_Job]:
        """Jobs for one model call: the first waiting one, then more until full or ``max_wait`` is over."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._jobs.popleft()]
        count = len(batch[0].x)
        deadline = time.perf_counter() + self.max_wait
        while count < self.max_batch:
            if self._jobs:
                job = self._jobs.popleft()
                batch.append(job)
                count += len(job.x)
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:   # TimeoutError itself from Python 3.11 on
                break
        return [job for job in batch if not job.future.done()]   # requests that timed out meanwhile are dropped

    def _call(self, x: np.ndarray) -> np.ndarray:
        """The model on ``x`` in chunks of at most ``max_batch`` (an occlusion job alone can exceed it)."""
        chunks = [self.predict(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1) for c in chunks])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            x = np.concatenate([job.x for job in batch])
            start = time.perf_counter()
            try:
                probs = await loop.run_in_executor(self._executor, self._call, x)
            except Exception as exc:  # noqa: BLE001  (handed to every waiting request)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.calls += 1
            model_ms = (time.perf_counter() - start) * 1000
            offset = 0
            for job in batch:
                n = len(job.x)
                if not job.future.done():
                    job.future.set_result(BatchResult(probs[offset:offset + n], (start - job.submitted) * 1000,
                                                      model_ms, len(x)))
                offset += n


class Gate:
    """At most ``capacity`` holders at once; ``try_enter`` never waits."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.in_use = 0

    def try_enter(self) -> bool:
        if self.in_use >= self.capacity:
            return False
        self.in_use += 1
        return True

    def leave(self) -> None:
        self.in_use -= 1
