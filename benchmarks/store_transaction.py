"""The store's SQLite transactions on the default engine (statements run inline on the event
loop's thread, and the per-batch writes on the driver's own connection: ``inline_sqlite``,
``direct_sqlite``) against aiosqlite's driver thread and SQLAlchemy's execute path, in one run.

    python benchmarks/store_transaction.py [--rounds N] [--batch N]

Each round is what the router and a worker write for a batch of tasks: the events and their
tasks (one transaction), the tasks started (one), their steps journaled and the tasks
finished (one). Timed per transaction twice: with the event loop otherwise idle (wall and
CPU), and beside a task that works 0.2 ms, then waits 0.3 ms, over and over (as a process
handling NATS messages as they come), where every hand-off to the driver thread also waits
for the loop's turn and the GIL while the transaction holds SQLite's write lock (wall only:
the CPU is the neighbour's too). The two drivers alternate in blocks of rounds on one
database file. Prints a table, then one JSON line (threaded_ms, inline_ms: mean wall ms per
transaction beside the busy task; ratio = inline_ms / threaded_ms; idle_ratio the same with
the loop idle; cpu_ratio: CPU per transaction, loop idle)."""

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.store.tables import utcnow

BLOCKS = 10
WORK_S, WAIT_S = 0.0002, 0.0003   # the busy task's work, then its wait for the next message

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rounds", type=int, default=1000, help="rounds (3 transactions each) per driver and loop")
parser.add_argument("--batch", type=int, default=8, help="tasks per round")
args = parser.parse_args()


def rows(prefix: str, n: int) -> tuple[list[dict], list[dict]]:
    events = [{"id": f"{prefix}-e{i}", "dedup_key": f"{prefix}-k{i}", "source": "user", "kind": "task",
               "payload": {"goal": "write result.txt"}, "created_at": utcnow()} for i in range(n)]
    tasks = [{"id": f"{prefix}-t{i}", "event_id": f"{prefix}-e{i}", "goal": "write result.txt", "status": "queued",
              "workspace": None, "queue": "default", "requested_by": "bench"} for i in range(n)]
    return events, tasks


def step(task_id: str) -> dict:
    return {"task_id": task_id, "n": 1, "tool_call": {"tool": "write_file", "args": {"path": "result.txt"}},
            "decision": "allow", "policy": None, "model": {}, "observation": "wrote 9 bytes", "ok": True,
            "candidates": [], "prompt_tokens": 0, "timings": {}, "started_at": utcnow(), "duration_s": 0.001}


async def a_round(sessions: async_sessionmaker[AsyncSession], prefix: str, times: list[tuple[float, float]]) -> None:
    events, tasks = rows(prefix, args.batch)
    ids = [task["id"] for task in tasks]

    async def insert(session: AsyncSession) -> None:
        await queries.insert_events(session, events=events)
        await queries.insert_tasks(session, tasks=tasks)

    async def start(session: AsyncSession) -> None:
        await queries.start_tasks(session, workspaces={task_id: "/w" for task_id in ids}, isolation="rlimit")

    async def finish(session: AsyncSession) -> None:
        await queries.add_steps(session, steps=[step(task_id) for task_id in ids])
        await queries.finish_tasks(session, finished=[{"id": task_id, "status": "succeeded", "error": None,
                                                       "result": {"success": True}} for task_id in ids])

    for work in (insert, start, finish):
        wall, cpu = time.perf_counter(), time.process_time()
        async with sessions.begin() as session:
            await work(session)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))


async def keep_loop_busy(stop: asyncio.Event) -> None:
    while not stop.is_set():
        until = time.perf_counter() + WORK_S
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(WAIT_S)


async def measure(database: Path, inline: bool, busy: bool, block: int, times: list[tuple[float, float]]) -> None:
    engine = make_engine(f"sqlite:///{database}", inline=inline)
    sessions, stop = make_sessionmaker(engine), asyncio.Event()
    neighbour = asyncio.create_task(keep_loop_busy(stop)) if busy else None
    try:
        for i in range(args.rounds // BLOCKS):
            await a_round(sessions, f"{inline}-{busy}-{block}-{i}", times)
    finally:
        stop.set()
        if neighbour:
            await neighbour
        await engine.dispose()


async def main() -> dict[tuple[bool, bool], list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "store.db"
        await asyncio.to_thread(migrate, f"sqlite:///{database}")
        results: dict[tuple[bool, bool], list[tuple[float, float]]] = {}
        for busy in (False, True):
            for block in range(BLOCKS):
                for inline in (False, True):
                    await measure(database, inline, busy, block, results.setdefault((busy, inline), []))
        return results


results = asyncio.run(main())
summary = {}
print(f"{'event loop':<12} {'driver':<16} {'wall ms mean':>13} {'wall ms p99':>12} {'CPU ms mean':>12}")
for (busy, inline), times in results.items():
    walls, cpus = sorted(t[0] * 1000 for t in times), [t[1] * 1000 for t in times]
    wall, p99, cpu = statistics.mean(walls), walls[int(0.99 * len(walls)) - 1], statistics.mean(cpus)
    driver = "inline" if inline else "aiosqlite thread"
    cpu_cell = "-" if busy else f"{cpu:.3f}"
    print(f"{'busy' if busy else 'idle':<12} {driver:<16} {wall:>13.3f} {p99:>12.3f} {cpu_cell:>12}")
    summary[(busy, inline)] = (wall, cpu)
threaded, inline = summary[(True, False)][0], summary[(True, True)][0]
(idle_threaded, threaded_cpu), (idle_inline, inline_cpu) = summary[(False, False)], summary[(False, True)]
print(json.dumps({"threaded_ms": round(threaded, 3), "inline_ms": round(inline, 3), "ratio": round(inline / threaded, 3),
                  "idle_threaded_ms": round(idle_threaded, 3), "idle_inline_ms": round(idle_inline, 3),
                  "idle_ratio": round(idle_inline / idle_threaded, 3), "threaded_cpu_ms": round(threaded_cpu, 3),
                  "inline_cpu_ms": round(inline_cpu, 3), "cpu_ratio": round(inline_cpu / threaded_cpu, 3),
                  "transactions": len(results[(True, True)]), "batch": args.batch}))
