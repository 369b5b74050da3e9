"""Wiring: the services a process needs (NATS, embedded or given; the store, migrated; the
LLM) and the components it runs (API, router, worker) until a stop event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import uvicorn

from hybrid_agent.agents.assembly import load_parts
from hybrid_agent.agents.worker import Worker
from hybrid_agent.api.app import Services, create_app
from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.embedded import EmbeddedNats
from hybrid_agent.config import Settings
from hybrid_agent.startup_heap import freeze_startup_heap
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from hybrid_agent.triggers.outbox import Outbox
from hybrid_agent.triggers.router import Router
from hybrid_agent.triggers.rules import load_rules
from hybrid_agent.triggers.service import run_trigger_sources


@contextlib.contextmanager
def nats_for(settings: Settings) -> Iterator[Settings]:
    """Settings whose ``nats_url`` points at a running server: the given one, or an
    embedded server started here and stopped on exit."""
    if settings.nats_url:
        yield settings
        return
    with EmbeddedNats(settings.data_dir / "jetstream") as server:
        yield settings.model_copy(update={"nats_url": server.url})


@contextlib.asynccontextmanager
async def services(settings: Settings, *, name: str) -> AsyncIterator[Services]:
    await asyncio.to_thread(migrate, settings.database)
    engine = make_engine(settings.database)
    bus = await Bus.connect(settings.nats_url or "", name=name, replicas=settings.stream_replicas)
    try:
        yield Services(bus=bus, sessions=make_sessionmaker(engine))
    finally:
        await bus.close()
        await engine.dispose()


async def serve_api(settings: Settings, svc: Services, stop: asyncio.Event) -> None:
    config = uvicorn.Config(create_app(settings, svc), host=settings.api_host, port=settings.api_port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # the caller owns signals
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def run_router(settings: Settings, svc: Services, stop: asyncio.Event) -> None:
    await Router(svc.bus, svc.sessions, rules=load_rules(settings.rules_path)).run(stop)


async def run_triggers(settings: Settings, svc: Services, stop: asyncio.Event) -> None:
    await run_trigger_sources(settings, svc.bus, svc.sessions, stop)


async def run_outbox(settings: Settings, svc: Services, stop: asyncio.Event) -> None:
    await Outbox(svc.bus, svc.sessions).run(stop, interval_s=settings.outbox_flush_s)


async def run_worker(settings: Settings, svc: Services, stop: asyncio.Event) -> None:
    print(f"worker: loading LLM {settings.llm} (the first start converts the GGUF once, ~20 s)", flush=True)
    parts = await asyncio.to_thread(load_parts, settings)
    print(f"worker: ready ({parts.describe()})", flush=True)
    freeze_startup_heap()
    await Worker(settings=settings, bus=svc.bus, sessions=svc.sessions, llm=parts.llm, sandbox=parts.sandbox,
                 policy=parts.policy, classifier=parts.classifier).run(stop)


async def run_until_stopped(stop: asyncio.Event, *jobs: asyncio.Future | asyncio.Task) -> None:  # type: ignore[type-arg]
    """Run jobs until ``stop`` is set or one of them fails (which sets it)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    for task in tasks:
        task.add_done_callback(lambda t: stop.set())
    await stop.wait()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
