"""The approval workflow over REST and the bus: a held call parks its task with what a
person needs to decide (diff, risk, reasons, scores, snapshot, requester); an approver
decides once (409 after), never on their own task's action, not after expiry; the decision
sends the task back to the queue, and the worker acts on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.agents import approvals
from hybrid_agent.agents.loop import NeedsApproval
from hybrid_agent.api.auth import create_token
from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.messages import TaskMessage
from hybrid_agent.policies.engine import Decision
from hybrid_agent.policies.policy_file import Risk
from hybrid_agent.policies.tool_schema import ToolCall
from hybrid_agent.store import queries
from tests.fakes import FakeScriptedLLM
from tests.worker_support import finished, run_worker_until, task_status

EDIT = ToolCall(tool="edit", args={"path": "app.conf", "old": "port=80", "new": "port=8080"})


def held(call: ToolCall = EDIT) -> NeedsApproval:
    decision = Decision("approve", Risk.MEDIUM, ("edits a config file",), ("config",), "test")
    return NeedsApproval("waiting", call=call, decision=decision, step=2, scores={"ebm_p_success": 0.4})


async def parked_task(sessions, bus: Bus, tmp_path: Path, task_id: str = "a1", *, ttl_s: float = 3600) -> str:
    workspace = tmp_path / task_id
    workspace.mkdir()
    (workspace / "app.conf").write_text("port=80\n")
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": task_id, "event_id": None, "goal": "serve on 8080", "status": "running",
            "workspace": str(workspace), "queue": "default", "requested_by": "alice"}])
    return await approvals.park(bus, sessions, task_id=task_id, held=held(), workspace=workspace,
                                snapshot_id="snap_x", ttl_s=ttl_s)


@pytest.fixture
async def approver(sessions) -> dict[str, str]:
    return {"Authorization": f"Bearer {await create_token(sessions, name='bob', role='approver')}"}


async def test_a_parked_task_shows_what_a_person_needs_to_decide(api, sessions, tmp_path):
    approval_id = await parked_task(sessions, api.app.state.bus, tmp_path)
    pending = (await api.get("/api/approvals", params={"status": "pending"})).json()
    assert [a["id"] for a in pending] == [approval_id]
    shown = (await api.get(f"/api/approvals/{approval_id}")).json()
    assert shown["tool_call"] == EDIT.model_dump() and shown["risk"] == "medium"
    assert shown["reasons"] == ["edits a config file"] and shown["scores"] == {"ebm_p_success": 0.4}
    assert "-port=80\n+port=8080" in shown["diff"] and shown["snapshot_id"] == "snap_x"
    assert shown["requested_by"] == "alice" and shown["expires_at"] > shown["created_at"]
    assert (await api.get("/api/tasks/a1")).json()["status"] == "awaiting_approval"


async def test_an_approval_sends_the_task_back_and_a_second_decision_is_409(api, sessions, tmp_path, approver):
    bus = api.app.state.bus
    announced = await bus.nc.subscribe("ha.approvals.>")
    approval_id = await parked_task(sessions, bus, tmp_path)
    decided = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "approve", "reason": "ok"},
                             headers=approver)
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["decided_by"] == "bob"
    assert await task_status(sessions, "a1") == "queued"
    requested, decided_msg = await announced.next_msg(timeout=5), await announced.next_msg(timeout=5)
    assert (requested.subject, json.loads(requested.data)["status"]) == ("ha.approvals.requested", "pending")
    assert (decided_msg.subject, json.loads(decided_msg.data)["decided_by"]) == (
        f"ha.approvals.decided.{approval_id}", "bob")
    resumed = await bus.js.get_last_msg("TASKS", "ha.tasks.default.normal")
    assert TaskMessage.model_validate_json(resumed.data).resumed_by == approval_id
    again = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "reject"}, headers=approver)
    assert again.status_code == 409 and "already approved" in again.json()["detail"]
    task = (await api.get("/api/tasks/a1")).json()
    audit = [j for j in task["journal"] if j["kind"] == "approval.decided"]
    assert [(a["detail"]["by"], a["detail"]["decision"], a["detail"]["reason"]) for a in audit] == [
        ("bob", "approved", "ok")]


async def test_roles_and_self_approval(api, sessions, tmp_path):
    approval_id = await parked_task(sessions, api.app.state.bus, tmp_path)
    operator = {"Authorization": f"Bearer {await create_token(sessions, name='carol', role='operator')}"}
    response = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "approve"}, headers=operator)
    assert response.status_code == 403
    requester = {"Authorization": f"Bearer {await create_token(sessions, name='alice', role='approver')}"}
    response = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "approve"}, headers=requester)
    assert response.status_code == 403 and "may not approve" in response.json()["detail"]
    response = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "reject", "reason": "no"},
                              headers=requester)
    assert response.status_code == 200 and response.json()["status"] == "rejected"


async def test_an_expired_approval_cannot_be_decided_and_sends_its_task_back(api, sessions, tmp_path, approver):
    approval_id = await parked_task(sessions, api.app.state.bus, tmp_path, ttl_s=0.001)
    response = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "approve"}, headers=approver)
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    assert await approvals.expire_due(api.app.state.bus, sessions) == 1
    shown = (await api.get(f"/api/approvals/{approval_id}")).json()
    assert shown["status"] == "expired" and await task_status(sessions, "a1") == "queued"


async def test_a_bad_decision_names_the_field(api, sessions, tmp_path, approver):
    approval_id = await parked_task(sessions, api.app.state.bus, tmp_path)
    response = await api.post(f"/api/approvals/{approval_id}/decision", json={"decision": "maybe"}, headers=approver)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "decision"]
    assert (await api.post("/api/approvals/nope/decision", json={"decision": "approve"},
                           headers=approver)).status_code == 404


def call(tool: str, **args) -> list[str]:
    return [json.dumps({"tool": tool, "args": args})]


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_the_worker_parks_then_acts_on_the_decision(api_on_bus, bus, make_worker, sessions, settings, approver,
                                                         decision):
    api = api_on_bus
    workspace = settings.workspaces_dir / "w1"
    workspace.mkdir(parents=True)
    (workspace / "old.log").write_text("stale")
    rm = call("shell", cmd="rm old.log")   # the policy holds deletions for a person
    finish = call("finish", summary="cleaned up", success=True)
    async with sessions.begin() as session:
        await queries.insert_events_and_tasks(session, events=[], tasks=[{
            "id": "w1", "event_id": None, "goal": "remove old.log", "status": "queued", "workspace": None,
            "queue": "default", "requested_by": "alice"}])
    await bus.publish_tasks([TaskMessage(task_id="w1")])
    # Held, told once, offered again: parked. (Each held proposal is followed by a resample.)
    await run_worker_until(make_worker(FakeScriptedLLM([rm, rm, rm, rm])),
                           lambda: _status_is(sessions, "w1", "awaiting_approval"))
    approval = (await api.get("/api/approvals", params={"status": "pending"})).json()[0]
    assert approval["tool_call"] == json.loads(rm[0]) and approval["snapshot_id"]
    response = await api.post(f"/api/approvals/{approval['id']}/decision",
                              json={"decision": decision, "reason": "keep the log for the audit"}, headers=approver)
    assert response.status_code == 200
    after = [finish] if decision == "approve" else [call("write_file", path="note.txt", content="kept"), finish]
    llm = FakeScriptedLLM(after)
    await run_worker_until(make_worker(llm), lambda: finished(sessions, "w1"))
    async with sessions() as session:
        steps = await queries.get_steps(session, task_id="w1")
    if decision == "approve":
        assert not (workspace / "old.log").exists()
        assert steps[2].decision == "approved" and steps[2].tool_call == json.loads(rm[0])
    else:
        assert (workspace / "old.log").read_text() == "stale"
        assert "keep the log for the audit" in llm.prompts[0][-1]["content"]
    assert await task_status(sessions, "w1") == "succeeded"


async def _status_is(sessions, task_id: str, status: str) -> bool:
    return await task_status(sessions, task_id) == status
