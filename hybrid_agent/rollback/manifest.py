"""A scope's manifest: every entry below it (path, type, mode, size, mtime, content digest,
symlink target; empty directories too), and the incremental scan that builds one, reading
only the files whose (size, mtime, inode, ctime) changed since the previous manifest."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hybrid_agent.rollback.errors import RollbackError
from hybrid_agent.rollback.objects import ObjectStore

FILE, DIR, SYMLINK, FIFO, SPECIAL = "file", "dir", "symlink", "fifo", "special"
FORMAT = 1
# Linux stamps files from a coarse clock (a tick of 1-10 ms): a file written in the same
# tick as a scan can change again without its stat changing. Entries this close to the
# scan are re-read next time instead of trusted (git's "racily clean" entries).
RACY_NS = 100_000_000


@dataclass(frozen=True, slots=True)
class Entry:
    type: str
    mode: int                  # permission bits, setuid/setgid/sticky included
    size: int = 0
    mtime_ns: int = 0
    digest: str | None = None  # files: SHA-256 of the content
    target: str | None = None  # symlinks
    inode: int = 0
    ctime_ns: int = 0

    def same_stat(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == (
            self.size, self.mtime_ns, self.inode, self.ctime_ns)


@dataclass
class Manifest:
    scope: str
    root_mode: int
    scanned_at_ns: int
    entries: dict[str, Entry] = field(default_factory=dict)  # relative POSIX path -> entry
    # Only these paths below the scope (and what lies under them); None: the whole scope.
    # A listed path absent from the entries did not exist: a restore removes it.
    paths: list[str] | None = None

    def trusted(self, entry: Entry) -> bool:
        """Whether an entry's stat may stand for its content (it was not racily clean)."""
        return max(entry.mtime_ns, entry.ctime_ns) < self.scanned_at_ns - RACY_NS

    def digests(self) -> set[str]:
        return {e.digest for e in self.entries.values() if e.digest}

    def to_bytes(self) -> bytes:
        rows = [[path, e.type, e.mode, e.size, e.mtime_ns, e.digest, e.target, e.inode, e.ctime_ns]
                for path, e in sorted(self.entries.items())]
        return json.dumps({"format": FORMAT, "scope": self.scope, "root_mode": self.root_mode,
                           "scanned_at_ns": self.scanned_at_ns, "paths": self.paths, "entries": rows},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise RollbackError(f"manifest format {doc.get('format')!r} is not {FORMAT}")
        entries = {row[0]: Entry(*row[1:]) for row in doc["entries"]}
        return cls(doc["scope"], doc["root_mode"], doc["scanned_at_ns"], entries, doc.get("paths"))


@dataclass
class ScanStats:
    entries: int = 0
    files_read: int = 0
    bytes_read: int = 0
    bytes_stored: int = 0


def scan(scope: Path, objects: ObjectStore, previous: Manifest | None = None,
         paths: list[str] | None = None) -> tuple[Manifest, ScanStats]:
    """The manifest of ``scope`` (or of ``paths`` below it) now, its new contents stored
    in ``objects``."""
    root = os.lstat(scope)
    if not stat.S_ISDIR(root.st_mode):
        raise RollbackError(f"scope {scope} is not a directory")
    manifest = Manifest(str(scope), stat.S_IMODE(root.st_mode), time.time_ns(), paths=paths)
    stats = ScanStats()
    known = previous.entries if previous else {}
    cutoff = previous.scanned_at_ns - RACY_NS if previous else 0
    for rel, path, st in covered(scope, root, paths):
        entry = known.get(rel)
        if entry is None or not _unchanged(entry, st, cutoff):
            entry = _entry(path, st, objects, stats)
        if entry is not None:
            manifest.entries[rel] = entry
    stats.entries = len(manifest.entries)
    return manifest, stats


def _unchanged(entry: Entry, st: os.stat_result, cutoff: int) -> bool:
    """Whether the previous manifest's entry still describes this file or folder as it
    is: same stat, and (a file) not written so close to that scan that its stat could
    hide a change. The common case of a scan, so it makes nothing new."""
    if entry.mode != stat.S_IMODE(st.st_mode) or entry.mtime_ns != st.st_mtime_ns or entry.inode != st.st_ino \
            or entry.ctime_ns != st.st_ctime_ns:
        return False
    if entry.type == DIR:
        return stat.S_ISDIR(st.st_mode)
    return (entry.type == FILE and stat.S_ISREG(st.st_mode) and entry.size == st.st_size
            and max(entry.mtime_ns, entry.ctime_ns) < cutoff)


def covered(scope: Path, root: os.stat_result, paths: list[str] | None) -> Iterator[tuple[str, str, os.stat_result]]:
    """What a manifest covers: the whole scope, or each listed path that exists and what
    lies under it."""
    if paths is None:
        yield from walk(scope, root)
        return
    for rel in paths:
        blocker = blocked_by(scope, rel)
        if blocker is not None:
            raise RollbackError(f"path {rel!r} lies under {blocker!r}, which is not a folder (a symlink is not "
                                "followed out of the scope)")
        path = os.path.join(scope, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        yield rel, path, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk(path, st, prefix=rel + "/")


def blocked_by(scope: Path, rel: str) -> str | None:
    """The first folder on the way from ``scope`` to ``rel`` that is there but is not a
    folder (a symlink, a file); None when the way is clear (or ends where it is missing)."""
    parts = rel.split("/")[:-1]
    for i in range(len(parts)):
        ancestor = "/".join(parts[: i + 1])
        try:
            st = os.lstat(os.path.join(scope, ancestor))
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return ancestor
    return None


def check_paths(paths: list[str]) -> list[str]:
    """Listed paths as a manifest keeps them: relative, normalised, inside the scope,
    none below another (that one's folder covers it)."""
    clean = sorted({os.path.normpath(p) for p in paths})
    for path in clean:
        if os.path.isabs(path) or path == "." or path.split("/")[0] == "..":
            raise RollbackError(f"path {path!r} is not a path below the scope")
    nested = [p for p in clean if any(p.startswith(q + "/") for q in clean)]
    if nested:
        raise RollbackError(f"path {nested[0]!r} lies below another listed path")
    return clean


def walk(top: Path | str, st_top: os.stat_result, *, prefix: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, path, lstat) of every entry below ``top`` (whose lstat is
    ``st_top``), parents before children; symlinks are entries, never followed. Paths are
    strings: a Path per entry costs more than the stat."""
    stack = [(prefix, str(top), st_top)]
    while stack:
        prefix, directory, st_dir = stack.pop()
        try:
            with lend_bits(directory, st_dir, stat.S_IRUSR | stat.S_IXUSR), os.scandir(directory) as listing:
                children = sorted(listing, key=lambda d: d.name)
        except FileNotFoundError:
            continue   # removed while we walked
        for child in children:
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            rel = prefix + child.name
            yield rel, child.path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((rel + "/", child.path, st))


def entry_type(st: os.stat_result) -> str:
    """What a manifest calls the entry ``st`` describes; sockets and devices are ``special``."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return FIFO if stat.S_ISFIFO(mode) else SPECIAL


def _entry(path: str, st: os.stat_result, objects: ObjectStore, stats: ScanStats) -> Entry | None:
    kind = entry_type(st)
    common = {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
              "ctime_ns": st.st_ctime_ns}
    if kind == FILE:
        try:
            with lend_bits(path, st, stat.S_IRUSR):
                digest, stored = objects.put_file(path)
        except FileNotFoundError:
            return None
        stats.files_read += 1
        stats.bytes_read += st.st_size
        stats.bytes_stored += stored
        return Entry(FILE, size=st.st_size, digest=digest, **common)
    if kind == SYMLINK:
        return Entry(SYMLINK, target=os.readlink(path), **common)
    return Entry(kind, **common)   # sockets and devices (special): recorded, never recreated or removed


@contextmanager
def lend_bits(path: Path | str, st: os.stat_result, bits: int) -> Iterator[None]:
    """Our own file or folder with its read (or search) bit off is still ours to read:
    lend the bits, then give the mode back. Root needs no bits."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & bits == bits or st.st_uid != os.getuid() or os.getuid() == 0:
        yield
        return
    os.chmod(path, mode | bits)
    try:
        yield
    finally:
        os.chmod(path, mode)
