"""The load benchmark: events -> the real router (its own process) -> the store and TASKS ->
N worker processes sharing the TASKS durable consumer, each running a model-free tool loop
over what the task feed hands it at once. A fixed-rate phase measures event-to-task-start
latency (the event's ``created_at`` to the task's ``started_at``); an as-fast-as-possible
phase measures the sustained rate. Both are set against raw JetStream (publish +
pull-consume) in the same run, on one private embedded NATS. Lost and duplicated work are
counted, not assumed: a task is lost when its event has no finished task at the end,
duplicated when its tool ran (or the store started it) more than once. Where the time went
is measured too: the router's leg and the workers' (from the store's timestamps), each
worker stage, and the CPU and run-queue time of every process.

The router and workers are this module run as ``python -m hybrid_agent.eval.load_bench
ROLE NAME ...``; they import neither torch nor the API (``bus_bench`` does, hence its
helpers are imported only where the parent uses them)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.agents.workspace import resolve_workspace
from hybrid_agent.bus import subjects
from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.consumer import fetch_batches
from hybrid_agent.bus.embedded import EmbeddedNats
from hybrid_agent.bus.messages import Event, TaskMessage, new_id
from hybrid_agent.config import Settings
from hybrid_agent.policies.tool_schema import ToolCall
from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.startup_heap import startup_heap_frozen
from hybrid_agent.store.tables import TaskRow, utcnow
from hybrid_agent.triggers.router import Router

GOAL_P99_MS = 50.0
WORKER_LIMITS = ConsumerLimits(ack_wait_s=30.0, max_deliver=3)
READY_TIMEOUT_S = 60.0   # the processes import, connect and subscribe (seconds on a busy 2-core box)
STOP_GRACE_S = 15.0      # after SIGTERM; then the process group is killed
WARM_UP_S = 2.0          # at the fixed rate, before it is measured: every batch size's statements compiled
ORPHAN_POLL_S = 0.5      # a process whose parent died stops by itself
POLL_S = 0.25            # how often the parent counts finished tasks
REPORT_S = 5.0           # and says on stderr how far they got
RAW_DRAIN_S = 30.0       # raw messages not consumed by then are left out of its percentiles
RESULT_FILE = "result.txt"
# What a worker's time per task went to, in order: one column each in its timings file.
STAGES = {"wait": "waiting for messages", "start": "start_tasks transaction", "tool": "the tool steps",
          "finish": "steps + finish_tasks transaction", "ack": "ack_sync of each"}
BATCH = 16   # the most messages a worker takes and settles at once


class LoadBenchError(RuntimeError):
    """The benchmark's processes did not start."""


# --- results ------------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    cpu_s: float        # on a core, all threads
    runqueue_s: float   # ready to run, waiting for a core

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu_s - other.cpu_s, self.runqueue_s - other.runqueue_s)


@dataclass
class Sent:
    """A phase's events as published (task id -> the event's created_at) and, once the
    phase is over, what it cost each role (``machine``: every process on the box)."""

    name: str
    created: dict[str, datetime]
    published_rate: float = 0.0
    usage: dict[str, Usage] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass(frozen=True)
class Phase:
    """One phase's outcome, from the store and the workers' logs."""

    sent: Sent
    events_per_s: float   # tasks finished / (last finish - first event)
    p50_ms: float         # event created_at -> task started_at
    p99_ms: float
    lost: int
    duplicated: int
    route_p99_ms: float   # event created_at -> its task row written by the router
    pickup_p99_ms: float  # task row written -> task started by a worker
    stages: dict[str, tuple[float, float]]   # worker stage -> (p50, p99) ms
    batch_mean: float     # how many messages the worker took with a task, on average over tasks

    @property
    def events(self) -> int:
        return len(self.sent.created)

    def per_event_ms(self) -> dict[str, Usage]:
        """Each of our processes' CPU and run-queue milliseconds per event."""
        scale = 1000 / max(self.events, 1)
        return {role: Usage(u.cpu_s * scale, u.runqueue_s * scale) for role, u in self.sent.usage.items()
                if role != "machine"}

    def cores_busy(self, *, machine: bool = False) -> float:
        """CPU seconds per second of the phase: ours, or the whole machine's."""
        if not self.sent.wall_s:
            return 0.0
        cpu = sum(u.cpu_s for role, u in self.sent.usage.items() if (role == "machine") == machine)
        return cpu / self.sent.wall_s


