"""Snapshots of scopes, kept under the data dir: contents in a content-addressed store,
one manifest per snapshot (itself an object), and per scope the latest manifest, which the
next snapshot of that scope compares against so that it reads only what changed."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from hybrid_agent.rollback.errors import RollbackError, SnapshotMissing
from hybrid_agent.rollback.leases import ScopeLease, scope_key
from hybrid_agent.rollback.manifest import Manifest, check_paths, scan
from hybrid_agent.rollback.objects import ObjectStore
from hybrid_agent.rollback.restore import RestoreReport, restore


def new_snapshot_id() -> str:
    return "snap_" + secrets.token_hex(10)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as journaled: which scope, which manifest, and what taking it cost."""

    id: str
    scope: str
    manifest: str                  # digest of the manifest object
    entries: int
    files_read: int
    bytes_stored: int
    duration_s: float
    task_id: str | None = None
    step: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class CollectReport:
    manifests_kept: int
    objects_kept: int
    objects_removed: int
    bytes_freed: int


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = ObjectStore(root / "objects")
        self.scopes = root / "scopes"
        self.leases = root / "leases"
        for folder in (self.scopes, self.leases):
            folder.mkdir(parents=True, exist_ok=True)
        # The manifest this store last wrote: the next snapshot of that scope compares
        # against it without parsing it back (a few ms for thousands of entries).
        self._last: tuple[str, Manifest] | None = None

    def create(self, scope: Path, *, paths: list[str] | None = None, task_id: str | None = None,
               step: int | None = None) -> Snapshot:
        """Snapshot ``scope``, or only ``paths`` below it (relative to it): only entries
        whose stat changed since the last such snapshot are read."""
        scope = scope.resolve()
        paths = None if paths is None else check_paths(paths)
        started = time.perf_counter()
        key = scope_key(scope if paths is None else f"{scope}\0{json.dumps(paths)}")
        try:
            manifest, stats = scan(scope, self.objects, self._latest(key, scope), paths)
        except OSError as exc:   # unreadable, gone, disk full: one error kind for the callers
            raise RollbackError(f"cannot snapshot {scope}: {exc}") from exc
        digest = self.objects.put_bytes(manifest.to_bytes())
        self._set_latest(key, digest)
        self._last = (digest, manifest)
        return Snapshot(new_snapshot_id(), str(scope), digest, stats.entries, stats.files_read, stats.bytes_stored,
                        round(time.perf_counter() - started, 6), task_id, step)

    def manifest(self, digest: str) -> Manifest:
        return Manifest.from_bytes(self.objects.read_bytes(digest))

    def restore(self, manifest_digest: str) -> RestoreReport:
        """Bring the manifest's scope back to it. The caller holds the scope's lease."""
        return restore(self.manifest(manifest_digest), self.objects)

    def lease(self, scope: Path | str, holder: str) -> ScopeLease:
        return ScopeLease(self.leases, Path(scope).resolve(), holder)

    def collect_garbage(self, keep: Iterable[str], *, grace_s: float = 600.0) -> CollectReport:
        """Remove the contents no kept manifest references. Also kept: the latest manifest
        of each scope that still exists, which the next snapshot of it builds on (without
        it, that snapshot would name contents just removed); and objects younger than
        ``grace_s``, which a snapshot being taken now may reference before its manifest is
        recorded."""
        keep = set(keep) | self._latest_of_existing_scopes()
        referenced = set(keep)
        for digest in keep:
            try:
                referenced |= self.manifest(digest).digests()
            except SnapshotMissing:
                continue
        cutoff = time.time() - grace_s
        kept = removed = freed = 0
        for path in [*self.objects.digests(), *self.objects.tmp.iterdir()]:
            digest = path.parent.name + path.name
            try:
                st = path.stat()
            except FileNotFoundError:   # another worker collected it
                continue
            if digest in referenced or st.st_mtime > cutoff:
                kept += 1
                continue
            path.unlink(missing_ok=True)   # another worker may be collecting too
            removed, freed = removed + 1, freed + st.st_size
        return CollectReport(len(keep), kept, removed, freed)

    def _latest_of_existing_scopes(self) -> set[str]:
        """The manifests the scope pointers name, for scopes still on disk; the pointers of
        vanished scopes are dropped."""
        latest = set()
        for pointer in self.scopes.iterdir():
            try:
                digest = pointer.read_text().strip()
                scope = self.manifest(digest).scope
            except (OSError, SnapshotMissing, RollbackError, ValueError):
                scope = None
            if scope is not None and Path(scope).is_dir():
                latest.add(digest)
            else:
                pointer.unlink(missing_ok=True)
        return latest

    def _latest(self, key: str, scope: Path) -> Manifest | None:
        pointer = self.scopes / key
        try:
            digest = pointer.read_text().strip()
            if self._last is not None and self._last[0] == digest:
                return self._last[1]
            manifest = self.manifest(digest)
        except (FileNotFoundError, SnapshotMissing, RollbackError, ValueError):
            return None   # no usable previous manifest: this snapshot reads everything
        return manifest if manifest.scope == str(scope) else None

    def _set_latest(self, key: str, digest: str) -> None:
        pointer = self.scopes / key
        temp = pointer.with_name(pointer.name + f".{os.getpid()}.tmp")
        temp.write_text(digest)
        os.replace(temp, pointer)
