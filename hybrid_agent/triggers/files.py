"""The file trigger: watchdog observers on the rules file's watches. A burst of changes
under one watch (a checkout, an unpacked archive, an editor's save dance) is ONE
``file.changed`` event listing the changed paths, emitted once the watch has been quiet for
its ``debounce_s``; a change stream that never goes quiet still emits at least every
``max(10 * debounce_s, 30)`` seconds.

Watchdog calls us on its own thread: the handler filters there (cheap, no shared state)
and hands each relevant relative path to the asyncio loop, where all the state lives."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

from watchdog.events import (EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer

from hybrid_agent.bus.messages import Event
from hybrid_agent.rollback.restore import TEMP_PREFIX
from hybrid_agent.triggers.outbox import Emitted
from hybrid_agent.triggers.rules import Watch

log = logging.getLogger(__name__)

Emit = Callable[[Event], Awaitable[Emitted]]
MAX_PATHS = 1000        # paths listed in one event; ``count`` still says how many changed
RETRY_S = 2.0           # a failed emit (the store is down) is tried again this long after
_COUNTED = {EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED, EVENT_TYPE_DELETED}


def watch_root(watch: Watch) -> Path:
    """The watch's directory, absolute; a clear error naming the watch when it is not one."""
    root = watch.path.expanduser().resolve()
    if not root.exists():
        raise ValueError(f"watch {watch.name}: path {watch.path} does not exist")
    if not root.is_dir():
        raise ValueError(f"watch {watch.name}: path {watch.path} is not a directory")
    return root


def max_wait_s(debounce_s: float) -> float:
    """How long a never-quiet stream of changes may delay its event."""
    return max(10 * debounce_s, 30.0)


def wanted(watch: Watch, rel: str) -> bool:
    """Whether a change to ``rel`` (relative to the root, POSIX) counts for the watch: not
    our own machinery (rollback temporaries, anything in a ``.git``), included and not
    excluded. A glob matches the relative path or the basename (``*.csv`` matches
    ``a/b/x.csv``); ``**/`` in front also matches at the top level."""
    parts = PurePosixPath(rel).parts
    if ".git" in parts or any(part.startswith(TEMP_PREFIX) for part in parts):
        return False
    return _matches(rel, watch.include) and not _matches(rel, watch.exclude)


