"""The console in a real browser (headless Chromium driven by Playwright): an approver logs
in, sees the approval a real task is parked on, approves it (or rejects it with a reason)
and watches the task finish. The stack is real (API served by uvicorn, router, worker,
embedded NATS, SQLite); only the LLM is a scripted fake, as the console is what is tested.
Screenshots of the approvals page and the task page go to docs/."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import async_playwright, expect

from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.api.app import Services, create_app
from hybrid_agent.api.auth import create_token, ensure_admin_token
from hybrid_agent.bus.embedded import free_port
from hybrid_agent.triggers.router import Router
from tests.fakes import FakeScriptedLLM
from tests.worker_support import task_status

DOCS = Path(__file__).parents[2] / "docs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"   # Debian's, installed by the Makefile


@pytest.fixture
def database_url(tmp_path: Path) -> str:   # one stack is enough here: SQLite ...
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def nats_url(embedded_nats: str) -> str:   # ... and the embedded NATS
    return embedded_nats


def call(tool: str, **args) -> list[str]:
    return [json.dumps({"tool": tool, "args": args})]


RM = call("shell", cmd="rm old.log")   # the policy holds deletions for a person
# Held, told once, offered again (each held proposal is followed by a resample): parked.
PARKING = [RM, RM, RM, RM]


@pytest.fixture
async def stack(settings, sessions, bus):
    settings = settings.model_copy(update={"experts": ["code_edit"], "ablation": "llm_only"})
    llm = FakeScriptedLLM([])
    stop = asyncio.Event()
    worker = Worker(settings=settings, bus=bus, sessions=sessions, llm=llm,
                    sandbox=make_sandbox("rlimit", max_output_chars=1000))
    jobs = [asyncio.create_task(Router(bus, sessions).run(stop)), asyncio.create_task(worker.run(stop))]
    app = create_app(settings, Services(bus=bus, sessions=sessions))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    admin = await ensure_admin_token(sessions, settings.admin_token_file)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                 headers={"Authorization": f"Bearer {admin}"}) as client:
        yield client, llm
    server.should_exit = True
    stop.set()
    await asyncio.gather(serving, *jobs)


async def parked(stack, sessions, tmp_path: Path, after: list[list[str]]) -> tuple[str, Path]:
    client, llm = stack
    llm.script.extend([*PARKING, *after])
    workspace = tmp_path / "site"
    workspace.mkdir()
    (workspace / "old.log").write_text("stale")
    created = (await client.post("/api/tasks", json={"goal": "remove old.log", "workspace": str(workspace)})).json()
    async with asyncio.timeout(60):
        while await task_status(sessions, created["id"]) != "awaiting_approval":
            await asyncio.sleep(0.1)
    return created["id"], workspace


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_an_approver_decides_in_the_browser_and_sees_the_task_finish(stack, sessions, tmp_path, decision):
    after = [call("finish", summary="removed old.log", success=True)] if decision == "approve" else \
        [call("write_file", path="note.txt", content="kept old.log"), call("finish", summary="kept it", success=True)]
    task_id, workspace = await parked(stack, sessions, tmp_path, after)
    token = await create_token(sessions, name="bob", role="approver")
    base = str(stack[0].base_url)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        await page.goto(base + "/login")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await page.click("text=Approvals")
        card = page.locator(".approval")
        await expect(card).to_contain_text("rm old.log")
        await expect(card).to_contain_text("deletes files")
        if decision == "approve":
            await page.screenshot(path=str(DOCS / "console-approvals.png"), full_page=True)
            await card.locator("button.approve").click()
        else:
            await card.locator("input[name=reason]").fill("keep the log for the audit")
            await card.locator("button.danger").click()
        await expect(page.locator("#no-pending")).to_be_visible()
        await page.goto(f"{base}/tasks/{task_id}")
        await expect(page.locator("#task-status")).to_have_text("succeeded", timeout=60_000)
        if decision == "approve":
            await page.screenshot(path=str(DOCS / "console-task.png"), full_page=True)
        await browser.close()
    assert (workspace / "old.log").exists() == (decision == "reject")
