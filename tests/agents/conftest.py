from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.store import queries
from hybrid_agent.triggers.templates import goal_of


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def scripted_worker(settings, embedded_bus, sessions):
    """A worker on the embedded bus whose LLM is a script (the LLM alone, no experts)."""
    from hybrid_agent.agents.sandbox import make_sandbox
    from hybrid_agent.agents.worker import Worker
    from tests.fakes import FakeScriptedLLM

    def make(script) -> Worker:
        configured = settings.model_copy(update={"experts": [], "ablation": "llm_only"})
        return Worker(settings=configured, bus=embedded_bus, sessions=sessions, llm=FakeScriptedLLM(list(script)),
                      sandbox=make_sandbox("rlimit", max_output_chars=1000))
    return make


def call(tool: str, **args) -> list[str]:
    """One scripted answer: a single call."""
    return [json.dumps({"tool": tool, "args": args})]


async def queue_task(sessions, bus: Bus, task_id: str, **task) -> None:
    """Store a queued task (goal, workspace, template, ... as given; a template's task
    gets the template's goal, as the router would give it) and publish it."""
    if "template" in task and "goal" not in task:
        task["goal"] = goal_of(task["template"], task.get("params") or {})
    row = {"id": task_id, "event_id": None, "goal": "do it", "status": "queued", "queue": "default",
           "requested_by": "ops-bot", **task}
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[row])
    await bus.publish_tasks([TaskMessage(task_id=task_id, queue=row["queue"], priority=row.get("priority", 0))])