def _matches(rel: str, globs: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for glob in globs:
        tails = [glob, glob[3:]] if glob.startswith("**/") else [glob]
        if any(fnmatch.fnmatchcase(rel, tail) or fnmatch.fnmatchcase(name, tail) for tail in tails):
            return True
    return False


class FileWatcher:
    """Runs one watchdog observer for all the watches while ``run`` runs (a trigger
    leader calls it each time it becomes leader; every run starts afresh)."""

    def __init__(self, watches: list[Watch], emit: Emit, *, retry_s: float = RETRY_S,
                 max_wait: float | None = None) -> None:
        """``max_wait`` overrides every watch's ``max_wait_s(debounce_s)`` (tests)."""
        self.watches = watches
        self.roots = [watch_root(watch) for watch in watches]   # a bad path fails here, not later
        self.emit = emit
        self.retry_s = retry_s
        self.max_wait = max_wait
        self._bursts: list[_Burst] = []
        self.watching = asyncio.Event()   # set while the observer runs: changes from then on count

    def pending(self) -> dict[str, int]:
        """Changed paths waiting for their watch's event, per watch (of the current run)."""
        return {burst.watch.name: len(burst.paths) for burst in self._bursts}

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop``; changes still waiting for their quiet period are emitted then."""
        roots = [watch_root(watch) for watch in self.watches]   # it may have gone since construction
        loop = asyncio.get_running_loop()
        self._bursts = [_Burst(watch, root, self.emit, self.retry_s, self.max_wait or max_wait_s(watch.debounce_s),
                               stop) for watch, root in zip(self.watches, roots)]
        observer = Observer()
        for burst in self._bursts:
            observer.schedule(_Handler(burst, loop), str(burst.root), recursive=burst.watch.recursive)
        tasks = [asyncio.create_task(burst.run(), name=f"watch:{burst.watch.name}") for burst in self._bursts]
        observer.start()
        self.watching.set()
        try:
            await stop.wait()
        finally:
            self.watching.clear()
            observer.stop()
            await asyncio.to_thread(observer.join)
            if not stop.is_set():    # cancelled (a dying process): no goodbyes
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Paths the observer handed over while it stopped are in the bursts by now.
        await asyncio.gather(*(burst.flush() for burst in self._bursts))


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: filters, then hands the relative path to the loop."""

    def __init__(self, burst: _Burst, loop: asyncio.AbstractEventLoop) -> None:
        self.burst = burst
        self.loop = loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in _COUNTED:
            return
        rel = self._relative(event.dest_path if event.event_type == EVENT_TYPE_MOVED else event.src_path)
        if rel is None and event.event_type == EVENT_TYPE_MOVED:
            rel = self._relative(event.src_path)    # moved out of the tree: it is gone from here
        if rel is None or not wanted(self.burst.watch, rel):
            return
        with contextlib.suppress(RuntimeError):    # the loop closed under a stopping observer
            self.loop.call_soon_threadsafe(self.burst.add, rel)

    def _relative(self, path: str | bytes) -> str | None:
        text = path.decode(errors="surrogateescape") if isinstance(path, bytes) else path
        if not text:
            return None
        try:
            return Path(text).relative_to(self.burst.root).as_posix()
        except ValueError:
            return None


class _Burst:
    """One watch's changes since its last event, and the task that emits them: after
    ``debounce_s`` without a change, or ``max_wait_s`` after the first, whichever is sooner."""

    def __init__(self, watch: Watch, root: Path, emit: Emit, retry_s: float, max_wait: float,
                 stop: asyncio.Event) -> None:
        self.watch, self.root, self.emit = watch, root, emit
        self.retry_s, self.max_wait, self.stop = retry_s, max_wait, stop
        self.paths: set[str] = set()
        self.first = self.last = 0.0
        self.arrived = asyncio.Event()   # the first change since the last event

    def add(self, rel: str) -> None:
        now = asyncio.get_running_loop().time()
        if not self.paths:
            self.first = now
            self.arrived.set()
        self.paths.add(rel)
        self.last = now

    async def run(self) -> None:
        """Until stop (an emit in flight finishes first; ``flush`` sends what is left)."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            if not self.paths:
                self.arrived.clear()
                await _until(None, self.arrived, self.stop)
                continue
            # Later changes move ``last``: waking at the old deadline just computes a new one.
            delay = min(self.last + self.watch.debounce_s, self.first + self.max_wait) - loop.time()
            if delay > 0:
                await _until(delay, self.stop)
                continue
            await self._deliver(self._take())

    async def flush(self) -> None:
        """At stop: one try for what is still waiting (the next leader will not see it)."""
        if self.paths:
            event = self._take()
            try:
                await self.emit(event)
            except Exception:
                log.exception("watch %s: %d changed paths lost at stop (emit failed)",
                              self.watch.name, event.payload["count"])

    def _take(self) -> Event:
        paths, self.paths = sorted(self.paths), set()
        return Event(source="file", kind="changed", payload={
            **self.watch.payload, "watch": self.watch.name, "root": str(self.root),
            "paths": paths[:MAX_PATHS], "count": len(paths), "truncated": len(paths) > MAX_PATHS})

    async def _deliver(self, event: Event) -> None:
        """Emit, retrying the same event (the same dedup key) until it goes through or we stop."""
        while True:
            try:
                await self.emit(event)
                return
            except Exception:
                log.exception("watch %s: emitting %d changed paths failed; retrying in %.1fs",
                              self.watch.name, event.payload["count"], self.retry_s)
            await _until(self.retry_s, self.stop)
            if self.stop.is_set():
                log.error("watch %s: %d changed paths lost at stop (emit kept failing)",
                          self.watch.name, event.payload["count"])
                return


async def _until(timeout: float | None, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set, or ``timeout`` seconds pass (None: no limit)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
