"""A whole stack in the test process: store, bus, router, a worker with the real default
LLM, and the API app; parametrised over embedded NATS + SQLite and system NATS + PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hybrid_agent import runtime
from hybrid_agent.agents.sandbox import SandboxLimits, make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.api.app import Services, create_app
from hybrid_agent.api.auth import ensure_admin_token
from hybrid_agent.config import Settings
from hybrid_agent.models.llm import LLM, load_llm
from hybrid_agent.models.tpc import load_tpc
from hybrid_agent.triggers.router import Router

MODEL_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "models"


@pytest.fixture(scope="session")
def default_llm() -> LLM:
    defaults = Settings()
    # As the agent loads it (assembly.build_loop): the default weights are fp16.
    return load_llm(defaults.llm, cache_dir=MODEL_CACHE, seed=defaults.seed, max_new_tokens=defaults.llm_max_new_tokens,
                    temperature=defaults.llm_temperature, quantize=defaults.llm_quantize,
                    loop_tokens=defaults.llm_loop_tokens)


@dataclass
class Stack:
    client: httpx.AsyncClient
    services: Services
    settings: Settings
    jobs: list[asyncio.Task]

    def check_alive(self) -> None:
        for job in self.jobs:
            if job.done():
                job.result()  # re-raises what killed the router or the worker
                raise AssertionError(f"{job.get_coro()} stopped")

    async def run_task(self, goal: str, workspace: Path, *, timeout_s: float = 600) -> dict:
        created = await self.client.post("/api/tasks", json={"goal": goal, "workspace": str(workspace)})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        async with asyncio.timeout(timeout_s):
            while True:
                task = (await self.client.get(f"/api/tasks/{task_id}")).json()
                if task["status"] not in ("queued", "running"):
                    return task
                self.check_alive()
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, llm: LLM) -> AsyncIterator[Stack]:
    async with runtime.services(settings, name="test-stack") as svc:
        stop = asyncio.Event()
        # As deployed: bubblewrap where it works, the default policy and the shipped classifier.
        sandbox = make_sandbox(settings.sandbox, max_output_chars=settings.max_output_chars,
                               limits=SandboxLimits.from_settings(settings))
        worker = Worker(settings=settings, bus=svc.bus, sessions=svc.sessions, llm=llm, sandbox=sandbox,
                        classifier=load_tpc())
        jobs = [asyncio.create_task(Router(svc.bus, svc.sessions).run(stop)), asyncio.create_task(worker.run(stop))]
        token = await ensure_admin_token(svc.sessions, settings.admin_token_file)
        app = create_app(settings, svc)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            try:
                yield Stack(client, svc, settings, jobs)
            finally:
                stop.set()
                await asyncio.gather(*jobs)
                await app.state.journal.close()   # no lifespan under ASGITransport


@pytest.fixture(params=["embedded-sqlite", "system-postgres"])
async def stack(request, tmp_path, default_llm) -> AsyncIterator[Stack]:
    if request.param == "embedded-sqlite":
        nats_url, database_url = request.getfixturevalue("embedded_nats"), None
    else:
        nats_url, database_url = request.getfixturevalue("system_nats"), request.getfixturevalue("postgres_url")
    settings = Settings(data_dir=tmp_path / "data", nats_url=nats_url, database_url=database_url,
                        max_steps=6, tool_timeout_s=20, workspace_roots=[tmp_path])
    async with running_stack(settings, default_llm) as running:
        yield running
