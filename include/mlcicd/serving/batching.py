"""Adaptive batching: concurrent requests scored in one call, off the event loop.

A prediction costs nearly the same for 1 row as for 20, so requests that arrive together are
scored together. The batcher takes everything queued while the previous batch was scored, up to
``max_rows``; it waits up to ``max_wait_s`` for more only while other requests are still being
read and parsed (``arriving``), so a lone caller never waits. Scoring runs in one thread of its
own: the event loop keeps answering ``/health`` and reading the next requests meanwhile.

If a batch fails, its requests are scored one by one, so one caller's input never fails another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mlcicd.serving.inputs import Columns

log = logging.getLogger("mlcicd.serving")


class Batcher:
    def __init__(
        self,
        score: Callable[[Columns], np.ndarray],
        max_rows: int,
        max_wait_s: float,
        observe: Callable[[int, int], None] | None = None,
        initializer: Callable[[], Any] | None = None,
    ) -> None:
        self.score, self.max_rows, self.max_wait_s = score, max_rows, max_wait_s
        self.observe = observe  # (requests, rows) of each batch scored
        self.arriving = 0  # requests being read or parsed: worth a short wait for
        self._queue: asyncio.Queue[tuple[Columns, int, asyncio.Future[np.ndarray]]] | None = None
        # ``initializer`` runs in the scoring thread (native thread-pool limits are per thread).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="score", initializer=initializer)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def predict(self, cols: Columns, rows: int) -> np.ndarray:
        """This request's predictions, scored with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # the first request, or a new event loop
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._run())
        elif self._task is None or self._task.done():  # it died: start again on what is queued
            log.error(
                "the batcher had stopped (%s): starting it again", self._task and self._task.exception()
            )
            self._task = loop.create_task(self._run())
        future: asyncio.Future[np.ndarray] = loop.create_future()
        await self._queue.put((cols, rows, future))
        return await future

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            rows = batch[0][1]
            deadline = time.monotonic() + self.max_wait_s
            while rows < self.max_rows:
                if not self._queue.empty():
                    item = self._queue.get_nowait()
                elif self.arriving > 0 and (left := deadline - time.monotonic()) > 0:
                    try:
                        item = await asyncio.wait_for(self._queue.get(), left)
                    except TimeoutError:
                        break
                else:
                    break
                batch.append(item)
                rows += item[1]
            batch = [b for b in batch if not b[2].done()]  # callers that gave up (timed out)
            if batch:
                await self._score(loop, batch, rows)

    async def _score(
        self, loop: Any, batch: list[tuple[Columns, int, asyncio.Future[np.ndarray]]], rows: int
    ) -> None:
        try:
            if self.observe is not None:
                self.observe(len(batch), sum(b[1] for b in batch))
        except Exception as exc:  # metrics must never stop scoring
            log.warning("could not record a batch's size: %s", exc)
        try:
            if len(batch) == 1:
                results = [await loop.run_in_executor(self._executor, self.score, batch[0][0])]
            else:
                merged = {k: np.concatenate([b[0][k] for b in batch]) for k in batch[0][0]}
                scored = await loop.run_in_executor(self._executor, self.score, merged)
                bounds = np.cumsum([0] + [b[1] for b in batch])
                results = [scored[bounds[i] : bounds[i + 1]] for i in range(len(batch))]
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][2], error=exc)
                return
            for cols, n, future in batch:  # one by one: a bad request fails only itself
                await self._score(loop, [(cols, n, future)], n)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
