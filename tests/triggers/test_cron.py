"""The cron trigger: crontab expressions (5 fields, or 6 with seconds first, weekdays counted
from Sunday = 0) become APScheduler triggers or clear errors; schedules fire events through a
real outbox on a real bus, once per scheduled time however many sources fire it; jobs persist
in the database's job store, so a restarted source fires a run it missed within the grace,
once."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from hybrid_agent.bus.connection import Bus
from hybrid_agent.bus.messages import Event
from hybrid_agent.store import queries
from hybrid_agent.store.tables import EventRow
from hybrid_agent.triggers.cron import CronSource, job_store, next_run, parse_cron
from hybrid_agent.triggers.outbox import Emitted, Outbox
from hybrid_agent.triggers.rules import RulesError, Schedule, parse_rules

EVERY_SECOND = "*/1 * * * * *"
KEY = re.compile(r"^cron:(?P<name>[a-z0-9_-]+):(?P<when>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00)$")


# --- expressions -------------------------------------------------------------------------

def fire_times(expression: str, timezone: str = "UTC", count: int = 10) -> list[datetime]:
    trigger = parse_cron(expression, timezone)
    times, previous = [], None
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, previous or now)
        times.append(previous)
    return times


def test_five_fields_are_minute_hour_day_month_weekday_and_fire_on_the_minute():
    times = fire_times("30 4 * * *", count=3)
    assert [(t.hour, t.minute, t.second) for t in times] == [(4, 30, 0)] * 3
    assert [t.day for t in times] == [1, 2, 3]


def test_six_fields_put_seconds_first():
    times = fire_times("*/5 * * * * *", count=4)
    assert [t.second for t in times] == [0, 5, 10, 15]


def test_weekday_numbers_count_from_sunday_as_in_crontab():
    assert {t.isoweekday() for t in fire_times("0 9 * * 0", count=3)} == {7}
    assert {t.isoweekday() for t in fire_times("0 9 * * 7", count=3)} == {7}
    assert {t.isoweekday() for t in fire_times("0 9 * * 1-5", count=10)} == {1, 2, 3, 4, 5}
    assert {t.isoweekday() for t in fire_times("0 9 * * */2", count=8)} == {7, 2, 4, 6}
    assert {t.isoweekday() for t in fire_times("0 9 * * mon-fri", count=10)} == {1, 2, 3, 4, 5}
    assert {t.isoweekday() for t in fire_times("0 9 * * 6,sun", count=6)} == {6, 7}


def test_the_fields_are_read_in_the_schedule_time_zone():
    (first,) = fire_times("0 9 * * *", "Europe/Paris", count=1)   # January: UTC+1
    assert first.astimezone(ZoneInfo("Europe/Paris")).hour == 9
    assert first.astimezone(UTC).hour == 8
    assert next_run(parse_cron("0 9 * * *", "Asia/Tokyo")).utcoffset() == timedelta(hours=9)


@pytest.mark.parametrize(("expression", "timezone", "message"), [
    ("61 * * * *", "UTC", "cron '61 * * * *': minute: "),
    ("* 24 * * *", "UTC", "cron '* 24 * * *': hour: "),
    ("* * * * * 7 *", "UTC", "needs 5 fields (minute hour day month day-of-week) or 6 (second first), got 7"),
    ("* * *", "UTC", "got 3"),
    ("*/0 * * * * *", "UTC", "cron '*/0 * * * * *': second: Increment must be higher than 0"),
    ("* * * 13 *", "UTC", "month: "),
    ("* * * * 8", "UTC", "day of week: '8': weekdays are 0-7"),
    ("* * * * 5-1", "UTC", "day of week: '5-1': the range must not run backwards"),
    ("0 0 31 2 *", "UTC", "never fires"),
    ("0 0 1 * mon", "UTC", "day of month and day of week are both restricted"),
    ("0 0 * * *", "Mars/Base", "unknown time zone 'Mars/Base'"),
    ("0 0 * * *", "", "unknown time zone ''"),
])
def test_bad_expressions_and_zones_are_refused_naming_the_fault(expression, timezone, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cron(expression, timezone)


def test_a_bad_schedule_in_the_rules_file_is_refused_when_it_loads():
    with pytest.raises(RulesError, match=r"schedules\[0\] \(nightly\): Value error, cron '0 25 \* \* \*': hour: "):
        parse_rules({"schedules": [{"name": "nightly", "cron": "0 25 * * *"}]})
    with pytest.raises(RulesError, match=r"schedules\[0\] \(berlin\): Value error, unknown time zone 'Berlin'"):
        parse_rules({"schedules": [{"name": "berlin", "cron": "* * * * *", "timezone": "Berlin"}]})


# --- sources -------------------------------------------------------------------------------

async def emit_nothing(event: Event) -> Emitted:
    raise AssertionError("not expected to fire")


@pytest.fixture
def cron_settings(settings, database_url):
    """Settings naming the test's database, where the job store goes too."""
    return settings.model_copy(update={"database_url": database_url})


