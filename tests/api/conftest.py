"""The API under test, served in-process (ASGI) over the real bus and store, with an admin token."""

import httpx
import pytest

from hybrid_agent.api.app import Services, create_app
from hybrid_agent.api.auth import ensure_admin_token
from hybrid_agent.bus.connection import Bus


@pytest.fixture
async def api(settings, sessions, embedded_nats):
    bus = await Bus.connect(embedded_nats)
    app = create_app(settings, Services(bus=bus, sessions=sessions))
    token = await ensure_admin_token(sessions, settings.admin_token_file)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        client.app = app
        yield client
    await app.state.journal.close()   # no lifespan under ASGITransport: close what it would
    await bus.close()
