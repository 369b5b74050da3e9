"""The file trigger: real watchdog observers on temporary directories. A burst of changes
under a watch is one ``file.changed`` event listing the changed paths."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.messages import Event
from hybrid_agent.rollback.restore import TEMP_PREFIX
from hybrid_agent.store import queries
from hybrid_agent.store.tables import EventRow, TaskRow
from hybrid_agent.triggers.files import MAX_PATHS, FileWatcher
from hybrid_agent.triggers.outbox import Emitted, Outbox
from hybrid_agent.triggers.router import Router
from hybrid_agent.triggers.rules import Watch, parse_rules
from tests.waiting import eventually


# watchdog 7 warns when a new subdirectory's watch is added twice (its own walk racing the
# kernel's event); it keeps one watch, and these tests check that no change is lost.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


class RecordingEmitFake:
    """An emit function that records each event; its first ``failures`` calls raise (the
    store is down)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: list[Event] = []
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> Emitted:
        self.attempts.append(event)
        if len(self.attempts) <= self.failures:
            raise ConnectionError("the store is down")
        self.events.append(event)
        return Emitted(event_id=event.id, duplicate=False, published=True)

    def paths(self) -> set[str]:
        return {path for event in self.events for path in event.payload["paths"]}




@contextlib.asynccontextmanager
async def watching(watcher: FileWatcher) -> AsyncIterator[FileWatcher]:
    """The watcher running until the block ends; then stopped (which emits what waits)."""
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await eventually(lambda: watcher.watching.is_set() or task.done(), "the observer starts")
        if task.done():
            await task
        yield watcher
    finally:
        stop.set()
        await task


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "watched"
    root.mkdir()
    return root


def watch(tree: Path, **fields) -> Watch:
    return Watch(**{"name": "inbox", "path": tree, "debounce_s": 0.5, **fields})


