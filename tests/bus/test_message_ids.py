"""Ids of events, tasks and approvals are UUIDv7s in hex: they sort in the order they were
made (so the store's indexes on them take new rows on their last pages) and still carry
74 random bits each."""

from __future__ import annotations

import time
import uuid

from hybrid_agent.bus.messages import Event, new_id


def milliseconds() -> int:
    return time.time_ns() // 1_000_000


def test_an_id_is_a_version_7_uuid_in_hex_stamped_with_the_millisecond_it_was_made() -> None:
    before = milliseconds()
    made = new_id()
    after = milliseconds()
    parsed = uuid.UUID(made)
    assert made == parsed.hex and len(made) == 32
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    earlier = [new_id() for _ in range(100)]
    start = milliseconds()
    while milliseconds() == start:   # the next millisecond, however long that takes
        time.sleep(0.0001)
    later = [new_id() for _ in range(100)]
    assert max(earlier) < min(later)


def test_ids_made_in_the_same_millisecond_differ() -> None:
    ids = [new_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)


def test_events_take_one_by_default_and_their_dedup_key_from_it() -> None:
    event = Event(source="user", kind="task")
    assert uuid.UUID(event.id).version == 7
    assert event.dedup_key == f"user:{event.id}"
