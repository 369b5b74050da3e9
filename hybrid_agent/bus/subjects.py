"""Every stream and subject name of the project."""

EVENTS_STREAM = "EVENTS"
TASKS_STREAM = "TASKS"
DEAD_STREAM = "DEAD"

ROUTER_DURABLE = "router"
# The single workers' consumer of earlier versions, over every queue: removed on start, as a
# work-queue stream refuses a consumer whose subjects overlap another's.
LEGACY_WORKERS_DURABLE = "workers"

# Priority bands, fetched in this order: a worker takes an urgent task before a high one, and
# a high one before a normal one (strict; the lower band waits while a higher one has work).
BANDS = ("urgent", "high", "normal")

EVENTS_ALL = "ha.events.>"
TASKS_ALL = "ha.tasks.>"
DEAD_ALL = "ha.dead.>"


def event_subject(source: str, kind: str) -> str:
    return f"ha.events.{source}.{kind}"


def band_of(priority: int) -> str:
    """A task's priority (0-9) as a band: 7-9 urgent, 4-6 high, 0-3 normal."""
    return "urgent" if priority >= 7 else "high" if priority >= 4 else "normal"


def task_subject(queue: str, band: str = "normal") -> str:
    return f"ha.tasks.{queue}.{band}"


def workers_durable(queue: str, band: str) -> str:
    """The pull consumer every worker serving ``queue`` shares for one band."""
    return f"workers-{queue}-{band}"


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
