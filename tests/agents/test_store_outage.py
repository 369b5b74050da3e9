"""A PostgreSQL outage mid-task: the worker keeps the task's message (no redelivery, so
nothing counts towards dead-lettering), waits for the store, and finishes the task; no
task is marked failed because of it."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.models.llm.base import Candidate, Proposal
from hybrid_agent.store import queries
from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate
from tests.agents.conftest import queue_task
from tests.waiting import eventually
from tests.worker_support import finished


class PostgresOutageProxy:
    """A TCP proxy in front of PostgreSQL that a test can cut (every connection dropped,
    new ones refused) and restore: an outage as the worker sees it."""

    def __init__(self, port: int = 5432) -> None:
        self.target_port = port
        self.down = False
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.down = True
        for writer in list(self.open):
            writer.transport.abort()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.open |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        self.open -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


class FakeTwoFilesLLM:
    """The LLM boundary, not what this test is about: writes a.txt, then b.txt, then finishes,
    deciding from the workspace (so a step run again after the outage asks the same)."""

    name = "fake-two-files"

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def propose(self, messages, schema, k, *, exclude=()):
        allowed = json.dumps(schema)
        missing = [name for name in ("a.txt", "b.txt") if not (self.workspace / name).exists()]
        if not missing and '"finish"' in allowed:
            call = {"tool": "finish", "args": {"summary": "both written", "success": True}}
        elif missing and '"write_file"' in allowed:
            call = {"tool": "write_file", "args": {"path": missing[0], "content": missing[0]}}
        else:
            call = {"tool": "list_dir", "args": {"path": "."}}
        text = json.dumps(call)
        return Proposal(candidates=[Candidate(text=text, parsed=call, logprob=-1.0, tokens=5)], prompt_tokens=10,
                        seconds=0.0)


@pytest.fixture
async def store_behind_proxy(postgres_url):
    await asyncio.to_thread(migrate, postgres_url)
    proxy = PostgresOutageProxy()
    port = await proxy.start()
    engine = make_engine(postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}"))
    direct = make_engine(postgres_url)
    yield proxy, make_sessionmaker(engine), make_sessionmaker(direct)
    await proxy.close()
    await engine.dispose()
    await direct.dispose()


async def test_a_store_outage_mid_task_neither_fails_nor_redelivers_it(store_behind_proxy, embedded_bus, settings,
                                                                      tmp_path, caplog):
    proxy, sessions, direct = store_behind_proxy
    workspace = tmp_path / "ws"
    await queue_task(direct, embedded_bus, "t1", workspace=str(workspace))
    worker = Worker(settings=settings.model_copy(update={"experts": [], "ablation": "llm_only"}), bus=embedded_bus,
                    sessions=sessions, llm=FakeTwoFilesLLM(workspace), sandbox=make_sandbox("rlimit", max_output_chars=1000))
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        async def steps() -> int:
            async with direct() as session:
                return len(await queries.get_steps(session, task_id="t1"))
        await eventually(lambda: _at_least(steps, 1), "the first step is journaled")
        with caplog.at_level(logging.WARNING, logger="hybrid_agent.agents.worker"):
            proxy.cut()
            await eventually(lambda: "the store is unreachable" in caplog.text, "the worker notices the outage")
            proxy.restore()
            await eventually(lambda: finished(direct, "t1"), "the task finishes once the store is back", 60)
    finally:
        stop.set()
        await running
    async with direct() as session:
        task = await queries.get_task(session, task_id="t1")
        journal = await queries.journal_for_task(session, task_id="t1", event_id=None)
    assert task.status == "succeeded"
    assert {entry.detail["deliveries"] for entry in journal if entry.kind == "task.delivered"} == {1}
    assert (workspace / "a.txt").read_text() == "a.txt" and (workspace / "b.txt").read_text() == "b.txt"
    info = await embedded_bus.js.consumer_info("TASKS", "workers-default-normal")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def _at_least(count, n: int) -> bool:
    return await count() >= n
