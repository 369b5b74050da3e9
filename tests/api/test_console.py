"""The console as a browser drives it (forms, cookies, redirects) over the ASGI app: login
with a token, the task list and a task's trace, the approvals queue with the diff, and
decisions that need the approver role and a request from the console itself."""

from __future__ import annotations

import httpx
import pytest

from hybrid_agent.api.auth import create_token
from hybrid_agent.store import queries
from tests.api.test_approvals_api import parked_task

ORIGIN = {"Origin": "http://console"}


@pytest.fixture
async def browser(api):
    """A cookie-keeping client with no bearer token, as a browser is."""
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        yield client


async def log_in(browser, sessions, *, name: str, role: str) -> None:
    token = await create_token(sessions, name=name, role=role)
    response = await browser.post("/login", data={"token": token}, headers=ORIGIN)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert "httponly" in response.headers["set-cookie"].lower() and "samesite=strict" in response.headers["set-cookie"].lower()


async def test_pages_need_a_login_and_a_bad_token_is_refused(browser):
    assert (await browser.get("/")).headers["location"] == "/login"
    response = await browser.post("/login", data={"token": "ha_wrong"}, headers=ORIGIN)
    assert "not%20valid" in response.headers["location"]
    assert "not valid" in (await browser.get(response.headers["location"])).text


async def test_an_approver_decides_from_the_queue(browser, api, sessions, tmp_path):
    approval_id = await parked_task(sessions, api.app.state.bus, tmp_path)
    await log_in(browser, sessions, name="bob", role="approver")
    tasks = (await browser.get("/")).text
    assert "serve on 8080" in tasks and "awaiting_approval" in tasks
    queue = (await browser.get("/approvals")).text
    assert f"approval-{approval_id}" in queue and "+port=8080" in queue and "edits a config file" in queue
    response = await browser.post(f"/approvals/{approval_id}/decision", data={"decision": "approve", "reason": "ok"},
                                  headers=ORIGIN)
    assert response.status_code == 303 and "error" not in response.headers["location"]
    assert (await api.get(f"/api/approvals/{approval_id}")).json()["decided_by"] == "bob"
    assert "Nothing is waiting" in (await browser.get("/approvals")).text


async def test_a_change_must_come_from_the_console_and_the_right_role(browser, api, sessions, tmp_path):
    approval_id = await parked_task(sessions, api.app.state.bus, tmp_path)
    await log_in(browser, sessions, name="vic", role="viewer")
    response = await browser.post(f"/approvals/{approval_id}/decision", data={"decision": "approve"}, headers=ORIGIN)
    assert "needs%20%27approver%27" in response.headers["location"]
    await log_in(browser, sessions, name="bob", role="approver")
    forged = await browser.post(f"/approvals/{approval_id}/decision", data={"decision": "approve"},
                                headers={"Origin": "http://evil.example"})
    assert "must%20come%20from%20the%20console" in forged.headers["location"]
    api_forged = await browser.post(f"/api/approvals/{approval_id}/decision", json={"decision": "approve"},
                                    headers={"Origin": "http://evil.example"})
    assert api_forged.status_code == 403
    assert (await api.get(f"/api/approvals/{approval_id}")).json()["status"] == "pending"


async def test_submit_then_see_the_task(browser, sessions):
    await log_in(browser, sessions, name="olga", role="operator")
    response = await browser.post("/submit", data={"goal": "rotate the logs", "workspace": "", "check": ""},
                                  headers=ORIGIN)
    assert response.status_code == 303 and response.headers["location"].startswith("/tasks/")
    page = (await browser.get(response.headers["location"])).text
    assert "rotate the logs" in page and 'data-ended="no"' in page
    bad = await browser.post("/submit", data={"goal": "x", "workspace": "/etc"}, headers=ORIGIN)
    assert "not%20strictly%20below" in bad.headers["location"]


async def test_a_dry_run_submitted_from_the_console_says_so(browser, sessions):
    await log_in(browser, sessions, name="olga", role="operator")
    response = await browser.post("/submit", data={"goal": "tidy", "workspace": "", "check": "", "dry_run": "on"},
                                  headers=ORIGIN)
    page = (await browser.get(response.headers["location"])).text
    assert "<strong>dry run</strong>" in page


async def test_an_urgent_task_submitted_from_the_console_says_its_priority(browser, sessions):
    await log_in(browser, sessions, name="olga", role="operator")
    response = await browser.post("/submit", data={"goal": "page", "workspace": "", "check": "", "priority": "8"},
                                  headers=ORIGIN)
    page = (await browser.get(response.headers["location"])).text
    assert "priority 8" in page


async def test_a_task_waiting_to_start_says_what_for(browser, sessions):
    await log_in(browser, sessions, name="olga", role="operator")
    response = await browser.post("/submit", data={"goal": "restart web", "workspace": "", "check": ""},
                                  headers=ORIGIN)
    task_id = response.headers["location"].rsplit("/", 1)[-1]
    async with sessions.begin() as session:
        await queries.set_waiting(session, task_id=task_id, waiting_for="resource host:web1 (another task holds it)")
    page = (await browser.get(f"/tasks/{task_id}")).text
    assert "Waiting for resource host:web1 (another task holds it)" in page


async def test_the_queue_page_shows_a_queue_no_worker_serves(api, browser, sessions):
    from hybrid_agent.bus.messages import TaskMessage

    await log_in(browser, sessions, name="vic", role="viewer")
    await api.app.state.bus.publish_tasks([TaskMessage(task_id="nightly", queue="batch")])
    page = (await browser.get("/queues")).text
    assert "<code>batch</code>" in page and "no worker serves this queue" in page
