"""What travels on the bus. Subjects carry the routing; payloads are these models as JSON."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from hybrid_agent.bus import subjects


QUEUE_PATTERN = r"^[a-z0-9_-]{1,40}$"


def new_id() -> str:
    """A UUIDv7 in hex: milliseconds since the epoch, then 74 random bits. Time-ordered, so
    the store's indexes on ids take new rows on their last pages instead of each on a page
    of its own (a page written to SQLite's log per row per index)."""
    milliseconds = time.time_ns() // 1_000_000   # 48 bits until the year 10889
    random = int.from_bytes(os.urandom(10), "big")   # 80 bits, 74 of them kept
    value = milliseconds << 80 | 0x7 << 76 | (random >> 68) << 64 | 0b10 << 62 | random & (1 << 62) - 1
    return f"{value:032x}"


class Event(BaseModel):
    """Something happened: a user submission, a file change, a schedule, a webhook."""

    id: str = Field(default_factory=new_id)
    source: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,79}$")
    # The JetStream Nats-Msg-Id and the store's unique key: the same key is one event.
    dedup_key: str = Field(default="", max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    def model_post_init(self, _context: Any) -> None:
        if not self.dedup_key:
            self.dedup_key = f"{self.source}:{self.id}"


class TaskMessage(BaseModel):
    """A task to run; the task itself lives in the store, keyed by id."""

    task_id: str
    queue: str = Field(default="default", pattern=QUEUE_PATTERN)
    priority: int = Field(default=0, ge=0, le=9)
    # What sends the task back: the approval whose decision resumes a parked task, or the
    # reaper's mark for a task whose worker vanished.
    resumed_by: str | None = None

    @property
    def band(self) -> str:
        return subjects.band_of(self.priority)

    @property
    def dedup_key(self) -> str:
        """One delivery per task, and one more per decision (or reaping) that resumes it."""
        return f"task:{self.task_id}" + (f":{self.resumed_by}" if self.resumed_by else "")
