"""Micro-batching: concurrent requests are queued and run together in one model call, off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class Job:
    key: Any  # requests run together only when their key matches (e.g. the same task list)
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects jobs for up to ``max_wait`` seconds or ``max_batch`` texts, then runs ``run(key, texts)``
    in a worker thread and hands each job its slice of the results. If a combined batch fails, its jobs run
    again one by one, so a bad request fails alone and its neighbours get the answers they get alone.

    ``run`` must return one result per text, in order. With ``enabled=False`` every job runs alone (for
    comparison in the load benchmark).
    """

    def __init__(self, run: Callable[[Any, list[str]], list[Any]], max_batch: int = 64,
                 max_wait: float = 0.005, enabled: bool = True) -> None:
        self.run, self.max_batch, self.max_wait, self.enabled = run, max_batch, max_wait, enabled
        self.queue: asyncio.Queue[Job] | None = None
        # One dedicated inference thread: batches run one after another on the same thread, so the model is
        # never called concurrently and its allocations stay in one malloc arena (asyncio.to_thread's pool
        # spreads them over several threads, and the server's RSS kept climbing under load).
        self.executor: ThreadPoolExecutor | None = None
        self.worker: asyncio.Task | None = None
        self.stats = {"requests": 0, "batches": 0, "texts": 0, "largest_batch": 0}

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyhead-inference")
        self.worker = asyncio.create_task(self.loop())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, key: Any, texts: list[str]) -> list[Any]:
        assert self.queue is not None, "MicroBatcher.start() was not called"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.stats["requests"] += 1
        await self.queue.put(Job(key, texts, future))
        return await future

    async def loop(self) -> None:
        assert self.queue is not None
        while True:
            first = await self.queue.get()
            jobs = [first]
            size = len(first.texts)
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while self.enabled and size < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job.texts)
            await self.execute(jobs)

    async def execute(self, jobs: list[Job]) -> None:
        groups: dict[Any, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        for key, members in groups.items():
            texts = [t for job in members for t in job.texts]
            self.stats["batches"] += 1
            self.stats["texts"] += len(texts)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(texts))
            loop = asyncio.get_running_loop()
            try:
                results = await loop.run_in_executor(self.executor, self.run, key, texts)
            except Exception as exc:  # noqa: BLE001 - one request's failure must not fail its neighbours
                if len(members) > 1:
                    await self.run_alone(key, members)
                elif not members[0].future.done():
                    members[0].future.set_exception(exc)
                continue
            start = 0
            for job in members:
                if not job.future.done():
                    job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)

    async def run_alone(self, key: Any, members: list[Job]) -> None:
        """After a combined batch failed: each job runs by itself, so only the one that fails gets its error."""
        loop = asyncio.get_running_loop()
        for job in members:
            if job.future.done():
                continue
            try:
                result = await loop.run_in_executor(self.executor, self.run, key, job.texts)
            except Exception as exc:  # noqa: BLE001 - handed to that request alone
                job.future.set_exception(exc)
                continue
            job.future.set_result(result)
