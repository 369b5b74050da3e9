"""The worker: it takes tasks from the TASKS consumers of its queues (the most urgent band
first; ``bus.task_feed``), up to ``worker_concurrency`` at a time. Each task message is
acked when its task is finished, nak'd with a delay when infrastructure failed (the task
did not), and dead-lettered after ``max_deliver`` deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nats.errors
from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.agents.experts import Playbook, make_experts
from hybrid_agent.agents.hybrid import Hybrid, load_hybrid
from hybrid_agent.agents.assembly import OneCallAtATime, Undo, build_loop, command_runner, tool_runner
from hybrid_agent.agents import approvals
from hybrid_agent.agents.resources import ResourceHold, RuleSlot, hold_resource, hold_rule_slot, resource_of
from hybrid_agent.agents.task_flow import ChangeSetDecision, Preparation, TaskFlow, TaskSpec
from hybrid_agent.agents.templates import NothingToDo, TemplateFailed
from hybrid_agent.agents.loop import (AgentExit, AgentLoop, Cancelled, HumanDecision, Interrupted, NeedsApproval,
                                      StepRecord)
from hybrid_agent.agents.sandbox import Sandbox
from hybrid_agent.agents.workspace import WorkspaceNotAllowed, resolve_workspace
from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.consumer import with_heartbeat
from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.config import Settings
from hybrid_agent.models.llm.base import LLM
from hybrid_agent.policies.engine import CallClassifier, PolicyEngine
from hybrid_agent.policies.policy_file import Policy, PolicyError, load_policy
from hybrid_agent.policies.tool_schema import ToolCall
from hybrid_agent.rollback import journal as rollback_journal
from hybrid_agent.rollback.errors import RollbackError, ScopeBusy
from hybrid_agent.rollback.leases import ScopeLease
from hybrid_agent.rollback.operations import collect_garbage, interrupted_snapshot, roll_back_snapshot, undo_task
from hybrid_agent.rollback.snapshots import SnapshotStore
from hybrid_agent.rollback.task import CommandRunner, Restore, RollbackRecord
from hybrid_agent.store import queries

log = logging.getLogger(__name__)


PLAYBOOK_STEPS = 2000   # the newest succeeded steps the playbook expert recalls from
LEASE_POLL_S = 1.0      # how often a task waiting for its workspace's lease tries again
GC_INTERVAL_S = 86400.0  # snapshots past retention are collected when a worker starts, then daily
EXPIRY_POLL_S = 15.0     # how often approvals past their time are expired (and their tasks sent back)
REAP_POLL_S = 60.0       # how often running tasks whose worker went silent are looked for
STORE_RETRY_S, STORE_RETRY_MAX_S = 0.5, 10.0   # backoff while the store is unreachable

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
        self.llm = OneCallAtATime(llm) if settings.worker_concurrency > 1 else llm
        self.sandbox = sandbox
        self.snapshots = SnapshotStore(settings.rollback_dir)
        self.flow = TaskFlow(sessions, self.snapshots, scratch_dir=settings.data_dir / "scratch",
                             patches_dir=settings.data_dir / "patches")
        self.policies: dict[str, Policy] = {}   # rules' policy files (profiles), loaded once each
        self.holds: dict[str, ResourceHold] = {}   # task id -> its resource's lease and fencing token
        self.slots: dict[str, RuleSlot] = {}       # task id -> its rule's slot, where its rule has a limit
        self.cancel_requests: set[str] = set()   # tasks a person cancelled while they ran
        self.limits = ConsumerLimits(ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
        self.stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the worker's queues, up to ``worker_concurrency`` tasks at once, until ``stop``;
        then let the running ones finish or hand back (each at its next step)."""
        self.stop = stop
        if self.hybrid is None:
            self.hybrid = await self._load_hybrid()
        await self.bus.on_cancel(self.cancel_requests.add)
        chores = [asyncio.create_task(self._every(GC_INTERVAL_S, stop, self._collect_garbage)),
                  asyncio.create_task(self._every(EXPIRY_POLL_S, stop, self._expire_approvals)),
                  asyncio.create_task(self._every(REAP_POLL_S, stop, self.reap))]
        feed = await self.bus.task_feed(self.limits, self.settings.worker_queues)
        slots = asyncio.Semaphore(self.settings.worker_concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                await slots.acquire()
                msg = await feed.next(stop)
                if msg is None:
                    slots.release()
                    break
                job = asyncio.create_task(self._handle_in_slot(msg, slots))
                running.add(job)
                job.add_done_callback(running.discard)
        finally:
            await asyncio.gather(*running, return_exceptions=True)
            await feed.close()
            for chore in chores:
                chore.cancel()

    async def _handle_in_slot(self, msg: Msg, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle(msg)
        except (nats.errors.Error, asyncio.TimeoutError) as exc:
            # The ack or nak did not reach NATS (it restarted): the message comes back, and
            # its task, finished or not, is picked up from the store.
            log.warning("settling a task message failed: %s", exc)
        except Exception:
            log.exception("handling a task message failed")
        finally:
            slots.release()

    @staticmethod
    async def _every(interval_s: float, stop: asyncio.Event, chore) -> None:  # type: ignore[no-untyped-def]
        """Run ``chore`` now and then every ``interval_s`` until ``stop``."""
        while not stop.is_set():
            try:
                await chore()
            except Exception:   # the store or the bus is down: the tasks go on, the next round retries
                log.exception("%s failed", chore.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def _collect_garbage(self) -> None:
        await collect_garbage(self.sessions, self.snapshots, retention_days=self.settings.snapshot_retention_days)

    async def _expire_approvals(self) -> None:
        await approvals.expire_due(self.bus, self.sessions)

    async def reap(self) -> int:
        """Send back the running tasks whose worker vanished (no heartbeat for
        ``task_stale_s``) and whose message went with it; the count sent back."""
        now = datetime.now(timezone.utc)
        async with self.sessions.begin() as session:
            reaped = await queries.reap_stale(session, silent_since=now - timedelta(seconds=self.settings.task_stale_s))
            await queries.add_journal_many(session, entries=[
                {"kind": "task.reaped", "task_id": task_id, "detail": {"silent_s": self.settings.task_stale_s}}
                for task_id, _, _ in reaped])
        mark = f"reaped-{now.timestamp():.0f}"
        await self.bus.publish_tasks([TaskMessage(task_id=task_id, queue=queue, priority=priority, resumed_by=mark)
                                      for task_id, queue, priority in reaped])
        return len(reaped)

    async def _beat(self, task_id: str) -> None:
        hold = self.holds.get(task_id)
        if hold is not None:
            await hold.renew()   # lost? the next journal write is fenced out
        slot = self.slots.get(task_id)
        if slot is not None:
            await slot.renew()
        async with self.sessions.begin() as session:
            await queries.beat(session, task_id=task_id)

    async def _fence(self, session: AsyncSession, task_id: str | None) -> None:
        """Refuse the task's write if its resource lease passed to a newer holder."""
        hold = self.holds.get(task_id or "")
        if hold is not None:
            await queries.check_fence(session, resource=hold.resource, token=hold.token)

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
            finished = await with_heartbeat(msg, self._run_through_store_outages(message, delivery),
                                            interval_s=self.limits.ack_wait_s / 3,
                                            also=lambda: self._beat(message.task_id))
        except queries.FencedOut as exc:   # a newer holder of its resource acts now: write nothing more
            await self._journal("task.fenced_out", message.task_id, {"reason": str(exc)})
            await msg.nak(delay=self.settings.nak_delay_s)
            return
        except Exception as exc:  # infrastructure, not the task: retry, then dead-letter
            log.exception("task %s: delivery %d failed", message.task_id, delivery.count)
            await self._retry_or_dead_letter(msg, message, delivery, exc)
            return
        if finished:
            await msg.ack_sync()  # confirmed, so a finished task is not redelivered
        else:
            await msg.nak()  # handed back: another worker takes it at once

    async def _run_through_store_outages(self, message: TaskMessage, delivery: Delivery) -> bool:
        """Run the task; while the store is unreachable, keep the message (its heartbeat holds
        the lease), fetch nothing else, and run the task again once the store answers. A
        redelivery would count towards dead-lettering a task that did nothing wrong; running
        it again is the same as one (it resumes from its journal)."""
        while True:
            try:
                return await self.run_task(message, delivery)
            except (OperationalError, InterfaceError) as exc:
                log.warning("task %s: the store is unreachable (%s); waiting for it", message.task_id,
                            str(exc).splitlines()[0])
                await self._until_store_answers()
                if self.stop.is_set():
                    raise

    async def _until_store_answers(self) -> None:
        delay = STORE_RETRY_S
        while not self.stop.is_set():
            try:
                async with self.sessions() as session:
                    await queries.ping(session)
                return
            except (OperationalError, InterfaceError, OSError):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)

    async def run_task(self, message: TaskMessage, delivery: Delivery) -> bool:
        """Run the task to its end (True), or hand it back when the worker stops (False)."""
        async with self.sessions() as session:
            task = await queries.get_task(session, task_id=message.task_id)
            if task is not None and task.status not in queries.NOT_RUNNABLE:
                spec = TaskSpec.of(task)
                if task.cancel_requested_at is not None:   # asked while another worker ran it
                    self.cancel_requests.add(task.id)
                done_steps = len(await queries.get_steps(session, task_id=task.id))
        if task is None or task.status in queries.NOT_RUNNABLE:
            await self._journal("task.duplicate_delivery", message.task_id,
                                {"seq": delivery.stream_seq, "deliveries": delivery.count})
            return True
        try:
            workspace = resolve_workspace(spec.workspace, settings=self.settings, task_id=message.task_id)
            policy = self._policy_for(spec)
        except (WorkspaceNotAllowed, PolicyError) as exc:
            await self._finish(message.task_id, "failed", None, str(exc))
            return True
        refused = self._refused_check(spec.check_cmd, workspace, policy)
        if refused:
            await self._finish(message.task_id, "failed", None, refused)
            return True
        return await self._run_in_rule_slot(message, delivery, spec, workspace, done_steps)

    async def _run_in_rule_slot(self, message: TaskMessage, delivery: Delivery, spec: TaskSpec, workspace: Path,
                                done_steps: int) -> bool:
        """Run the task in one of its rule's slots, where its rule caps how many of its tasks
        run at once (across the cluster); the slot is waited for up to the task's time budget."""
        rule, limit = spec.rule, spec.rule_concurrency
        if rule is None or limit is None:
            return await self._run_holding(message, delivery, spec, workspace, done_steps)
        slot = await hold_rule_slot(
            self.settings, rule, limit, task_id=spec.id, wait_s=self.settings.max_seconds,
            waiting=lambda: self._waiting(spec.id, "task.waiting_for_rule_slot", {"rule": rule, "limit": limit},
                                          f"a free slot of rule {rule} (at most {limit} of its tasks run at once)"))
        if slot is None:
            await self._finish(spec.id, "failed", None, f"rule {rule} kept {limit} tasks running for "
                               f"{self.settings.max_seconds:.0f}s (its concurrency limit)")
            return True
        self.slots[spec.id] = slot
        try:
            return await self._run_holding(message, delivery, spec, workspace, done_steps)
        finally:
            del self.slots[spec.id]
            await slot.release()

    async def _run_holding(self, message: TaskMessage, delivery: Delivery, spec: TaskSpec, workspace: Path,
                           done_steps: int) -> bool:
        """Run the task holding its resource (across the cluster, fenced) and its workspace
        (on this host, against rollbacks too); each is waited for up to the task's time budget."""
        resource = resource_of(spec.resource, workspace)
        hold = await hold_resource(self.settings, resource, task_id=spec.id, wait_s=self.settings.max_seconds,
                                   waiting=lambda: self._waiting(spec.id, "task.waiting_for_resource",
                                                                 {"resource": resource},
                                                                 f"resource {resource} (another task holds it)"))
        if hold is None:
            await self._finish(spec.id, "failed", None, f"resource {resource} stayed busy for "
                               f"{self.settings.max_seconds:.0f}s (another task holds it)")
            return True
        self.holds[spec.id] = hold
        try:
            lease = await self._lease(message.task_id, workspace)
            if lease is None:
                await self._finish(message.task_id, "failed", None, f"workspace {workspace} stayed busy for "
                                   f"{self.settings.max_seconds:.0f}s (another task holds it)")
                return True
            try:
                return await self._run_leased(message, delivery, spec, workspace, done_steps)
            finally:
                lease.release()
        finally:
            del self.holds[spec.id]
            await hold.release()

    async def _run_leased(self, message: TaskMessage, delivery: Delivery, spec: TaskSpec, workspace: Path,
                          done_steps: int) -> bool:
        async with self.sessions.begin() as session:
            # start_task re-checks under a row lock: the task may have ended since the read.
            if await queries.start_task(session, task_id=message.task_id, isolation=self.sandbox.isolation,
                                        workspace=str(workspace)) is None:
                return True
            await queries.add_journal(session, kind="task.delivered", task_id=message.task_id, detail={
                "stream": "TASKS", "seq": delivery.stream_seq, "deliveries": delivery.count,
                "isolation": self.sandbox.isolation, "policy": self._policy_for(spec).version, "llm": self.llm.name,
                **self.hybrid.record()})
        await self._publish_status(message.task_id, "running")
        cannot_resume = await self._undo_interrupted_step(message.task_id, done_steps)
        if cannot_resume:   # resuming on a half-done action would build on it
            await self._finish(message.task_id, "failed", None, f"cannot resume: {cannot_resume}")
            return True
        if message.task_id in self.cancel_requests:
            await self._end(spec, workspace, Cancelled("cancelled before it resumed"))
            return True
        decided = await self._decision_to_act_on(message.task_id)
        if isinstance(decided, ChangeSetDecision):
            await self._settle(spec, workspace, decided)
            return True
        prep = await self._prepare(spec, workspace)
        if prep is None:
            return True
        workdir = Path(prep.workdir)
        async with self.sessions() as session:
            past = await queries.get_steps(session, task_id=spec.id)
        exit_ = await asyncio.to_thread(self._agent(spec, workdir).run, prep.goal, workdir, past=past,
                                        decided=decided)
        if isinstance(exit_, Interrupted):
            await self._hand_back(message.task_id, exit_.summary)
            return False
        if isinstance(exit_, NeedsApproval):
            await self._await_approval(message.task_id, exit_, workdir)
        elif exit_.success and spec.shaped:
            await self._conclude(spec, workspace, prep, exit_)
        else:
            await self._end(spec, workspace, exit_)
        return True

    async def _prepare(self, spec: TaskSpec, workspace: Path) -> Preparation | None:
        """The task's preparation, or None when it ended the task (nothing to do, or the
        template could not go on)."""
        try:
            return await self.flow.prepare(spec, workspace, self._command_runner)
        except NothingToDo as exc:
            await self._finish(spec.id, "succeeded", {"summary": str(exc), "success": True}, None)
        except (TemplateFailed, RollbackError) as exc:
            await self._finish(spec.id, "failed", None, str(exc))
        self.flow.discard_scratch(spec)
        return None

    async def _conclude(self, spec: TaskSpec, workspace: Path, prep: Preparation, exit_: AgentExit) -> None:
        """A shaped task whose loop succeeded: verify, then end it or park it on its change set."""
        outcome = await self.flow.conclude(spec, workspace, prep, self._command_runner(Path(prep.workdir)))
        if not outcome.success:
            await self._end(spec, workspace, AgentExit(outcome.summary))
            return
        if outcome.change_set is None:
            self.flow.discard_scratch(spec)
            await self._finish(spec.id, "succeeded", {"summary": outcome.summary, "success": True, **outcome.result},
                               None)
            return
        await approvals.park_change_set(self.bus, self.sessions, task_id=spec.id, change_set=outcome.change_set,
                                        summary=outcome.summary, ttl_s=self.settings.approval_ttl_s)
        await self._publish_status(spec.id, "awaiting_approval")

    async def _settle(self, spec: TaskSpec, workspace: Path, decided: ChangeSetDecision) -> None:
        """Apply an approved change set, or keep a rejected one in the task's result."""
        try:
            result = await self.flow.settle(spec, workspace, decided)
        except (RollbackError, TemplateFailed) as exc:
            await self._finish(spec.id, "failed", {"applied": False, "error": str(exc)}, f"not applied: {exc}")
            return
        finally:
            self.flow.discard_scratch(spec)
        summary = "change set applied" if result["applied"] else f"change set not applied: {decided.reason}"
        await self._finish(spec.id, "succeeded", {"summary": summary, "success": True, **result}, None)

    async def _end(self, spec: TaskSpec, workspace: Path, exit_: AgentExit) -> None:
        """The task's final record. A failed or cancelled task's changes are undone first:
        a failed one then ends ``rolled_back``, a cancelled one stays ``cancelled``, and
        its result says what the rollback did. (A dry run changed only its scratch copy.)"""
        task_id = spec.id
        result: dict = {"summary": exit_.summary, "success": exit_.success}
        status = exit_.status
        self.flow.discard_scratch(spec)
        if status in ("failed", "cancelled") and self.settings.rollback_failed_tasks and not spec.dry_run:
            try:
                restore = await self._undo_task(task_id, workspace, reason=f"task_{status}")
            except RollbackError as exc:   # e.g. its snapshot expired: the task ends as it is, and says so
                result["rollback"] = {"ok": False, "summary": str(exc)}
                restore = None
            if restore is not None:
                result["rollback"] = {"snapshot": restore.snapshot_id, "ok": restore.ok, "summary": restore.describe()}
                if status == "failed" and restore.ok:
                    status = "rolled_back"
        await self._finish(task_id, status, result, None if exit_.success else exit_.summary)
        self.cancel_requests.discard(task_id)

    def _agent(self, spec: TaskSpec, workspace: Path) -> AgentLoop:
        loop = asyncio.get_running_loop()
        task_id = spec.id

        def journal(record: StepRecord) -> None:
            # Called from the agent's thread: the step is stored before the next one starts.
            asyncio.run_coroutine_threadsafe(self._save_step(task_id, record), loop).result(timeout=60)

        def journal_rollback(record: RollbackRecord) -> None:
            # A snapshot is stored before its action runs: a worker that dies mid-action leaves it behind.
            asyncio.run_coroutine_threadsafe(self._save_rollback(record), loop).result(timeout=60)

        assert self.hybrid is not None
        undo = Undo(self.snapshots, journal_rollback, task_id=task_id, check_cmd=spec.check_cmd)
        settings = self.settings.model_copy(update=spec.budgets) if spec.budgets else self.settings
        return build_loop(settings, workspace=workspace, llm=self.llm, sandbox=self.sandbox,
                          policy=self._policy_for(spec),
                          hybrid=self.hybrid, journal=journal, classifier=self.classifier, stopping=self.stop.is_set,
                          undo=undo, cancelled=lambda: task_id in self.cancel_requests)

    def _policy_for(self, spec: TaskSpec) -> Policy:
        """The task's policy: its rule's profile (a policy file), else the worker's."""
        if spec.policy is None:
            return self.policy
        if spec.policy not in self.policies:
            self.policies[spec.policy] = load_policy(Path(spec.policy))
        return self.policies[spec.policy]

    def _refused_check(self, check_cmd: str | None, workspace: Path, policy: Policy) -> str | None:
        """A task's check runs after every change without a human: the policy must allow it outright."""
        if not check_cmd:
            return None
        engine = PolicyEngine(policy, scopes=[workspace], test_cmd=self.settings.test_cmd)
        decision = engine.check({"tool": "shell", "args": {"cmd": check_cmd}})
        if decision.decision == "allow":
            return None
        return f"the task's check command is not allowed to run unattended ({decision.decision}: {decision.reasons[0]})"

    async def _lease(self, task_id: str, workspace: Path) -> ScopeLease | None:
        """The workspace's lease, waited for while another task (or a rollback) holds it, up
        to the task's time budget; the message's heartbeat keeps it ours meanwhile."""
        lease = self.snapshots.lease(workspace, holder=f"task {task_id}")
        deadline = asyncio.get_running_loop().time() + self.settings.max_seconds
        waiting = False
        while True:
            try:
                return lease.acquire()
            except ScopeBusy as exc:
                if not waiting:
                    await self._waiting(task_id, "task.waiting_for_workspace", {"reason": str(exc)},
                                        f"its workspace ({exc})")
                    waiting = True
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(LEASE_POLL_S)

    async def _undo_interrupted_step(self, task_id: str, done_steps: int) -> str | None:
        """A redelivered task whose last worker died mid-action: the workspace goes back to
        the snapshot taken before that action, then the task resumes. Returns why it
        cannot, if the rollback failed."""
        snapshot = await interrupted_snapshot(self.sessions, task_id=task_id, done_steps=done_steps)
        if snapshot is None:
            return None
        try:
            restore = await roll_back_snapshot(self.sessions, self.snapshots, snapshot_id=snapshot.id,
                                               reason="redelivery", run=self._command_runner(Path(snapshot.scope)),
                                               lease_held=True)
        except RollbackError as exc:
            return str(exc)
        return None if restore.ok else restore.describe()

    async def _undo_task(self, task_id: str, workspace: Path, *, reason: str) -> Restore | None:
        return await undo_task(self.sessions, self.snapshots, task_id=task_id, reason=reason,
                               run=self._command_runner(workspace), lease_held=True)

    def _command_runner(self, workspace: Path) -> CommandRunner:
        return command_runner(tool_runner(self.settings, workspace=workspace, sandbox=self.sandbox))

    async def _save_rollback(self, record: RollbackRecord) -> None:
        async with self.sessions.begin() as session:
            await self._fence(session, record.task_id)
            await rollback_journal.save(session, record)

    async def _load_hybrid(self) -> Hybrid:
        """The ablation's parts; the playbook expert indexes the steps of tasks that
        succeeded so far (a restarted worker sees the newer ones)."""
        settings = self.settings
        if settings.ablation == "llm_only":   # the LLM alone: no experts to build
            return await asyncio.to_thread(load_hybrid, settings.ablation)
        playbook = None
        if "playbook" in settings.experts:
            async with self.sessions() as session:
                rows = await queries.succeeded_steps(session, limit=PLAYBOOK_STEPS)
            playbook = await asyncio.to_thread(Playbook.from_rows, rows)
        experts = make_experts(settings.experts, playbook=playbook)
        return await asyncio.to_thread(load_hybrid, settings.ablation, hrm_checkpoint=settings.hrm_checkpoint,
                                       ebm_checkpoint=settings.ebm_checkpoint, experts=experts)

    async def _save_step(self, task_id: str, record: StepRecord) -> None:
        async with self.sessions.begin() as session:
            await self._fence(session, task_id)
            await queries.add_step(session, task_id=task_id, step=record.as_row())
            # Every decision that kept a call from running.
            await queries.add_journal_many(session, entries=[
                {"kind": f"policy.{c['policy']['decision']}", "task_id": task_id,
                 "detail": {"step": record.n, "call": c["text"], **c["policy"]}}
                for c in record.candidates if c["policy"] is not None and c["policy"]["decision"] != "allow"])
        trace = {"kind": "step", "task_id": task_id, "n": record.n, "tool_call": record.tool_call, "ok": record.ok,
                 "decision": record.decision, "observation": record.observation[:2000],
                 "duration_s": record.duration_s, "snapshot_id": record.snapshot_id, "rollback": record.rollback}
        await self.bus.publish_trace(task_id, json.dumps(trace).encode())

    async def _publish_status(self, task_id: str, status: str) -> None:
        """Live watchers (SSE, the console) learn the task's new status at once."""
        await self.bus.publish_trace(task_id, json.dumps({"kind": "status", "task_id": task_id,
                                                          "status": status}).encode())

    async def _finish(self, task_id: str, status: str, result: dict | None, error: str | None) -> None:
        async with self.sessions.begin() as session:
            await self._fence(session, task_id)
            await queries.finish_task(session, task_id=task_id, status=status, result=result, error=error)
            await queries.add_journal(session, kind="task.finished", task_id=task_id,
                                      detail={"status": status, "error": error})
        await self._publish_status(task_id, status)

    async def _await_approval(self, task_id: str, exit_: NeedsApproval, workspace: Path) -> None:
        """Park the task on its held call. A snapshot of the workspace as the person sees it
        goes with the approval; the worker's slot is free until the decision."""
        try:
            snapshot = await asyncio.to_thread(self.snapshots.create, workspace, task_id=task_id, step=exit_.step)
        except RollbackError:
            snapshot = None   # the approval still waits; the action, if approved, snapshots before it runs
        else:
            await self._save_rollback(snapshot)
        await approvals.park(self.bus, self.sessions, task_id=task_id, held=exit_, workspace=workspace,
                             snapshot_id=snapshot.id if snapshot else None, ttl_s=self.settings.approval_ttl_s)
        await self._publish_status(task_id, "awaiting_approval")

    async def _decision_to_act_on(self, task_id: str) -> HumanDecision | ChangeSetDecision | None:
        """The person's decision on what the task was parked on (a call, or a change set),
        if it has not acted on it yet."""
        async with self.sessions.begin() as session:
            row = await queries.decision_to_resume(session, task_id=task_id)
            if row is None:
                return None
            await queries.mark_approval_resumed(session, approval_id=row.id)
        reason = row.reason or ("it expired before anyone decided" if row.status == "expired" else "")
        if row.kind == "change_set":
            return ChangeSetDecision(row.change_set or {}, row.status == "approved", reason)
        return HumanDecision(ToolCall.model_validate(row.tool_call), row.status == "approved", reason)

    async def _hand_back(self, task_id: str, reason: str) -> None:
        async with self.sessions.begin() as session:
            await self._fence(session, task_id)
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

    async def _waiting(self, task_id: str, kind: str, detail: dict, waiting_for: str) -> None:
        """The task cannot start yet: journaled, and said on the task until it starts."""
        async with self.sessions.begin() as session:
            await queries.set_waiting(session, task_id=task_id, waiting_for=waiting_for)
            await queries.add_journal(session, kind=kind, task_id=task_id, detail=detail)

    async def _journal(self, kind: str, task_id: str | None, detail: dict) -> None:
        async with self.sessions.begin() as session:
            await queries.add_journal(session, kind=kind, task_id=task_id, detail=detail)
