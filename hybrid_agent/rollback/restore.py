"""Bring a scope back to a manifest, byte for byte. Every write goes to a temporary name
beside its target and is renamed over it, so a restore killed midway leaves each entry
either as it was or as restored, plus stray temporaries; the temporaries are not in the
manifest, so running the restore again removes them and finishes the job."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_agent.rollback.errors import RollbackError, SnapshotMissing
from hybrid_agent.rollback.manifest import DIR, FIFO, FILE, SPECIAL, SYMLINK, Entry, Manifest, blocked_by, covered, entry_type, lend_bits
from hybrid_agent.rollback.objects import ObjectStore

TEMP_PREFIX = ".ha-restore-"
SHOWN = 20   # paths of each kind a summary lists


@dataclass
class RestoreReport:
    created: list[str] = field(default_factory=list)     # deleted since the snapshot, recreated
    modified: list[str] = field(default_factory=list)    # content, type or link target put back
    removed: list[str] = field(default_factory=list)     # created since the snapshot
    metadata: list[str] = field(default_factory=list)    # only the mode or mtime put back
    bytes_written: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.modified or self.removed or self.metadata)

    def summary(self) -> dict[str, object]:
        """Counts and the first paths of each kind: what the journal and the CLI show."""
        kinds = {"created": self.created, "modified": self.modified, "removed": self.removed,
                 "metadata": self.metadata}
        return {**{k: len(v) for k, v in kinds.items()}, "bytes_written": self.bytes_written,
                "paths": {k: sorted(v)[:SHOWN] for k, v in kinds.items() if v}}


def restore(manifest: Manifest, objects: ObjectStore) -> RestoreReport:
    """Make the scope identical to ``manifest``; idempotent, and resumable after a crash."""
    missing = sorted(d for d in manifest.digests() if not objects.has(d))
    if missing:
        raise SnapshotMissing(f"{len(missing)} file contents of this snapshot are no longer stored "
                              f"(garbage-collected?); nothing was changed")
    scope = Path(manifest.scope)
    scope.mkdir(parents=True, exist_ok=True)
    blocked = [(rel, blocker) for rel in manifest.paths or () if (blocker := blocked_by(scope, rel))]
    if blocked:
        rel, blocker = blocked[0]
        raise RollbackError(f"cannot restore {rel!r}: {blocker!r} is no longer a folder, and what replaced it is "
                            "outside this snapshot; nothing was changed")
    if manifest.paths is None:
        _own_writable(scope)
    report = RestoreReport()
    current = _current(scope, manifest.paths)
    _remove_extra(scope, manifest, current, report)
    for rel, entry in sorted(manifest.entries.items()):   # parents before children
        if entry.type != SPECIAL:
            if manifest.paths is not None and rel in manifest.paths:
                (scope / rel).parent.mkdir(parents=True, exist_ok=True)
            _put_back(scope / rel, rel, entry, current.get(rel), manifest, objects, report)
    _directory_metadata(scope, manifest, current, report)
    return report


def _current(scope: Path, paths: list[str] | None) -> dict[str, os.stat_result]:
    """What the manifest covers as it is now, every folder made writable and searchable
    (their modes are put back at the end), so that nothing in it is out of reach."""
    found: dict[str, os.stat_result] = {}
    for rel, path, st in covered(scope, os.lstat(scope), paths):
        if stat.S_ISDIR(st.st_mode):
            _own_writable(path, st)
        found[rel] = st
    return found


def _own_writable(path: Path, st: os.stat_result | None = None) -> None:
    st = st or os.lstat(path)
    bits = stat.S_IRWXU
    if stat.S_IMODE(st.st_mode) & bits != bits:
        os.chmod(path, stat.S_IMODE(st.st_mode) | bits)


def _remove_extra(scope: Path, manifest: Manifest, current: dict[str, os.stat_result], report: RestoreReport) -> None:
    """Entries created since the snapshot, or whose type changed, go; children first."""
    for rel in sorted(current, reverse=True):
        entry, kind = manifest.entries.get(rel), entry_type(current[rel])
        if entry is not None and (entry.type == kind or entry.type == SPECIAL):
            continue
        path = scope / rel
        if kind == DIR:
            shutil.rmtree(path)
        else:
            path.unlink()
        del current[rel]
        if entry is None and not rel.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            report.removed.append(rel)


def _put_back(path: Path, rel: str, entry: Entry, st: os.stat_result | None, manifest: Manifest,
              objects: ObjectStore, report: RestoreReport) -> None:
    if entry.type == DIR:
        if st is None:
            os.mkdir(path, 0o700)   # its mode is set with the other folders', children first
            report.created.append(rel)
        return
    if st is not None and _same(path, entry, st, manifest):
        if entry.type in (FILE, FIFO) and (stat.S_IMODE(st.st_mode) != entry.mode or st.st_mtime_ns != entry.mtime_ns):
            os.chmod(path, entry.mode)
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
            report.metadata.append(rel)
        return
    temp = path.with_name(TEMP_PREFIX + secrets.token_hex(6))
    if entry.type == FILE:
        assert entry.digest is not None
        report.bytes_written += objects.copy_to(entry.digest, temp)
    elif entry.type == SYMLINK:
        assert entry.target is not None
        os.symlink(entry.target, temp)
    elif entry.type == FIFO:
        os.mkfifo(temp)
    else:
        raise RollbackError(f"cannot restore {rel}: unknown entry type {entry.type!r}")
    if entry.type != SYMLINK:
        os.chmod(temp, entry.mode)
        os.utime(temp, ns=(entry.mtime_ns, entry.mtime_ns))
    os.replace(temp, path)
    (report.created if st is None else report.modified).append(rel)


def _same(path: Path, entry: Entry, st: os.stat_result, manifest: Manifest) -> bool:
    """Whether the entry's content (or link target) is already what the manifest holds."""
    if entry.type == SYMLINK:
        return os.readlink(path) == entry.target
    if entry.type != FILE:
        return True
    if st.st_size != entry.size:
        return False
    if entry.same_stat(st) and manifest.trusted(entry):
        return True
    return _digest_of(path, st) == entry.digest


def _digest_of(path: Path, st: os.stat_result) -> str:
    with lend_bits(path, st, stat.S_IRUSR), open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _directory_metadata(scope: Path, manifest: Manifest, before: dict[str, os.stat_result],
                        report: RestoreReport) -> None:
    """Folder modes and mtimes last, deepest first: writing into a folder changes its
    mtime, and a read-only mode would have refused the writes."""
    folders = sorted((rel for rel, e in manifest.entries.items() if e.type == DIR), reverse=True)
    for rel in folders:
        entry, path = manifest.entries[rel], scope / rel
        os.chmod(path, entry.mode)
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
        # A folder's mtime moves whenever an entry in it is put back; only a mode is news.
        if rel in before and stat.S_IMODE(before[rel].st_mode) != entry.mode:
            report.metadata.append(rel)
    if manifest.paths is None:
        os.chmod(scope, manifest.root_mode)
