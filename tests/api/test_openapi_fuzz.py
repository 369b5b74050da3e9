"""Schemathesis against the served OpenAPI schema: requests generated from every
operation's schema (valid and not), sent with an admin token to a real server (uvicorn,
embedded NATS, SQLite); none may be answered with a server error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings as hypothesis_settings

from hybrid_agent.api.app import Services, create_app
from hybrid_agent.api.auth import ensure_admin_token
from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.embedded import free_port
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate


@dataclass
class LiveAPI:
    url: str
    token: str


@pytest.fixture
def live_api(settings, embedded_nats) -> Iterator[LiveAPI]:
    """The API served from a thread of its own (its own event loop), as a client sees it."""
    ready, port = threading.Event(), free_port()
    state: dict = {}

    async def serve() -> None:
        migrate(settings.database)
        engine = make_engine(settings.database)
        bus = await Bus.connect(embedded_nats)
        sessions = make_sessionmaker(engine)
        state["token"] = await ensure_admin_token(sessions, settings.admin_token_file)
        server = uvicorn.Server(uvicorn.Config(create_app(settings, Services(bus=bus, sessions=sessions)),
                                               host="127.0.0.1", port=port, log_level="warning"))
        state["server"] = server
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        ready.set()
        await serving
        await bus.close()
        await engine.dispose()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(timeout=60), "the API did not start"
    yield LiveAPI(f"http://127.0.0.1:{port}", state["token"])
    state["server"].should_exit = True
    thread.join(timeout=30)


def test_no_operation_answers_with_a_server_error(live_api: LiveAPI) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13   # every documented operation is exercised

    for operation in operations:
        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case) -> None:
            response = case.call(headers=headers, timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        no_server_error()