@dataclass(frozen=True)
class Raw:
    events: int
    fixed_p50_ms: float
    fixed_p99_ms: float
    fast_msgs_per_s: float


@dataclass(frozen=True)
class LoadResult:
    workers: int
    rate: float
    database: str
    fixed: Phase
    fast: Phase
    raw: Raw
    clean_exit: bool   # every process up to the end, and exited 0 when told to stop

    @property
    def summary(self) -> dict[str, Any]:
        fixed, fast, raw = self.fixed, self.fast, self.raw
        ratio = fast.events_per_s / raw.fast_msgs_per_s if raw.fast_msgs_per_s else 0.0
        lost, duplicated = fixed.lost + fast.lost, fixed.duplicated + fast.duplicated
        per_event = fast.per_event_ms()
        return {"events_per_s": round(fast.events_per_s, 1), "p50_ms": round(fixed.p50_ms, 2),
                "p99_ms": round(fixed.p99_ms, 2), "lost": lost, "duplicated": duplicated, "ratio": round(ratio, 4),
                "ratio_of": "events_per_s / raw_msgs_per_s, both as fast as possible",
                "raw_msgs_per_s": round(raw.fast_msgs_per_s, 1), "raw_p50_ms": round(raw.fixed_p50_ms, 2),
                "raw_p99_ms": round(raw.fixed_p99_ms, 2), "fixed_events_per_s": round(fixed.events_per_s, 1),
                "published_rate": round(fixed.sent.published_rate, 1), "fast_p99_ms": round(fast.p99_ms, 1),
                "route_p99_ms": round(fixed.route_p99_ms, 2), "pickup_p99_ms": round(fixed.pickup_p99_ms, 2),
                "worker_p99_ms": {stage: round(p99, 2) for stage, (_, p99) in fixed.stages.items()},
                "worker_batch_mean": {"fixed": round(fixed.batch_mean, 2), "fast": round(fast.batch_mean, 2)},
                "cpu_ms_per_event": {role: round(u.cpu_s, 3) for role, u in per_event.items()},
                "runqueue_ms_per_event": {role: round(u.runqueue_s, 3) for role, u in per_event.items()},
                "cores_busy": {"fixed": round(fixed.cores_busy(), 2), "fast": round(fast.cores_busy(), 2)},
                "machine_cores_busy": {"fixed": round(fixed.cores_busy(machine=True), 2),
                                       "fast": round(fast.cores_busy(machine=True), 2)},
                "workers": self.workers, "rate": self.rate, "events": fixed.events, "fast_events": fast.events,
                "database": self.database, "clean_exit": self.clean_exit,
                "goal_p99_met": fixed.p99_ms < GOAL_P99_MS, "goal_exact_met": lost + duplicated == 0}


# --- measuring ----------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def execution_counts(run_dir: Path) -> Counter[str]:
    """How many times each task's tool ran, from every worker's execution log."""
    counts: Counter[str] = Counter()
    for log in run_dir.glob("executions-*.log"):
        counts.update(line for line in log.read_text().splitlines() if line)
    return counts


def count_duplicated(task_ids: Collection[str], executions: Mapping[str, int], starts: Mapping[str, int]) -> int:
    """Tasks done more than once: their tool ran twice, or the store started them twice."""
    return sum(1 for task_id in task_ids if max(executions.get(task_id, 0), starts.get(task_id, 0)) > 1)


def worker_timings(run_dir: Path) -> dict[str, list[float]]:
    """Each task's milliseconds per stage (``STAGES``), from every worker's timings file."""
    timings: dict[str, list[float]] = {}
    for log in run_dir.glob("timings-*.tsv"):
        for line in log.read_text().splitlines():
            task_id, *values = line.split("\t")
            timings[task_id] = [float(value) for value in values]
    return timings


