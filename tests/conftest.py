"""Service fixtures. PostgreSQL, Redis and the system NATS are real services on loopback;
a test that needs one fails (never skips) when it is missing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus import subjects
from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.embedded import EmbeddedNats, free_port
from hybrid_agent.config import Settings
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEM_NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_steps=6, tool_timeout_s=10)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the ``test`` database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{POSTGRES_DSN}?options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(migrate, database_url)
    engine = make_engine(database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def embedded_nats(tmp_path: Path) -> Iterator[str]:
    with EmbeddedNats(tmp_path / "jetstream") as server:
        yield server.url


async def _reset_streams(url: str) -> None:
    bus = await Bus.connect(url)
    for stream in (subjects.EVENTS_STREAM, subjects.TASKS_STREAM, subjects.DEAD_STREAM):
        try:
            await bus.js.delete_stream(stream)
        except NotFoundError:
            pass
    await bus.close()


@pytest.fixture
def system_nats() -> str:
    """The machine's NATS at 127.0.0.1:4222, with this project's streams reset."""
    # In a thread of its own: an async fixture may ask for this one inside a running loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _reset_streams(SYSTEM_NATS_URL)).result()
    return SYSTEM_NATS_URL


@pytest.fixture(params=["embedded", "system"])
def nats_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("embedded_nats" if request.param == "embedded" else "system_nats")


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_url)
    yield connected
    await connected.close()


@pytest.fixture
async def embedded_bus(embedded_nats: str) -> AsyncIterator[Bus]:
    """A bus on the test's own embedded NATS, for tests not about which NATS."""
    bus = await Bus.connect(embedded_nats)
    yield bus
    await bus.close()


@pytest.fixture
async def restartable_nats(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedNats, Bus]]:
    """An embedded NATS a test may stop and start again (same port and store), and a bus on
    it whose publishes to a stopped server fail within a second."""
    server = EmbeddedNats(tmp_path / "restartable-js", port=free_port())
    server.start()
    bus = await Bus.connect(server.url, timeout_s=1.0)
    yield server, bus
    await bus.close()
    server.stop()


async def default_lane(bus: Bus) -> JetStreamContext.PullSubscription:
    """A plain pull subscription on the default queue's normal band, for tests that inspect
    what was queued there in batches (workers use ``bus.task_feed``)."""
    from hybrid_agent.bus.connection import ConsumerLimits

    await bus.task_feed(ConsumerLimits(ack_wait_s=30, max_deliver=3))
    return await bus.js.pull_subscribe_bind(subjects.workers_durable("default", "normal"), subjects.TASKS_STREAM)


@contextlib.asynccontextmanager
async def admin_client(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                       bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process (ASGI) on ``bus`` and the store, with an admin token."""
    from hybrid_agent.api.app import Services, create_app
    from hybrid_agent.api.auth import ensure_admin_token

    app = create_app(settings, Services(bus=bus, sessions=sessions))
    token = await ensure_admin_token(sessions, settings.admin_token_file)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client
    await app.state.journal.close()


@pytest.fixture
def make_worker(settings, bus, sessions):
    """A worker on the test's bus and store, the LLM given, commands under the rlimit sandbox."""
    from hybrid_agent.agents.sandbox import make_sandbox
    from hybrid_agent.agents.worker import Worker

    def make(llm, **overrides) -> Worker:
        # The LLM alone unless a test asks: the scripted fake answers a known number of
        # proposals, and these tests are about the worker, not the hybrid's parts (which
        # would also load the sentence encoder in every test).
        configured = settings.model_copy(update={"experts": ["code_edit"], "ablation": "llm_only", **overrides})
        return Worker(settings=configured, bus=bus, sessions=sessions, llm=llm,
                      sandbox=make_sandbox("rlimit", max_output_chars=1000))
    return make


@pytest.fixture
async def api_on_bus(settings, sessions, bus):
    """The API in-process (ASGI) on the same bus and store as the test's workers, as admin."""
    async with admin_client(settings, sessions, bus) as client:
        yield client


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["redis", "local"])
async def new_lease(request: pytest.FixtureRequest):
    """Leases on one key unique to the test, ``new_lease(holder, ttl_s)``: Redis (a real
    server) and the embedded in-process kind, which keep the same contract."""
    from hybrid_agent.bus.leases import LocalLease, RedisLease

    key = f"test:lease:{uuid.uuid4().hex}"
    made = []

    def new(holder: str, ttl_s: float):
        lease = (RedisLease(REDIS_URL, key=key, holder=holder, ttl_s=ttl_s) if request.param == "redis"
                 else LocalLease(key=key, holder=holder, ttl_s=ttl_s))
        made.append(lease)
        return lease
    yield new
    for lease in made:
        await lease.release()
        await lease.close()
