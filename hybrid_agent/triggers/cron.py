"""The cron trigger: schedules (from the rules file and the API, all in the ``schedules``
table) fire ``cron`` events through APScheduler 3.

Jobs live in a persistent ``SQLAlchemyJobStore`` on the project's database, so a restarted
source (or the next trigger leader) finds them with their next run times; a run missed
while no source ran fires once on start (coalesced) when it is within the schedule's
``misfire_grace_s``. The ``schedules`` table is the truth: every ``POLL_S`` the source
makes the jobs match it (the API may write it from another process).

Each firing's dedup key holds the schedule and its *scheduled* time, so two processes that
fire the same run (two leaders for a moment, or two schedulers sharing the job store) make
one event.

The scheduler runs on an event loop of its own, in a thread: the job store does blocking
I/O, and on SQLite a blocking write on our loop would wait for a transaction that our
loop itself holds open (an emit in progress) until it failed. Firings are handed back to
the caller's loop, where ``emit`` and the store sessions live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hybrid_agent.bus.messages import Event
from hybrid_agent.config import Settings
from hybrid_agent.store import queries
from hybrid_agent.store.db import sync_url, url_is_sqlite
from hybrid_agent.triggers.outbox import Emitted
from hybrid_agent.triggers.rules import Schedule

log = logging.getLogger(__name__)

Emit = Callable[[Event], Awaitable[Emitted]]
POLL_S = 2.0                 # how often the schedules table is read back into jobs
JOB_TABLE = "ha_cron_jobs"   # APScheduler's own table (it creates it; not an alembic migration)

# crontab fields, in order, as APScheduler names them and as a person reads them.
_FIELDS = (("minute", "minute"), ("hour", "hour"), ("day", "day of month"), ("month", "month"),
           ("day_of_week", "day of week"))
_SECOND = ("second", "second")
# crontab counts weekdays from Sunday = 0 (7 is Sunday too); APScheduler 3 from Monday = 0.
# Numeric weekdays are therefore rewritten as names, which both read the same way.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC_DOW = re.compile(r"^(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; a ValueError naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:   # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_cron(expression: str, timezone: str) -> CronTrigger:
    """A trigger for a crontab expression in ``timezone``: 5 fields (minute hour day month
    day-of-week, as crontab reads them: weekday 0 and 7 are Sunday) or 6 with seconds first
    (``*/5 * * * * *`` is every 5 seconds). A ValueError says what is wrong."""
    tz = zone(timezone)
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(f"cron {expression!r}: needs 5 fields (minute hour day month day-of-week) "
                         f"or 6 (second first), got {len(parts)}")
    fields = (_SECOND, *_FIELDS) if len(parts) == 6 else _FIELDS
    values = dict(zip((name for name, _ in fields), parts, strict=True))
    values.setdefault("second", "0")
    if not values["day"].startswith("*") and not values["day_of_week"].startswith("*"):
        raise ValueError(f"cron {expression!r}: day of month and day of week are both restricted; crontab "
                         "fires when either matches but this scheduler only when both do: use two schedules")
    try:
        values["day_of_week"] = crontab_weekdays(values["day_of_week"])
    except ValueError as exc:
        raise ValueError(f"cron {expression!r}: day of week: {exc}") from exc
    for name, label in fields:
        try:
            CronTrigger.FIELDS_MAP[name](name, values[name])
        except ValueError as exc:
            hint = " (a range of day names runs mon to sun: list sat,sun instead)" if name == "day_of_week" and "-" in values[name] else ""
            raise ValueError(f"cron {expression!r}: {label}: {exc}{hint}") from exc
    trigger = CronTrigger(timezone=tz, **values)
    if trigger.get_next_fire_time(None, datetime.now(tz)) is None:
        raise ValueError(f"cron {expression!r}: never fires (no such date)")
    return trigger


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field with APScheduler's meaning: numbers (Sunday 0 or 7) become
    day names; names (``mon-fri``) are left as they are."""
    if field == "*":
        return field
    return ",".join(_weekday_names(part) for part in field.split(","))


def _weekday_names(part: str) -> str:
    match = _NUMERIC_DOW.match(part)
    if match is None:
        return part                    # names, or something APScheduler will refuse by name
    star, first, last, step = match.groups()
    low, high = (0, 6) if star else (int(first), int(last if last is not None else first))
    if last is None and step is not None and not star:
        high = 7                       # "3/2": from Wednesday on, every other day
    if high > 7:
        raise ValueError(f"{part!r}: weekdays are 0-7 (0 and 7 are Sunday)")
    if low > high:
        raise ValueError(f"{part!r}: the range must not run backwards")
    if step is not None and int(step) == 0:
        raise ValueError(f"{part!r}: the step must be at least 1")
    days = sorted({_DAY_NAMES[day] for day in range(low, high + 1, int(step or 1))}, key=_DAY_NAMES.index)
    return ",".join(days)


