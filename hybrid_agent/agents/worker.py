"""The worker: a member of the one durable pull consumer on TASKS. Each task message is
acked when its task is finished, nak'd with a delay when infrastructure failed (the task
did not), and dead-lettered after ``max_deliver`` deliveries."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.agents.experts import Playbook, make_experts
from hybrid_agent.agents.hybrid import Hybrid, load_hybrid
from hybrid_agent.agents.assembly import build_loop
from hybrid_agent.agents.loop import AgentLoop, Interrupted, NeedsApproval, StepRecord
from hybrid_agent.agents.sandbox import Sandbox
from hybrid_agent.agents.workspace import WorkspaceNotAllowed, resolve_workspace
from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.consumer import fetch_batches, with_heartbeat
from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.config import Settings
from hybrid_agent.models.llm.base import LLM
from hybrid_agent.policies.engine import CallClassifier
from hybrid_agent.policies.policy_file import Policy, load_policy
from hybrid_agent.store import queries

log = logging.getLogger(__name__)


PLAYBOOK_STEPS = 2000   # the newest succeeded steps the playbook expert recalls from

@dataclass(frozen=True)
class Delivery:
    stream_seq: int
    count: int


class Worker:
    def __init__(self, *, settings: Settings, bus: Bus, sessions: async_sessionmaker[AsyncSession], llm: LLM,
                 sandbox: Sandbox, policy: Policy | None = None, classifier: CallClassifier | None = None,
                 hybrid: Hybrid | None = None) -> None:
        self.settings = settings
        self.policy = policy if policy is not None else load_policy(settings.policy)
        self.hybrid = hybrid   # None: loaded when the worker starts (the playbook reads the store)
        self.classifier = classifier
        self.bus = bus
        self.sessions = sessions
        self.llm = llm
        self.sandbox = sandbox
        self.limits = ConsumerLimits(ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
        self.stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        if self.hybrid is None:
            self.hybrid = await self._load_hybrid()
        subscription = await self.bus.worker_subscription(self.limits)
        async for messages in fetch_batches(subscription, batch=1, stop=stop):
            for msg in messages:
                await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        try:
            message = TaskMessage.model_validate_json(msg.data)
        except ValidationError as exc:
            await self._journal("incident.malformed_task_message", None,
                                {"error": exc.errors()[0]["msg"], "data": msg.data[:500].decode(errors="replace")})
            await msg.term()
            return
        delivery = Delivery(stream_seq=msg.metadata.sequence.stream, count=msg.metadata.num_delivered)
        try:
            finished = await with_heartbeat(msg, self.run_task(message, delivery),
                                            interval_s=self.limits.ack_wait_s / 3)
        except Exception as exc:  # infrastructure, not the task: retry, then dead-letter
            log.exception("task %s: delivery %d failed", message.task_id, delivery.count)
            await self._retry_or_dead_letter(msg, message, delivery, exc)
            return
        if finished:
            await msg.ack_sync()  # confirmed, so a finished task is not redelivered
        else:
            await msg.nak()  # handed back: another worker takes it at once

    async def run_task(self, message: TaskMessage, delivery: Delivery) -> bool:
        """Run the task to its end (True), or hand it back when the worker stops (False)."""
        async with self.sessions() as session:
            task = await queries.get_task(session, task_id=message.task_id)
            if task is not None and task.status not in queries.NOT_RUNNABLE:
                goal, requested = task.goal, task.workspace
                done_steps = len(await queries.get_steps(session, task_id=task.id))
        if task is None or task.status in queries.NOT_RUNNABLE:
            await self._journal("task.duplicate_delivery", message.task_id,
                                {"seq": delivery.stream_seq, "deliveries": delivery.count})
            return True
        try:
            workspace = resolve_workspace(requested, settings=self.settings, task_id=message.task_id)
        except WorkspaceNotAllowed as exc:
            await self._finish(message.task_id, "failed", None, str(exc))
            return True
        async with self.sessions.begin() as session:
            # start_task re-checks under a row lock: the task may have ended since the read.
            if await queries.start_task(session, task_id=message.task_id, isolation=self.sandbox.isolation,
                                        workspace=str(workspace)) is None:
                return True
            await queries.add_journal(session, kind="task.delivered", task_id=message.task_id, detail={
                "stream": "TASKS", "seq": delivery.stream_seq, "deliveries": delivery.count,
                "isolation": self.sandbox.isolation, "policy": self.policy.version, "llm": self.llm.name,
                **self.hybrid.record()})
        exit_ = await asyncio.to_thread(self._agent(message.task_id, workspace).run, goal, workspace,
                                        resume_from=done_steps)
        if isinstance(exit_, Interrupted):
            await self._hand_back(message.task_id, exit_.summary)
            return False
        if isinstance(exit_, NeedsApproval):
            await self._await_approval(message.task_id, exit_)
            return True
        result = {"summary": exit_.summary, "success": exit_.success}
        await self._finish(message.task_id, exit_.status, result, None if exit_.success else exit_.summary)
        return True

    def _agent(self, task_id: str, workspace: Path) -> AgentLoop:
        loop = asyncio.get_running_loop()

        def journal(record: StepRecord) -> None:
            # Called from the agent's thread: the step is stored before the next one starts.
            asyncio.run_coroutine_threadsafe(self._save_step(task_id, record), loop).result(timeout=60)

        assert self.hybrid is not None
        return build_loop(self.settings, workspace=workspace, llm=self.llm, sandbox=self.sandbox, policy=self.policy,
                          hybrid=self.hybrid, journal=journal, classifier=self.classifier, stopping=self.stop.is_set)

    async def _load_hybrid(self) -> Hybrid:
        """The ablation's parts; the playbook expert indexes the steps of tasks that
        succeeded so far (a restarted worker sees the newer ones)."""
        settings = self.settings
        playbook = None
        if "playbook" in settings.experts and settings.ablation != "llm_only":
            async with self.sessions() as session:
                rows = await queries.succeeded_steps(session, limit=PLAYBOOK_STEPS)
            playbook = await asyncio.to_thread(Playbook.from_rows, rows)
        experts = make_experts(settings.experts, playbook=playbook)
        return await asyncio.to_thread(load_hybrid, settings.ablation, hrm_checkpoint=settings.hrm_checkpoint,
                                       ebm_checkpoint=settings.ebm_checkpoint, experts=experts)

    async def _save_step(self, task_id: str, record: StepRecord) -> None:
        async with self.sessions.begin() as session:
            await queries.add_step(session, task_id=task_id, step=record.as_row())
            # Every decision that kept a call from running.
            await queries.add_journal_many(session, entries=[
                {"kind": f"policy.{c['policy']['decision']}", "task_id": task_id,
                 "detail": {"step": record.n, "call": c["text"], **c["policy"]}}
                for c in record.candidates if c["policy"] is not None and c["policy"]["decision"] != "allow"])
        trace = {"task_id": task_id, "n": record.n, "tool_call": record.tool_call, "ok": record.ok,
                 "observation": record.observation[:2000], "duration_s": record.duration_s}
        await self.bus.publish_trace(task_id, json.dumps(trace).encode())

    async def _finish(self, task_id: str, status: str, result: dict | None, error: str | None) -> None:
        async with self.sessions.begin() as session:
            await queries.finish_task(session, task_id=task_id, status=status, result=result, error=error)
            await queries.add_journal(session, kind="task.finished", task_id=task_id,
                                      detail={"status": status, "error": error})

    async def _await_approval(self, task_id: str, exit_: NeedsApproval) -> None:
        pending = {"call": exit_.call.model_dump(), "decision": exit_.decision.as_dict()}
        async with self.sessions.begin() as session:
            await queries.await_approval(session, task_id=task_id, pending=pending)
            await queries.add_journal(session, kind="approval.requested", task_id=task_id, detail=pending)

    async def _hand_back(self, task_id: str, reason: str) -> None:
        async with self.sessions.begin() as session:
            await queries.requeue_task(session, task_id=task_id)
            await queries.add_journal(session, kind="task.handed_back", task_id=task_id, detail={"reason": reason})

    async def _retry_or_dead_letter(self, msg: Msg, message: TaskMessage, delivery: Delivery, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if delivery.count < self.limits.max_deliver:
            await msg.nak(delay=self.settings.nak_delay_s)
            return
        await self.bus.dead_letter(message, reason=reason, deliveries=delivery.count)
        try:
            await self._finish(message.task_id, "failed", None, f"dead-lettered after {delivery.count} deliveries: {reason}")
        finally:
            await msg.term()

    async def _journal(self, kind: str, task_id: str | None, detail: dict) -> None:
        async with self.sessions.begin() as session:
            await queries.add_journal(session, kind=kind, task_id=task_id, detail=detail)
