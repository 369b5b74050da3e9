"""The batched journal writer: entries reach the store within its delay, and closing it
waits for every write in flight (a write cut off mid-transaction would hold its locks)."""

import asyncio

from hybrid_agent.store import queries
from hybrid_agent.store.journal_writer import JournalWriter


async def kinds(sessions) -> list[str]:
    async with sessions() as session:
        return [row.kind for row in await queries.journal_of_kind(session, kind="test.entry")]


async def test_added_entries_are_written_in_one_batch(sessions):
    writer = JournalWriter(sessions, delay_s=0.01)
    writer.add([{"kind": "test.entry", "detail": {"n": 1}}])
    writer.add([{"kind": "test.entry", "detail": {"n": 2}}])
    await writer.close()
    assert await kinds(sessions) == ["test.entry", "test.entry"]


async def test_closing_waits_for_a_write_already_in_flight(sessions, monkeypatch):
    writing, release = asyncio.Event(), asyncio.Event()
    real = queries.add_journal_many

    async def slow_add_journal_many(session, *, entries):
        writing.set()
        await release.wait()   # the background write is mid-transaction
        await real(session, entries=entries)

    monkeypatch.setattr(queries, "add_journal_many", slow_add_journal_many)
    writer = JournalWriter(sessions, delay_s=0.0)
    writer.add([{"kind": "test.entry", "detail": {}}])
    await writing.wait()
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.2)
    assert not closing.done(), "close returned while a write was still in its transaction"
    release.set()
    await closing
    assert await kinds(sessions) == ["test.entry"]


async def test_entries_added_during_a_write_are_written_by_the_next(sessions, monkeypatch):
    writing, release = asyncio.Event(), asyncio.Event()
    real = queries.add_journal_many

    async def held_add_journal_many(session, *, entries):
        writing.set()
        await release.wait()
        await real(session, entries=entries)

    monkeypatch.setattr(queries, "add_journal_many", held_add_journal_many)
    writer = JournalWriter(sessions, delay_s=0.0)
    writer.add([{"kind": "test.entry", "detail": {"n": 1}}])
    await writing.wait()
    writer.add([{"kind": "test.entry", "detail": {"n": 2}}])   # while the first write is in flight
    release.set()
    await writer.close()
    assert len(await kinds(sessions)) == 2