def phase_outcome(sent: Sent, rows: Mapping[str, TaskRow], executions: Mapping[str, int],
                  timings: Mapping[str, list[float]]) -> Phase:
    finished = [rows[t] for t in sent.created if t in rows and rows[t].status in queries.TERMINAL]
    started = [(rows[t], created) for t, created in sent.created.items() if t in rows and rows[t].started_at]
    latencies = [_ms(row.started_at, created) for row, created in started]
    # The task row's created_at is stamped in the router's transaction: it splits the latency.
    route = [_ms(row.created_at, created) for row, created in started]
    pickup = [_ms(row.started_at, row.created_at) for row, _ in started]
    rate = 0.0
    if finished:
        span = (max(_aware(row.finished_at) for row in finished) - min(sent.created.values())).total_seconds()
        rate = len(finished) / span if span > 0 else math.inf
    starts = {t: rows[t].deliveries for t in sent.created if t in rows}
    columns = list(zip(*(timings[t] for t in sent.created if t in timings))) or [()] * len(STAGES)
    stages = {stage: (percentile(values, 0.5), percentile(values, 0.99)) for stage, values in zip(STAGES, columns)}
    batches = columns[len(STAGES)] if len(columns) > len(STAGES) else ()
    return Phase(sent, rate, percentile(latencies, 0.5), percentile(latencies, 0.99), len(sent.created) - len(finished),
                 count_duplicated(sent.created, executions, starts), percentile(route, 0.99),
                 percentile(pickup, 0.99), stages, sum(batches) / len(batches) if batches else math.nan)


def _ms(later: datetime, earlier: datetime) -> float:
    return (_aware(later) - _aware(earlier)).total_seconds() * 1000


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def usage(pids: Sequence[int]) -> Usage:
    """The processes' CPU and run-queue time so far, from /proc (Linux)."""
    cpu = runqueue = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime
            for thread in Path(f"/proc/{pid}/task").iterdir():
                runqueue += int((thread / "schedstat").read_text().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):   # exited, or no schedstat: counted as nothing
            continue
    return Usage(cpu, runqueue)


def machine_usage() -> Usage:
    """Every process's CPU time so far (the machine is shared: this shows other load)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in Path("/proc/stat").read_text()
                                                                .split("\n", 1)[0].split()[1:9])
    return Usage((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), 0.0)


class CpuMeter:
    """Usage per role (publisher, nats, router, workers, and the machine) over a phase."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles

    def read(self) -> dict[str, Usage]:
        return {**{role: usage(pids) for role, pids in self.roles.items()}, "machine": machine_usage()}

    async def measure(self, phase: Callable[[], Awaitable[Sent]]) -> Sent:
        """Run a phase (publish, wait for its tasks); its Sent, with what it cost."""
        before, t0 = self.read(), time.monotonic()
        sent = await phase()
        after = self.read()
        sent.usage = {role: after[role] - before[role] for role in after}
        sent.wall_s = time.monotonic() - t0
        return sent


# --- the worker and router processes ------------------------------------------------