@pytest.fixture
async def outbox(embedded_nats, sessions) -> AsyncIterator[Outbox]:
    bus = await Bus.connect(embedded_nats)
    yield Outbox(bus, sessions)
    await bus.close()


class RecordingEmit:
    """The outbox's emit, remembering every event handed to it and what became of it."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.emitted: list[tuple[Event, Emitted]] = []

    async def __call__(self, event: Event) -> Emitted:
        emitted = await self.outbox.emit(event)
        self.emitted.append((event, emitted))
        return emitted


@asynccontextmanager
async def running(*sources: CronSource) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(source.run(stop)) for source in sources]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def stored_cron_events(sessions, recorders: list[RecordingEmit], name: str) -> list[EventRow]:
    """The events of schedule ``name`` the store holds, one per dedup key emitted."""
    keys = {event.dedup_key for recorder in recorders for event, _ in recorder.emitted
            if event.payload["schedule"] == name}
    rows = []
    async with sessions() as session:
        for key in sorted(keys):
            event_id = await queries.event_id_for_dedup_key(session, dedup_key=key)
            if event_id:
                rows.append(await queries.get_event(session, event_id=event_id))
    return rows


async def count_cron_events(sessions) -> int:
    async with sessions() as session:
        return await queries.count_rows(session, table=EventRow, where=EventRow.source == "cron")


@contextmanager
def reading_job_store(settings) -> Iterator[SQLAlchemyJobStore]:
    """The job store as another process sees it; nothing here runs its jobs."""
    store = job_store(settings)
    store.start(BackgroundScheduler(timezone=UTC), "default")   # never started: it only owns the jobs read
    try:
        yield store
    finally:
        store.shutdown()


def stored_jobs(settings) -> dict[str, datetime | None]:
    with reading_job_store(settings) as store:
        return {job.id: job.next_run_time for job in store.get_all_jobs()}


def scheduled_for(row: EventRow) -> datetime:
    return datetime.fromisoformat(row.payload["scheduled_for"])


async def test_a_schedule_with_seconds_fires_every_second_through_the_outbox(cron_settings, sessions, outbox):
    emit = RecordingEmit(outbox)
    heartbeat = Schedule(name="heartbeat", cron=EVERY_SECOND, kind="beat", payload={"team": "ops"})
    source = CronSource(cron_settings, sessions, emit, schedules=[heartbeat])
    async with running(source):
        async def two_events() -> bool:
            return len(await stored_cron_events(sessions, [emit], "heartbeat")) >= 2
        await until(two_events, "two heartbeats")
    rows = await stored_cron_events(sessions, [emit], "heartbeat")
    for row in rows:
        match = KEY.match(row.dedup_key)
        assert match and match["name"] == "heartbeat", row.dedup_key
        assert (row.source, row.kind) == ("cron", "beat")
        assert row.payload == {"team": "ops", "schedule": "heartbeat", "scheduled_for": match["when"]}
        assert scheduled_for(row).microsecond == 0
    assert len({row.dedup_key for row in rows}) == len(rows)
    assert all(emitted.published for _, emitted in emit.emitted)   # JetStream acknowledged each
    async with sessions() as session:
        (stored,) = await queries.list_schedules(session)
    assert (stored.name, stored.origin, stored.created_by) == ("heartbeat", "rules", None)


def api_row(name: str, cron: str = EVERY_SECOND, enabled: bool = True) -> dict:
    return {"name": name, "cron": cron, "timezone": "UTC", "kind": "tick", "payload": {}, "misfire_grace_s": 60,
            "enabled": enabled, "origin": "api", "created_by": "test"}


async def test_schedules_written_to_the_table_while_running_get_jobs_and_deleted_or_disabled_ones_stop(
        cron_settings, sessions, outbox):
    emit = RecordingEmit(outbox)
    witness = Schedule(name="witness", cron=EVERY_SECOND)
    source = CronSource(cron_settings, sessions, emit, schedules=[witness])

    def fired(name: str, at_least: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(await stored_cron_events(sessions, [emit], name)) >= at_least
        return check

    async with running(source):
        async with sessions.begin() as session:
            await queries.upsert_schedule(session, schedule=api_row("added"))
            await queries.upsert_schedule(session, schedule=api_row("paused"))
        await until(fired("added", 1), "the added schedule to fire")
        await until(fired("paused", 1), "the other added schedule to fire")

        async with sessions.begin() as session:
            assert await queries.delete_schedule(session, name="added")
            await queries.upsert_schedule(session, schedule=api_row("paused", enabled=False))

        async def jobs_gone() -> bool:
            return not {"added", "paused"} & set(await asyncio.to_thread(stored_jobs, cron_settings))
        await until(jobs_gone, "the deleted and the disabled schedule's jobs to go")
        fired_before = {name: len(await stored_cron_events(sessions, [emit], name)) for name in ("added", "paused")}
        witnessed = len(await stored_cron_events(sessions, [emit], "witness"))
        await until(fired("witness", witnessed + 2), "two more seconds of the witness")
        for name in ("added", "paused"):
            assert len(await stored_cron_events(sessions, [emit], name)) == fired_before[name]


async def test_two_sources_on_one_database_make_one_event_per_scheduled_time(cron_settings, sessions, outbox):
    """Two processes that both think they lead: each fires, the dedup key keeps one event."""
    first, second = RecordingEmit(outbox), RecordingEmit(outbox)
    heartbeat = Schedule(name="heartbeat", cron=EVERY_SECOND)
    sources = [CronSource(cron_settings, sessions, emit, schedules=[heartbeat]) for emit in (first, second)]
    async with running(sources[0]):
        await until(lambda: _has_emitted(first), "the first source to fire")
        async with running(sources[1]):
            async def both_fired_one_run() -> bool:
                keys = [event.dedup_key for event, _ in first.emitted]
                return any(event.dedup_key in keys for event, _ in second.emitted)
            await until(both_fired_one_run, "both sources to fire the same scheduled run")
    rows = await stored_cron_events(sessions, [first, second], "heartbeat")
    times = [scheduled_for(row) for row in rows]
    assert len(set(times)) == len(rows) == await count_cron_events(sessions)
    duplicates = [emitted for recorder in (first, second) for _, emitted in recorder.emitted if emitted.duplicate]
    assert duplicates and {d.event_id for d in duplicates} <= {row.id for row in rows}


async def _has_emitted(recorder: RecordingEmit) -> bool:
    return bool(recorder.emitted)


def missed_minute() -> tuple[str, datetime]:
    """A cron firing six times in the minute before last (xx:xx:00 to :50) and then not until
    next year: a run left behind by an outage, without waiting for one."""
    minute = (datetime.now(UTC) - timedelta(seconds=60)).replace(second=0, microsecond=0)
    return f"0,10,20,30,40,50 {minute.minute} {minute.hour} {minute.day} {minute.month} *", minute


@asynccontextmanager
async def restarted_after_outage(cron_settings, sessions, emit, schedule: Schedule,
                                 missed_from: datetime) -> AsyncIterator[None]:
    """Run a source until its job is stored, stop it, rewind the stored job to ``missed_from``
    (as if nothing had run since), and start a new source; inside, it runs until the job's
    missed runs were processed (the stored job is due next year again)."""
    async with running(CronSource(cron_settings, sessions, emit, schedules=[schedule])):
        async def stored() -> bool:
            async with sessions() as session:   # the rules synced first (and the new database is WAL)
                if await queries.get_schedule(session, name=schedule.name) is None:
                    return False
            return schedule.name in await asyncio.to_thread(stored_jobs, cron_settings)
        await until(stored, "the job to be stored")
    next_year = (await asyncio.to_thread(stored_jobs, cron_settings))[schedule.name]
    assert next_year is not None and next_year > datetime.now(UTC) + timedelta(days=300)

    def rewind() -> None:
        with reading_job_store(cron_settings) as store:
            job = store.lookup_job(schedule.name)
            job._modify(next_run_time=missed_from)   # what a scheduler's modify_job does to it
            store.update_job(job)
    await asyncio.to_thread(rewind)

    async with running(CronSource(cron_settings, sessions, emit, schedules=[schedule])):
        async def dealt_with() -> bool:
            return (await asyncio.to_thread(stored_jobs, cron_settings))[schedule.name] == next_year
        await until(dealt_with, "the restarted source to process the missed runs")
        yield


async def test_a_restarted_source_fires_runs_missed_within_the_grace_once(cron_settings, sessions, outbox):
    emit = RecordingEmit(outbox)
    cron, minute = missed_minute()
    schedule = Schedule(name="nightly", cron=cron, misfire_grace_s=300)
    async with restarted_after_outage(cron_settings, sessions, emit, schedule, minute):
        await until(lambda: _has_emitted(emit), "the missed run to fire")
    ((event, emitted),) = emit.emitted                               # six runs missed, coalesced: one
    assert not emitted.duplicate
    (row,) = await stored_cron_events(sessions, [emit], "nightly")
    assert scheduled_for(row) == minute + timedelta(seconds=50)      # the latest of them
    assert await count_cron_events(sessions) == 1


async def test_runs_missed_beyond_the_grace_do_not_fire(cron_settings, sessions, outbox, caplog):
    emit = RecordingEmit(outbox)
    cron, minute = missed_minute()
    schedule = Schedule(name="nightly", cron=cron, misfire_grace_s=5)
    with caplog.at_level(logging.WARNING, logger="apscheduler"):
        async with restarted_after_outage(cron_settings, sessions, emit, schedule, minute):
            async def missed_logged() -> bool:
                return "was missed by" in caplog.text
            await until(missed_logged, "APScheduler to report the missed run")
    assert emit.emitted == [] and await count_cron_events(sessions) == 0


async def test_a_firing_that_cannot_emit_is_logged_and_journaled(cron_settings, sessions, caplog):
    async def emit_failing_fake(event: Event) -> Emitted:
        raise RuntimeError("the store is on fire")

    source = CronSource(cron_settings, sessions, emit_failing_fake,
                        schedules=[Schedule(name="doomed", cron=EVERY_SECOND)])
    with caplog.at_level(logging.ERROR, logger="hybrid_agent.triggers.cron"):
        async with running(source):
            async def journaled() -> bool:
                async with sessions() as session:
                    return bool(await queries.journal_of_kind(session, kind="incident.cron_fire_failed"))
            await until(journaled, "the failure to be journaled")
    async with sessions() as session:
        entry = (await queries.journal_of_kind(session, kind="incident.cron_fire_failed"))[-1]
    assert entry.detail["schedule"] == "doomed"
    assert entry.detail["error"] == "RuntimeError: the store is on fire"
    assert KEY.match(f"cron:doomed:{entry.detail['scheduled_for']}")
    assert "schedule doomed" in caplog.text and "could not emit" in caplog.text


async def test_the_rules_file_schedules_replace_the_rules_rows_and_leave_api_rows(cron_settings, sessions):
    async with sessions.begin() as session:
        for name, origin in [("gone", "rules"), ("kept", "rules"), ("mine", "api")]:
            await queries.upsert_schedule(session, schedule={**api_row(name), "origin": origin})
    kept = Schedule(name="kept", cron="*/15 * * * *", kind="tidy")
    await CronSource(cron_settings, sessions, emit_nothing, schedules=[kept]).sync_rules()
    async with sessions() as session:
        rows = {r.name: r for r in await queries.list_schedules(session)}
    assert sorted(rows) == ["kept", "mine"]
    assert (rows["kept"].cron, rows["kept"].kind, rows["kept"].origin) == ("*/15 * * * *", "tidy", "rules")
    assert rows["mine"].origin == "api"