def next_run(trigger: CronTrigger) -> datetime | None:
    return trigger.get_next_fire_time(None, datetime.now(trigger.timezone))


# The source and scheduled time of the firing in progress. A job is stored pickled, its
# function by reference: it cannot carry the source (an object of this process), and
# APScheduler 3 passes a job no fire time. The source's executor sets both here before it
# creates the job's task, which copies them (asyncio tasks run in a copy of the context).
_FIRING: ContextVar[tuple[CronSource, datetime]] = ContextVar("cron_firing")


async def fire(name: str) -> None:
    """The job of every schedule; module level, so that the job store can name it."""
    try:
        source, scheduled = _FIRING.get()
    except LookupError:
        raise RuntimeError(f"schedule {name}: fired outside a CronSource's executor") from None
    source.fired(name, scheduled)


class _FiringExecutor(AsyncIOExecutor):
    """Runs jobs as asyncio tasks, each knowing its source and scheduled time (``_FIRING``)."""

    def __init__(self, source: CronSource) -> None:
        super().__init__()
        self.source = source

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        # Every job coalesces (job_defaults say so too): one run, for the latest time due.
        token = _FIRING.set((self.source, run_times[-1]))
        try:
            super().submit_job(job, run_times[-1:])
        finally:
            _FIRING.reset(token)


