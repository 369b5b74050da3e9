"""One trigger publisher per cluster: a lease elects it, and another process takes over when
it dies (with the Redis lease and the embedded, in-process one)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.waiting import eventually
from hybrid_agent.triggers.leader import lead

class WorkRecorder:
    """Work for ``lead``: records who runs it and checks that no two run at once."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.started: list[str] = []
        self.overlaps: list[set[str]] = []

    def work(self, name: str, *, fail: bool = False) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def run(work_stop: asyncio.Event) -> None:
            self.running.add(name)
            self.started.append(name)
            if len(self.running) > 1:
                self.overlaps.append(set(self.running))
            try:
                if fail:
                    raise RuntimeError("the store is down")
                await work_stop.wait()
            finally:
                self.running.discard(name)
        return run


async def test_two_lead_loops_run_the_work_one_at_a_time_and_the_survivor_takes_over(new_lease):
    ttl = 1.0
    recorder = WorkRecorder()
    stop = asyncio.Event()
    loops = {name: asyncio.create_task(lead(new_lease(name, ttl), stop, recorder.work(name), ttl_s=ttl))
             for name in ("a", "b")}
    try:
        await eventually(lambda: len(recorder.running) == 1, "one of them leads")
        (leader,) = recorder.running
        other = "b" if leader == "a" else "a"
        loops[leader].cancel()   # the leader's process dies: its lease is not released
        await asyncio.gather(loops[leader], return_exceptions=True)
        assert leader not in recorder.running
        await eventually(lambda: other in recorder.running, "the survivor takes over after the ttl")
        assert recorder.overlaps == []
    finally:
        stop.set()
        await asyncio.gather(*loops.values(), return_exceptions=True)


async def test_stopping_the_leader_stops_its_work_and_releases_the_lease(new_lease):
    recorder = WorkRecorder()
    stop = asyncio.Event()
    changes: list[bool] = []
    loop = asyncio.create_task(lead(new_lease("a", 5), stop, recorder.work("a"), ttl_s=5, on_change=changes.append))
    await eventually(lambda: "a" in recorder.running, "a leads")
    stop.set()
    await loop
    assert recorder.running == set() and changes == [True, False]
    assert await new_lease("b", 5).acquire(), "released at once, not left to expire"


async def test_a_leader_whose_lease_is_taken_stops_its_work(new_lease):
    recorder = WorkRecorder()
    stop = asyncio.Event()
    ttl = 0.3
    a = new_lease("a", ttl)
    loop = asyncio.create_task(lead(a, stop, recorder.work("a"), ttl_s=ttl))
    try:
        await eventually(lambda: "a" in recorder.running, "a leads")
        # Someone else takes the key (as when a leader paused past its ttl wakes up).
        b = new_lease("b", 60)

        async def take_over() -> bool:
            await a.release()
            return await b.acquire()
        await eventually(take_over, "b takes the lease")
        await eventually(lambda: "a" not in recorder.running, "a stops its work on losing the lease")
        assert not loop.done(), "a keeps contesting"
    finally:
        stop.set()
        await loop


async def test_failing_work_gives_the_lease_up_and_is_tried_again_later(new_lease):
    recorder = WorkRecorder()
    stop = asyncio.Event()
    ttl = 0.3
    loop = asyncio.create_task(lead(new_lease("a", ttl), stop, recorder.work("a", fail=True), ttl_s=ttl))
    try:
        await eventually(lambda: len(recorder.started) >= 2, "the work is started again after failing")
        assert not loop.done()
    finally:
        stop.set()
        await loop