def write(root: Path, rel: str, text: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def hundred_files(root: Path) -> list[str]:
    """100 writes as a copy would make them: in groups, with pauses well inside the debounce."""
    rels = [f"batch{i % 4}/file{i:03}.csv" for i in range(100)]
    for i, rel in enumerate(rels):
        write(root, rel)
        if i % 10 == 9:
            await asyncio.sleep(0.03)
    return rels


async def test_a_burst_of_100_writes_is_one_event_listing_them(tree):
    emit = RecordingEmitFake()
    async with watching(FileWatcher([watch(tree, debounce_s=1.0, payload={"team": "data"})], emit)):
        rels = await hundred_files(tree)
        await eventually(lambda: emit.events, "the burst's event")
        (event,) = emit.events
    assert len(emit.events) == 1, "nothing else was left waiting at stop"
    assert (event.source, event.kind) == ("file", "changed")
    assert event.payload == {"team": "data", "watch": "inbox", "root": str(tree.resolve()),
                             "paths": sorted(rels), "count": 100, "truncated": False}


async def test_100_writes_make_one_task_through_the_outbox_bus_and_router(tree, sessions, embedded_nats):
    rules = parse_rules({"rules": [{"name": "new-files", "when": {"source": "file", "kind": "changed"},
                                    "then": {"goal": "Load the {{ payload.count }} new files of {{ payload.watch }}"}}]})
    bus = await Bus.connect(embedded_nats)
    router, stop_router = Router(bus, sessions, rules=rules), asyncio.Event()
    routing = asyncio.create_task(router.run(stop_router))

    async def rows(table) -> int:
        async with sessions() as session:
            return await queries.count_rows(session, table=table)
    try:
        async with watching(FileWatcher([watch(tree, debounce_s=1.0)], Outbox(bus, sessions).emit)):
            await hundred_files(tree)
            await eventually(lambda: rows(EventRow), "the event is stored by the outbox")
            await eventually(lambda: rows(TaskRow), "the router makes its task")
        assert await rows(EventRow) == 1, "one event, nothing left waiting at stop"
        async with sessions() as session:
            assert [task.goal for task in await queries.list_tasks(session)] == ["Load the 100 new files of inbox"]
    finally:
        stop_router.set()
        await routing
        await bus.close()


async def test_include_and_exclude_globs_pick_the_paths(tree):
    emit = RecordingEmitFake()
    rule = watch(tree, include=["*.csv", "**/keep.md"], exclude=["tmp/*", "*-draft.csv"])
    async with watching(FileWatcher([rule], emit)):
        for rel in ("a.csv", "deep/er/b.csv", "keep.md", "notes/keep.md", "notes.txt", "tmp/c.csv", "d-draft.csv"):
            write(tree, rel)
        wanted = {"a.csv", "deep/er/b.csv", "keep.md", "notes/keep.md"}
        await eventually(lambda: emit.paths() >= wanted, "the included paths")
    assert emit.paths() == wanted


async def test_a_watch_that_is_not_recursive_sees_its_top_level_only(tree):
    emit = RecordingEmitFake()
    async with watching(FileWatcher([watch(tree, recursive=False)], emit)):
        write(tree, "sub/deep.txt")
        write(tree, "top.txt")
        await eventually(lambda: "top.txt" in emit.paths(), "the top-level change")
    assert emit.paths() == {"top.txt"}


async def test_rollback_temporaries_git_and_directories_are_ignored_and_a_move_counts_its_destination(tree):
    write(tree, "old-name.txt")
    emit = RecordingEmitFake()
    async with watching(FileWatcher([watch(tree)], emit)):
        write(tree, f"{TEMP_PREFIX}a1b2c3")
        write(tree, f"sub/{TEMP_PREFIX}d4e5f6")
        write(tree, ".git/objects/ab/cdef")
        write(tree, "sub/.git/HEAD")
        (tree / "empty-dir").mkdir()
        write(tree, f"{TEMP_PREFIX}0f0f0f", "restored")
        os.replace(tree / f"{TEMP_PREFIX}0f0f0f", tree / "restored.txt")   # how a restore writes a file
        os.replace(tree / "old-name.txt", tree / "new-name.txt")
        write(tree, "real.txt")
        await eventually(lambda: emit.paths() >= {"real.txt", "restored.txt", "new-name.txt"}, "the real changes")
    assert emit.paths() == {"real.txt", "restored.txt", "new-name.txt"}


async def test_two_bursts_further_apart_than_the_debounce_are_two_events(tree):
    emit = RecordingEmitFake()
    async with watching(FileWatcher([watch(tree, debounce_s=0.2)], emit)):
        write(tree, "first/1.txt")
        write(tree, "first/2.txt")
        await eventually(lambda: len(emit.events) == 1, "the first burst's event")
        write(tree, "second/1.txt")
        await eventually(lambda: len(emit.events) == 2, "the second burst's event")
    assert [event.payload["paths"] for event in emit.events] == [["first/1.txt", "first/2.txt"], ["second/1.txt"]]


async def test_a_stream_that_never_goes_quiet_still_emits_at_the_cap(tree):
    emit = RecordingEmitFake()
    writing = asyncio.Event()

    async def keep_writing() -> None:
        n = 0
        while not writing.is_set():
            write(tree, "busy.log", str(n))
            n += 1
            await asyncio.sleep(0.05)
    async with watching(FileWatcher([watch(tree, debounce_s=60)], emit, max_wait=0.5)):
        writer = asyncio.create_task(keep_writing())
        try:
            await eventually(lambda: emit.events, "an event while the changes go on")
        finally:
            writing.set()
            await writer
    assert emit.events[0].payload["paths"] == ["busy.log"]


async def test_a_failing_emit_is_retried_with_the_same_event(tree):
    emit = RecordingEmitFake(failures=2)
    async with watching(FileWatcher([watch(tree, debounce_s=0.2)], emit, retry_s=0.05)):
        write(tree, "report.csv")
        await eventually(lambda: emit.events, "the event, once the store is back")
    assert len(emit.attempts) == 3
    assert {event.id for event in emit.attempts} == {emit.events[0].id}
    assert emit.events[0].payload["paths"] == ["report.csv"]


async def test_more_than_a_thousand_paths_are_listed_truncated_and_counted(tree):
    emit = RecordingEmitFake()
    async with watching(FileWatcher([watch(tree)], emit)):
        for i in range(MAX_PATHS + 5):
            write(tree, f"many/{i:04}.dat")
        await eventually(lambda: emit.events, "the burst's event")
    (event,) = emit.events
    assert event.payload["count"] == MAX_PATHS + 5 and event.payload["truncated"] is True
    assert event.payload["paths"] == [f"many/{i:04}.dat" for i in range(MAX_PATHS)]


async def test_changes_still_waiting_for_quiet_are_emitted_at_stop(tree):
    emit = RecordingEmitFake()
    async with watching(FileWatcher([watch(tree, debounce_s=60)], emit)) as watcher:
        write(tree, "late.txt")
        await eventually(lambda: watcher.pending() == {"inbox": 1}, "the change is waiting")
        assert emit.events == []
    assert [event.payload["paths"] for event in emit.events] == [["late.txt"]]


def test_a_watch_path_that_is_missing_or_not_a_directory_is_refused(tree):
    with pytest.raises(ValueError, match="watch inbox: path .*nowhere does not exist"):
        FileWatcher([watch(tree / "nowhere")], RecordingEmitFake())
    write(tree, "plain.txt")
    with pytest.raises(ValueError, match="watch inbox: path .*plain.txt is not a directory"):
        FileWatcher([watch(tree / "plain.txt")], RecordingEmitFake())


async def test_a_watch_path_removed_before_the_run_is_refused_at_run(tree):
    gone = tree / "gone"
    gone.mkdir()
    watcher = FileWatcher([watch(gone)], RecordingEmitFake())
    gone.rmdir()
    with pytest.raises(ValueError, match="watch inbox: path .*gone does not exist"):
        await watcher.run(asyncio.Event())