class CronSource:
    """Fires the enabled schedules while ``run`` runs (a trigger leader calls it each time it
    becomes leader; every run starts afresh)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], emit: Emit, *,
                 schedules: list[Schedule]) -> None:
        # Each Schedule's expression and time zone were checked when the rules file loaded.
        self.settings = settings
        self.sessions = sessions
        self.emit = emit
        self.schedules = schedules
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emitting: set[Future[None]] = set()
        self._triggers: dict[tuple[str, str], CronTrigger | None] = {}

    async def run(self, stop: asyncio.Event) -> None:
        await self.sync_rules()
        self._loop = asyncio.get_running_loop()
        running = await asyncio.to_thread(self._start_scheduler)
        try:
            while not stop.is_set():
                try:
                    await self.reconcile(running.scheduler)
                except Exception:   # the store is down: the next round retries
                    log.exception("cron: reading the schedules failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=POLL_S)
        finally:
            await asyncio.to_thread(running.stop)
            await asyncio.gather(*(asyncio.wrap_future(f) for f in list(self._emitting)), return_exceptions=True)

    async def sync_rules(self) -> None:
        """The rules file's schedules into the table (origin ``rules``); rules rows no longer in
        the file go. Retried once: another process may be syncing the same rows."""
        for attempt in (1, 2):
            try:
                async with self.sessions.begin() as session:
                    await self._sync(session)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    async def _sync(self, session: AsyncSession) -> None:
        in_file = {schedule.name for schedule in self.schedules}
        for row in await queries.list_schedules(session):
            if row.origin == "rules" and row.name not in in_file:
                await queries.delete_schedule(session, name=row.name)
            elif row.origin != "rules" and row.name in in_file:
                log.warning("cron: the rules file's schedule %s replaces the one made over the API", row.name)
        for schedule in self.schedules:
            await queries.upsert_schedule(session, schedule={**schedule.model_dump(), "origin": "rules",
                                                             "created_by": None})

    async def reconcile(self, scheduler: AsyncIOScheduler) -> None:
        """Make the jobs match the table: a job per enabled schedule, none for the rest."""
        async with self.sessions() as session:
            rows = await queries.list_schedules(session)
        wanted: dict[str, tuple[CronTrigger, int]] = {}
        for row in rows:
            trigger = self._trigger(row.name, row.cron, row.timezone)
            if row.enabled and trigger is not None:
                wanted[row.name] = (trigger, row.misfire_grace_s)
        await asyncio.to_thread(_apply, scheduler, wanted)

    def _trigger(self, name: str, cron: str, tz: str) -> CronTrigger | None:
        """Parsed once per expression; a bad one (only a hand-edited row can be) is logged once."""
        key = (cron, tz)
        if key not in self._triggers:
            try:
                self._triggers[key] = parse_cron(cron, tz)
            except ValueError as exc:
                log.error("cron: schedule %s is skipped: %s", name, exc)
                self._triggers[key] = None
        return self._triggers[key]

    def _start_scheduler(self) -> _Running:
        """A scheduler on a loop of its own, in a thread (see the module's docstring)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_serve, args=(loop,), name="cron-scheduler", daemon=True)
        thread.start()
        try:
            scheduler = AsyncIOScheduler(
                event_loop=loop, timezone=UTC, jobstores={"default": job_store(self.settings)},
                executors={"default": _FiringExecutor(self)}, job_defaults={"coalesce": True, "max_instances": 1})
            scheduler.start(paused=True)   # until the first round has made the jobs match the table
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            raise
        return _Running(scheduler, loop, thread)

    def fired(self, name: str, scheduled: datetime) -> None:
        """On the scheduler's loop: hand the firing to ours. Not awaited there: stopping the
        scheduler cancels its tasks, yet a firing whose run the job store has already moved
        past must still be emitted; ``run`` waits for these before it returns."""
        assert self._loop is not None, "fired before run"
        future = asyncio.run_coroutine_threadsafe(self._emit_firing(name, scheduled), self._loop)
        self._emitting.add(future)
        future.add_done_callback(self._emitting.discard)

    async def _emit_firing(self, name: str, scheduled: datetime) -> None:
        when = scheduled.astimezone(UTC).isoformat()
        try:
            async with self.sessions() as session:
                row = await queries.get_schedule(session, name=name)
            if row is None or not row.enabled:
                return   # deleted or disabled since the last poll, which removes the job next
            await self.emit(Event(source="cron", kind=row.kind, dedup_key=f"cron:{name}:{when}",
                                  payload={**row.payload, "schedule": name, "scheduled_for": when}))
        except Exception as exc:   # APScheduler would swallow it: say so, and journal it if we can
            log.exception("cron: schedule %s (for %s) could not emit its event", name, when)
            await self._journal_failure(name, when, exc)

    async def _journal_failure(self, name: str, when: str, exc: Exception) -> None:
        try:
            async with self.sessions.begin() as session:
                await queries.add_journal(session, kind="incident.cron_fire_failed", detail={
                    "schedule": name, "scheduled_for": when, "error": f"{type(exc).__name__}: {exc}"[:500]})
        except Exception:
            log.warning("cron: the failure of schedule %s could not be journaled either", name)


def job_store(settings: Settings) -> SQLAlchemyJobStore:
    """The persistent job store on the project's database (a sync URL: APScheduler 3 is
    sync), its table created by whichever process comes first."""
    url = sync_url(settings.database)
    options: dict[str, Any] = {"connect_args": {"timeout": 30}} if url_is_sqlite(url) else {"pool_pre_ping": True}
    store = SQLAlchemyJobStore(url=url, tablename=JOB_TABLE, engine_options=options)
    for attempt in (1, 2):
        try:
            store.jobs_t.create(store.engine, checkfirst=True)
            break
        except DBAPIError:   # another process created it at the same moment: it is there now
            if attempt == 2:
                raise
    return store


def _apply(scheduler: AsyncIOScheduler, wanted: dict[str, tuple[CronTrigger, int]]) -> None:
    """In a worker thread (the job store blocks). A job that already matches is left alone,
    so that its next run time, persisted, survives a restart."""
    jobs = {job.id: job for job in scheduler.get_jobs()}
    for name in jobs.keys() - wanted.keys():
        with contextlib.suppress(JobLookupError):   # another process removed it meanwhile
            scheduler.remove_job(name)
    for name, (trigger, grace) in wanted.items():
        job = jobs.get(name)
        if job is None or repr(job.trigger) != repr(trigger) or job.misfire_grace_time != grace:
            scheduler.add_job(fire, trigger, args=[name], id=name, name=name, misfire_grace_time=grace,
                              replace_existing=True)
    if scheduler.state == STATE_PAUSED:
        # The first round: the stored jobs now match the table, so they may run. (Running
        # them before would fire a job whose schedule changed while nothing ran.)
        scheduler.resume()
    else:
        # Jobs another process added to a shared store are seen only when we look; and a job
        # store error inside APScheduler's own round stops its timer, which this restarts.
        scheduler.wakeup()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The scheduler thread: its loop until stopped, then what is left of its tasks."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    finally:
        loop.close()


@dataclass(frozen=True)
class _Running:
    scheduler: AsyncIOScheduler
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def stop(self) -> None:
        """Blocking: shut the scheduler down (its job store's engine too) and end its thread."""
        self.scheduler.shutdown(wait=False)
        self.loop.call_soon_threadsafe(self.loop.stop)   # after the shutdown, queued on that loop too
        self.thread.join()