class ToolLoopWorker:
    """A model-free task loop over what the task feed hands out at once (up to ``BATCH``
    messages of the most urgent lane): the tasks started in the store in one transaction
    (``queries.start_tasks``, the same checks as the real worker's ``start_task``), one
    ``write_file`` step each through the real ``ToolRunner`` in the task's fresh workspace,
    the steps journaled and the tasks finished in one transaction, then every message
    acked (confirmed, ``ack_sync``).

    Not the real ``Worker`` with a fake LLM: that measured 21 ms a task here (get_task and
    get_steps reads, a journal entry per hop, status traces, a snapshot before the write,
    the agent loop in a thread, three more transactions, one task per slot), about 48
    tasks/s a process. What this loop keeps is what the bus path costs a task: the shared
    task feed, the store's start and finish, a real tool call and a confirmed ack. It
    settles what it takes together because a store transaction costs 0.5-1 ms of CPU here
    however small (SQLAlchemy's async session; the driver alone costs a tenth of that), and
    one for sixteen tasks costs little more (as the router stores each fetched batch of
    events in one transaction)."""

    def __init__(self, bus: Bus, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 executions: TextIO, timings: TextIO) -> None:
        self.bus = bus
        self.sessions = sessions
        self.settings = settings
        self.sandbox = make_sandbox("rlimit", max_output_chars=1000)   # write_file runs no command
        self.executions = executions
        self.timings = timings
        self.idle_since = time.perf_counter()

    async def run(self, stop: asyncio.Event, ready: Callable[[], None]) -> None:
        feed = await self.bus.task_feed(WORKER_LIMITS)
        ready()
        self.idle_since = time.perf_counter()
        while batch := await feed.take(stop, up_to=BATCH):
            await self.handle(batch)

    async def handle(self, batch: list[Msg]) -> None:
        laps = [self.idle_since, time.perf_counter()]   # the wait for the messages, then each stage
        workspaces = {task_id: resolve_workspace(None, settings=self.settings, task_id=task_id)
                      for task_id in (TaskMessage.model_validate_json(msg.data).task_id for msg in batch)}
        async with self.sessions.begin() as session:
            started = await queries.start_tasks(session, isolation=self.sandbox.isolation,
                                                workspaces={task_id: str(path) for task_id, path in workspaces.items()})
        laps.append(time.perf_counter())
        # The others finished already (redeliveries): acked and dropped.
        steps = [self.step(task_id, path) for task_id, path in workspaces.items() if task_id in started]
        laps.append(time.perf_counter())
        if started:
            async with self.sessions.begin() as session:
                await queries.add_steps(session, steps=steps)
                await queries.finish_tasks(session, finished=[
                    {"id": step["task_id"], "status": "succeeded", "error": None,
                     "result": {"summary": f"wrote {RESULT_FILE}", "success": True}} for step in steps])
        laps.append(time.perf_counter())
        await asyncio.gather(*(msg.ack_sync() for msg in batch))
        laps.append(time.perf_counter())
        stages = [f"{(b - a) * 1000:.3f}" for a, b in zip(laps, laps[1:])]
        self.timings.writelines("\t".join([step["task_id"], *stages, str(len(batch))]) + "\n" for step in steps)
        self.idle_since = time.perf_counter()

    def step(self, task_id: str, workspace: Path) -> dict[str, Any]:
        started_at, t0 = utcnow(), time.perf_counter()
        call = ToolCall(tool="write_file", args={"path": RESULT_FILE, "content": f"{task_id}\n"})
        observation = ToolRunner(workspace, self.sandbox, timeout_s=10, max_output_chars=1000).run(call)
        self.executions.write(task_id + "\n")   # what the duplicate count reads
        duration = time.perf_counter() - t0
        return {"task_id": task_id, "n": 1, "tool_call": call.model_dump(), "decision": "allow", "policy": None,
                "model": {}, "observation": observation.render(), "ok": observation.ok, "candidates": [], "prompt_tokens": 0,
                "timings": {"act_s": duration}, "started_at": started_at, "duration_s": duration}


async def _stop_when_orphaned(stop: asyncio.Event, parent: int) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
        await asyncio.sleep(ORPHAN_POLL_S)


async def _serve(role: str, name: str, nats_url: str, database_url: str, data_dir: Path) -> None:
    """One process of the fleet, until SIGTERM (or its parent dies)."""
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(_stop_when_orphaned(stop, os.getppid()))
    run_dir = data_dir / "load"
    bus = await Bus.connect(nats_url, name=f"load-{name}")
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)

    def ready() -> None:
        (run_dir / f"ready-{name}").touch()

    try:
        with startup_heap_frozen():   # as the services run
            if role == "router":
                ready()   # the warm-up proves it routes
                await Router(bus, sessions).run(stop)
            else:
                settings = Settings(data_dir=data_dir, nats_url=nats_url, database_url=database_url)
                with (open(run_dir / f"executions-{name}.log", "a", buffering=1) as executions,
                      open(run_dir / f"timings-{name}.tsv", "a") as timings):
                    await ToolLoopWorker(bus, sessions, settings, executions, timings).run(stop, ready)
    finally:
        watch.cancel()
        await bus.close()
        await engine.dispose()


