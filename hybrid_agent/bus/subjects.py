"""Every stream and subject name of the project."""

EVENTS_STREAM = "EVENTS"
TASKS_STREAM = "TASKS"
DEAD_STREAM = "DEAD"

ROUTER_DURABLE = "router"
WORKERS_DURABLE = "workers"

EVENTS_ALL = "ha.events.>"
TASKS_ALL = "ha.tasks.>"
DEAD_ALL = "ha.dead.>"


def event_subject(source: str, kind: str) -> str:
    return f"ha.events.{source}.{kind}"


def task_subject(queue: str) -> str:
    return f"ha.tasks.{queue}"


def dead_task_subject(queue: str) -> str:
    return f"ha.dead.tasks.{queue}"


CANCEL_ALL = "ha.control.cancel.*"
APPROVALS_REQUESTED = "ha.approvals.requested"


def approval_decided_subject(approval_id: str) -> str:
    return f"ha.approvals.decided.{approval_id}"


def cancel_subject(task_id: str) -> str:
    return f"ha.control.cancel.{task_id}"


def trace_subject(task_id: str) -> str:
    return f"ha.traces.{task_id}"
