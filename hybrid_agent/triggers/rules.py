"""Rules: event -> task. One default rule for now: the event's goal becomes a task."""

from __future__ import annotations

import uuid
from typing import Any

from hybrid_agent.bus.messages import Event

DEFAULT_RULE = "default"
_TASK_IDS = uuid.UUID("5f2b4a8e-8a51-4f51-9d3e-1c0b6a3c2d10")


def task_id_for(event_id: str, rule: str) -> str:
    """Deterministic, so a redelivered event maps to the same task and is not done twice."""
    return uuid.uuid5(_TASK_IDS, f"{event_id}:{rule}").hex


def default_rule(event: Event) -> dict[str, Any]:
    """The task row for an event: its goal, workspace and requester come from the payload."""
    payload = event.payload
    goal = payload.get("goal") or f"Handle the {event.source} event {event.kind}: {payload}"
    return {
        "id": payload.get("task_id") or task_id_for(event.id, DEFAULT_RULE),
        "event_id": event.id,
        "goal": str(goal),
        "status": "queued",
        "workspace": payload.get("workspace"),
        "queue": payload.get("queue", "default"),
        "requested_by": payload.get("requested_by") or f"{event.source}",
        "check_cmd": payload.get("check"),
    }


def event_row(event: Event) -> dict[str, Any]:
    return {"id": event.id, "dedup_key": event.dedup_key, "source": event.source, "kind": event.kind,
            "payload": event.payload, "created_at": event.created_at}
