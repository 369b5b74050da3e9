"""Running a worker in a test until a condition holds, and the questions tests ask of a task."""

from __future__ import annotations

import asyncio

from hybrid_agent.agents.worker import Worker
from hybrid_agent.store import queries


async def run_worker_until(worker: Worker, condition, timeout_s: float = 30) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            while not await condition():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running


async def task_status(sessions, task_id: str) -> str:
    async with sessions() as session:
        return (await queries.get_task(session, task_id=task_id)).status


async def finished(sessions, task_id: str) -> bool:
    return await task_status(sessions, task_id) in queries.TERMINAL