class Fleet:
    """The router and the workers, each a process running this module, all in one process
    group (not the terminal's: a Ctrl-C reaches the benchmark, which kills them): stopped
    with SIGTERM, the whole group killed if they do not stop or the benchmark fails."""

    def __init__(self, *, workers: int, nats_url: str, database_url: str, data_dir: Path) -> None:
        self.names = ["router"] + [f"worker-{i}" for i in range(workers)]
        self.args = [nats_url, database_url, str(data_dir)]
        self.run_dir = data_dir / "load"
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Fleet:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in self.names:
                role = "router" if name == "router" else "worker"
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "hybrid_agent.eval.load_bench", role, name, *self.args],
                    stdin=subprocess.DEVNULL, process_group=self.processes[0].pid if self.processes else 0))
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self.kill()
        elif any(p.poll() is None for p in self.processes):
            self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all((self.run_dir / f"ready-{name}").exists() for name in self.names):
            dead = [name for name, p in zip(self.names, self.processes) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise LoadBenchError(f"load benchmark processes not ready: {', '.join(dead) or 'timed out'}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def stop(self) -> bool:
        """SIGTERM each and wait; True when all exited 0 by themselves."""
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            codes = [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in self.processes]
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return all(code == 0 for code in codes)

    def kill(self) -> None:
        if not self.processes:
            return
        with contextlib.suppress(ProcessLookupError):   # all gone already
            os.killpg(self.processes[0].pid, signal.SIGKILL)
        for p in self.processes:
            p.wait()


# --- publishing, waiting, the raw baseline (the parent) -------------------------------

def bench_event(task_id: str) -> Event:
    """A submission published without the outbox: the router stores it and its task."""
    return Event(source="user", kind="task",
                 payload={"goal": f"write {RESULT_FILE}", "task_id": task_id, "requested_by": "load-bench"})


async def publish_paced(bus: Bus, name: str, count: int, rate: float) -> Sent:
    """``count`` events through ``publish_event``, on an absolute schedule (the i-th at
    start + i/rate, so one late publish does not delay the rest)."""
    created: dict[str, datetime] = {}
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        event = bench_event(new_id())
        created[event.payload["task_id"]] = event.created_at
        await bus.publish_event(event)
    return Sent(name, created, published_rate=count / max(time.monotonic() - start, 1e-9))


async def publish_fast(bus: Bus, name: str, count: int) -> Sent:
    """``count`` events published with a window of unacknowledged ones, as fast as
    JetStream takes them (the same subjects and dedup headers as ``publish_event``)."""
    from hybrid_agent.eval.bus_bench import _publish_all   # imports the API: kept out of the fleet

    events = [bench_event(new_id()) for _ in range(count)]
    await _publish_all(bus, [(subjects.event_subject(e.source, e.kind), e.model_dump_json().encode(), e.dedup_key)
                             for e in events])
    return Sent(name, {e.payload["task_id"]: e.created_at for e in events},
                published_rate=count / max((utcnow() - events[0].created_at).total_seconds(), 1e-9))


class Progress:
    """Waits for tasks to finish, counting them in the store every ``POLL_S`` (as often as
    ``bus_bench`` polls would take CPU from the workers on a 2-core machine), and says how
    far they got on stderr now and then."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], report: Callable[[str], None]) -> None:
        self.sessions = sessions
        self.report = report
        self.base = 0

    async def count(self) -> int:
        async with self.sessions() as session:
            counts = await queries.counts_by(session, column=TaskRow.status)
        return sum(n for status, n in counts.items() if status in queries.TERMINAL)

    async def until_done(self, expected: int, idle_s: float) -> int:
        """Until ``expected`` more tasks than at the start finished, or none did for ``idle_s``."""
        done, last, changed, reported = 0, -1, time.monotonic(), time.monotonic()
        while done < expected and time.monotonic() - changed < idle_s:
            await asyncio.sleep(POLL_S)
            done = await self.count() - self.base
            if done != last:
                last, changed = done, time.monotonic()
            if time.monotonic() - reported > REPORT_S:
                self.report(f"  {done} of {expected} tasks finished")
                reported = time.monotonic()
        return done


async def raw_latency(bus: Bus, count: int, rate: float) -> tuple[float, float]:
    """Raw JetStream at a fixed rate: paced publishes awaiting each ack (as
    ``publish_event`` does) and a pull consumer fetching one at a time (as the workers do);
    p50 and p99 of publish to consume, in ms."""
    await bus.js.add_stream(StreamConfig(name="LOAD_RAW", subjects=["load.raw.>"]))
    subscription = await bus.js.pull_subscribe("load.raw.>", durable="load-raw", stream="LOAD_RAW")
    latencies: list[float] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for batch in fetch_batches(subscription, batch=1, stop=stop):
            for msg in batch:
                latencies.append((time.time() - float(msg.data)) * 1000)
                await msg.ack()
                if len(latencies) >= count:
                    stop.set()

    consumer = asyncio.create_task(consume())
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await bus.js.publish("load.raw.event", repr(time.time()).encode(), headers={"Nats-Msg-Id": new_id()})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(consumer), timeout=RAW_DRAIN_S)
    stop.set()
    await consumer
    await bus.js.delete_stream("LOAD_RAW")
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


async def task_rows(sessions: async_sessionmaker[AsyncSession]) -> dict[str, TaskRow]:
    async with sessions() as session:
        total = await queries.count_tasks(session)
        return {row.id: row for row in await queries.list_tasks(session, limit=total)}


# --- the benchmark ------------------------------------------------------------------

def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_load_benchmark(*, workers: int = 3, events: int = 20000, fast_events: int | None = None,
                             rate: float = 500.0, database_url: str | None = None, idle_s: float = 10.0,
                             scratch_dir: Path | None = None, progress: Callable[[str], None] = _stderr) -> LoadResult:
    """The whole benchmark on a private embedded NATS (and SQLite in a temp dir unless
    ``database_url``): raw JetStream first, then the fleet, a warm-up, the fixed-rate
    phase and the as-fast-as-possible phase, each waited for until its tasks finished or
    none finished for ``idle_s``. The run's files (JetStream's store, the database, the
    workspaces) live in a temporary folder inside ``scratch_dir`` (default: the system's
    temp dir)."""
    from hybrid_agent.eval.bus_bench import raw_rate   # imports the API: kept out of the fleet

    fast_events = fast_events or events
    if scratch_dir is not None:
        scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir) as tmp, EmbeddedNats(Path(tmp) / "js") as server:
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, database_url=database_url)
        await asyncio.to_thread(migrate, settings.database)
        engine = make_engine(settings.database)
        sessions = make_sessionmaker(engine)
        bus = await Bus.connect(server.url, name="load-bench")
        try:
            progress(f"raw JetStream: {events} messages at {rate:g}/s, then {fast_events} as fast as possible")
            raw = Raw(events, *await raw_latency(bus, events, rate),
                      await raw_rate(bus, [bench_event(new_id()) for _ in range(fast_events)]))
            with Fleet(workers=workers, nats_url=server.url, database_url=settings.database,
                       data_dir=settings.data_dir) as fleet:
                assert server.process is not None
                meter = CpuMeter({"publisher": [os.getpid()], "nats": [server.process.pid],
                                  "router": [fleet.processes[0].pid], "workers": [p.pid for p in fleet.processes[1:]]})
                sent, clean = await _phases(bus, fleet, Progress(sessions, progress), meter, events=events,
                                            fast_events=fast_events, rate=rate, idle_s=idle_s, progress=progress)
            executions, timings = execution_counts(fleet.run_dir), worker_timings(fleet.run_dir)
            rows = await task_rows(sessions)
        finally:
            await bus.close()
            await engine.dispose()
    fixed, fast = (phase_outcome(s, rows, executions, timings) for s in sent)
    return LoadResult(workers, rate, "postgresql" if database_url else "sqlite", fixed, fast, raw, clean)


async def _phases(bus: Bus, fleet: Fleet, counter: Progress, meter: CpuMeter, *, events: int, fast_events: int,
                  rate: float, idle_s: float, progress: Callable[[str], None]) -> tuple[list[Sent], bool]:
    """A warm-up, then the two phases, each until its tasks finished; and whether every
    process was up to the end and exited 0 when told to stop."""
    counter.base = await counter.count()   # a PostgreSQL store may hold tasks already
    warm = max(10 * (len(fleet.names) - 1), int(rate * WARM_UP_S))
    progress(f"{len(fleet.names) - 1} workers and the router up; warm-up with {warm} events")
    await publish_paced(bus, "warm-up", warm, rate)
    await counter.until_done(warm, idle_s)

    async def fixed_phase() -> Sent:
        progress(f"fixed rate: {events} events at {rate:g}/s")
        sent = await publish_paced(bus, "fixed", events, rate)
        await counter.until_done(warm + events, idle_s)
        return sent

    async def fast_phase() -> Sent:
        progress(f"as fast as possible: {fast_events} events")
        sent = await publish_fast(bus, "fast", fast_events)
        await counter.until_done(warm + events + fast_events, idle_s)
        return sent

    phases = [await meter.measure(fixed_phase), await meter.measure(fast_phase)]
    alive = fleet.alive()
    return phases, fleet.stop() and alive


# --- output -------------------------------------------------------------------------

def table(result: LoadResult) -> str:
    """Our two phases with the raw JetStream rows beside them (p99 split into the router's
    leg, event to task row, and the workers', task row to start); then the workers' stages
    and every process's CPU per event."""
    raw, rows = result.raw, [(f"ours, {result.rate:g}/s", result.fixed), ("ours, as fast as possible", result.fast)]
    lines = [_row(("phase", "events", "events/s", "p50 ms", "p99 ms", "lost", "dup", "route p99", "pickup p99"))]
    lines += [_row((label, p.events, f"{p.events_per_s:.0f}", f"{p.p50_ms:.1f}", f"{p.p99_ms:.1f}", p.lost,
                    p.duplicated, f"{p.route_p99_ms:.1f}", f"{p.pickup_p99_ms:.1f}")) for label, p in rows]
    lines.append(_row((f"raw JetStream, {result.rate:g}/s", raw.events, f"{result.rate:.0f}",
                       f"{raw.fixed_p50_ms:.1f}", f"{raw.fixed_p99_ms:.1f}", "-", "-", "-", "-")))
    lines.append(_row(("raw JetStream, as fast as possible", result.fast.events, f"{raw.fast_msgs_per_s:.0f}",
                       "-", "-", "-", "-", "-", "-")))
    lines += ["", f"{'worker ms per task, p50 / p99':<36}" + "".join(f"{stage:>14}" for stage in STAGES)
              + f"{'batch':>8}"]
    lines += [f"{label:<36}" + "".join(f"{f'{p50:.1f} / {p99:.1f}':>14}" for p50, p99 in p.stages.values())
              + f"{p.batch_mean:>8.1f}" for label, p in rows]
    roles = list(result.fixed.per_event_ms())
    lines += ["", f"{'CPU ms per event (run-queue wait)':<36}" + "".join(f"{role:>14}" for role in roles)
              + f"{'cores busy':>12}{'machine':>9}"]
    lines += [f"{label:<36}" + "".join(f"{f'{u.cpu_s:.2f} ({u.runqueue_s:.2f})':>14}" for u in p.per_event_ms().values())
              + f"{p.cores_busy():>12.2f}{p.cores_busy(machine=True):>9.2f}" for label, p in rows]
    return "\n".join(lines)


def _row(cells: Sequence[object]) -> str:
    widths = (8, 10, 9, 9, 6, 5, 11, 12)
    return f"{cells[0]!s:<36}" + "".join(f"{cell!s:>{width}}" for cell, width in zip(cells[1:], widths))


if __name__ == "__main__":   # one process of the fleet
    role_, name_, nats_url_, database_url_, data_dir_ = sys.argv[1:]
    asyncio.run(_serve(role_, name_, nats_url_, database_url_, Path(data_dir_)))
