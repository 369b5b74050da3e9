"""The bus-path benchmark. (a) events -> router (tasks written to the store) -> TASKS -> a
consumer that acks, against raw JetStream async publish + pull-consume of the same
payloads; (b) submissions over REST to the real API against a trivial FastAPI endpoint
served the same way. Everything runs in one process on an embedded NATS, so the ratios
compare like with like."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from nats.js.api import StreamConfig

from hybrid_agent.api.app import create_app
from hybrid_agent.api.auth import ensure_admin_token
from hybrid_agent.api.schemas import TaskCreate, TaskCreated
from hybrid_agent.bus import subjects
from hybrid_agent.bus.connection import Bus, ConsumerLimits
from hybrid_agent.bus.consumer import fetch_batches
from hybrid_agent.bus.embedded import EmbeddedNats, free_port
from hybrid_agent.bus.messages import Event, new_id
from hybrid_agent.config import Settings
from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.triggers.router import Router

PUBLISH_WINDOW = 2000   # async publishes in flight before waiting for acks
REST_CONCURRENCY = 16


async def _publish_all(bus: Bus, items: list[tuple[str, bytes, str]]) -> None:
    pending = []
    for subject, payload, msg_id in items:
        pending.append(await bus.js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id}))
        if len(pending) >= PUBLISH_WINDOW:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


async def _consume(subscription: Any, expected: int, *, wait_s: float = 2.0) -> int:
    """Ack until ``expected`` arrived or nothing came for ``wait_s``; returns the count."""
    got, stop = 0, asyncio.Event()
    async for batch in fetch_batches(subscription, batch=500, stop=stop, wait_s=wait_s):
        await asyncio.gather(*(msg.ack() for msg in batch))
        got += len(batch)
        if got >= expected:
            stop.set()
    return got


async def _until_idle(counter: Callable[[], Awaitable[int]], expected: int, idle_s: float) -> int:
    count, last_change, last = 0, time.monotonic(), -1
    while count < expected and time.monotonic() - last_change < idle_s:
        count = await counter()
        if count != last:
            last, last_change = count, time.monotonic()
        await asyncio.sleep(0.05)
    return count


async def raw_rate(bus: Bus, events: list[Event]) -> float:
    await bus.js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw.>"]))
    sub = await bus.js.pull_subscribe("bench.raw.>", durable="bench", stream="BENCH_RAW")
    items = [(f"bench.raw.{e.kind}", e.model_dump_json().encode(), e.dedup_key) for e in events]
    t0 = time.perf_counter()
    await _publish_all(bus, items)
    got = await _consume(sub, len(events))
    elapsed = time.perf_counter() - t0
    await bus.js.delete_stream("BENCH_RAW")
    return got / elapsed


async def path_rate(bus: Bus, sessions: Any, events: list[Event]) -> tuple[float, int]:
    stop = asyncio.Event()
    router = asyncio.create_task(Router(bus, sessions).run(stop))
    # Every benchmark task is of the default queue's normal band: fetched from it in batches.
    await bus.task_feed(ConsumerLimits(ack_wait_s=60, max_deliver=3))
    tasks_sub = await bus.js.pull_subscribe_bind(subjects.workers_durable("default", "normal"), subjects.TASKS_STREAM)
    items = [(subjects.event_subject(e.source, e.kind), e.model_dump_json().encode(), e.dedup_key) for e in events]
    t0 = time.perf_counter()
    consumed = asyncio.create_task(_consume(tasks_sub, len(events), wait_s=5.0))
    await _publish_all(bus, items)
    delivered = await consumed
    elapsed = time.perf_counter() - t0
    stop.set()
    await router
    return delivered / elapsed, delivered


def _serve_in_thread(app: FastAPI, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread


def trivial_app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/tasks", status_code=201)
    async def accept(body: TaskCreate) -> TaskCreated:
        return TaskCreated(id="x", status="queued")

    return app


async def _post_all(url: str, token: str, count: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            response = await client.post("/api/tasks", json={"goal": f"benchmark task {i}"})
            response.raise_for_status()

    limits = httpx.Limits(max_connections=REST_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(REST_CONCURRENCY)))
        return count / (time.perf_counter() - t0)


async def rest_rates(settings: Settings, sessions: Any, count: int) -> tuple[float, float, int]:
    token = await ensure_admin_token(sessions, settings.admin_token_file)
    async with sessions() as session:
        before = await queries.count_tasks(session)
    servers = [_serve_in_thread(create_app(settings), free_port()), _serve_in_thread(trivial_app(), free_port())]
    (real, _), (trivial, _) = servers
    try:
        rest_raw = await _post_all(f"http://127.0.0.1:{trivial.config.port}", token, count)
        rest = await _post_all(f"http://127.0.0.1:{real.config.port}", token, count)
    finally:
        for server, thread in servers:  # stopped before NATS is, so they close cleanly
            server.should_exit = True
            await asyncio.to_thread(thread.join)

    async def stored() -> int:
        async with sessions() as session:
            return await queries.count_tasks(session) - before

    return rest, rest_raw, await _until_idle(stored, count, idle_s=2.0)


async def run_bus_benchmark(*, events: int = 5000, rest_events: int | None = None,
                            database_url: str | None = None) -> dict[str, Any]:
    rest_events = rest_events or max(events // 5, 100)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "js") as server:
        settings = Settings(data_dir=Path(tmp) / "data", nats_url=server.url, database_url=database_url)
        await asyncio.to_thread(migrate, settings.database)
        engine = make_engine(settings.database)
        sessions = make_sessionmaker(engine)
        bus = await Bus.connect(server.url, name="bench")
        # Submissions (the router makes each its own task), published without the API.
        batch = [Event(source="user", kind="task", payload={"goal": f"benchmark task {i}", "task_id": new_id()})
                 for i in range(events)]
        raw = await raw_rate(bus, batch)
        path, delivered = await path_rate(bus, sessions, batch)
        rest, rest_raw, stored = await rest_rates(settings, sessions, rest_events)
        await bus.close()
        await engine.dispose()
    sent = events + rest_events
    return {"path_rate": round(path), "raw_rate": round(raw), "ratio": round(path / raw, 3),
            "rest_rate": round(rest), "rest_raw_rate": round(rest_raw), "rest_ratio": round(rest / rest_raw, 3),
            "sent": sent, "delivered": delivered + stored, "lost": sent - delivered - stored,
            "database": "postgresql" if database_url else "sqlite"}
