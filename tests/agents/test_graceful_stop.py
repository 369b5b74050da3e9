"""A worker told to stop (SIGTERM sets its stop event) finishes the step it is in, hands
the task back (queued, message nak'd) and another worker finishes it: no task is left
``running`` and no step runs twice."""

from __future__ import annotations

import asyncio

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.store import queries
from tests.agents.conftest import call, queue_task
from tests.fakes import FakeScriptedLLM
from tests.worker_support import finished, run_worker_until, task_status


class FakeStoppingLLM(FakeScriptedLLM):
    """A script; answering its first proposal, it asks the worker to stop (as SIGTERM would)."""

    def __init__(self, script, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(script)
        self.stop, self.loop = stop, loop

    def propose(self, messages, schema, k, *, exclude=()):
        if not self.prompts:   # on the worker's loop, and wait until it is set
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=10)
        return super().propose(messages, schema, k)

    async def _stop(self) -> None:
        self.stop.set()


async def test_a_stopping_worker_hands_its_task_back_and_another_finishes_it(settings, sessions, embedded_bus,
                                                                            tmp_path):
    workspace = tmp_path / "ws"
    await queue_task(sessions, embedded_bus, "t1", workspace=str(workspace))
    configured = settings.model_copy(update={"experts": [], "ablation": "llm_only"})
    stop = asyncio.Event()
    first = Worker(settings=configured, bus=embedded_bus, sessions=sessions,
                   llm=FakeStoppingLLM([call("write_file", path="a.txt", content="a")], stop,
                                       asyncio.get_running_loop()),
                   sandbox=make_sandbox("rlimit", max_output_chars=1000))
    await first.run(stop)   # returns once stopped
    assert await task_status(sessions, "t1") == "queued"

    second = Worker(settings=configured, bus=embedded_bus, sessions=sessions,
                    # The first worker's change is recalled: the second may finish at once.
                    llm=FakeScriptedLLM([call("finish", summary="done", success=True)]),
                    sandbox=make_sandbox("rlimit", max_output_chars=1000))
    await run_worker_until(second, lambda: finished(sessions, "t1"))
    async with sessions() as session:
        task = await queries.get_task(session, task_id="t1")
        steps = await queries.get_steps(session, task_id="t1")
        kinds = [j.kind for j in await queries.journal_for_task(session, task_id="t1", event_id=None)]
    assert task.status == "succeeded" and [s.n for s in steps] == [1, 2]
    assert kinds.count("task.handed_back") == 1 and kinds.count("task.delivered") == 2
    assert (workspace / "a.txt").read_text() == "a"
