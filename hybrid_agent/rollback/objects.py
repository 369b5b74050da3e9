"""A content-addressed store: each distinct file content kept once, named by its SHA-256,
written to a temporary file and renamed into place, so that an object present is an object
whole. Nothing is fsynced: what this guards against is a killed process (whose writes the
page cache keeps), not a power cut; git makes the same trade by default."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from hybrid_agent.rollback.errors import SnapshotMissing

CHUNK = 1 << 20          # files up to this size are read in one go
_READ_ONLY = 0o444


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_file(self, source: Path | str) -> tuple[str, int]:
        """Store a file's content; returns (digest, bytes newly stored: 0 when known)."""
        with open(source, "rb", buffering=0) as src:
            head = src.read(CHUNK + 1)
            if len(head) <= CHUNK:
                return self._put(head)
            return self._put_stream(head, src)

    def put_bytes(self, data: bytes) -> str:
        return self._put(data)[0]

    def read_bytes(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise SnapshotMissing(f"object {digest[:12]} is not in the store") from exc

    def copy_to(self, digest: str, dest: Path) -> int:
        """Write an object's content to ``dest`` (a new file), checking its digest on the way."""
        check = hashlib.sha256()
        try:
            src = open(self.path(digest), "rb", buffering=0)
        except FileNotFoundError as exc:
            raise SnapshotMissing(f"object {digest[:12]} is not in the store") from exc
        with src, open(dest, "xb", buffering=0) as out:
            while chunk := src.read(CHUNK):
                check.update(chunk)
                _write_all(out.fileno(), chunk)
            size = out.tell()
        if check.hexdigest() != digest:
            dest.unlink()
            raise SnapshotMissing(f"object {digest[:12]} is corrupt (its content no longer matches its name)")
        return size

    def digests(self) -> Iterator[Path]:
        """Every object file (for garbage collection)."""
        for bucket in self.root.iterdir():
            if len(bucket.name) == 2 and bucket.is_dir():
                yield from bucket.iterdir()

    def _put(self, data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        if self._touch(digest):
            return digest, 0
        temp = self._new_temp()
        try:
            _write_all(temp[1], data)
        finally:
            os.close(temp[1])
        self._install(temp[0], digest)
        return digest, len(data)

    def _put_stream(self, head: bytes, src) -> tuple[str, int]:  # type: ignore[no-untyped-def]
        """A large file: hashed while copied to a temporary, which is kept only if new."""
        digest, (temp, fd) = hashlib.sha256(head), self._new_temp()
        try:
            chunk = head
            while chunk:
                digest.update(chunk)
                _write_all(fd, chunk)
                chunk = src.read(CHUNK)
            size = os.lseek(fd, 0, os.SEEK_CUR)
        except BaseException:
            os.unlink(temp)
            raise
        finally:
            os.close(fd)
        name = digest.hexdigest()
        if self._touch(name):
            os.unlink(temp)
            return name, 0
        self._install(temp, name)
        return name, size

    def _new_temp(self) -> tuple[Path, int]:
        temp = self.tmp / f"obj-{secrets.token_hex(8)}"
        return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _READ_ONLY)

    def _install(self, temp: Path, digest: str) -> None:
        target = self.path(digest)
        try:
            os.replace(temp, target)
        except FileNotFoundError:
            target.parent.mkdir(exist_ok=True)
            os.replace(temp, target)

    def _touch(self, digest: str) -> bool:
        """True when the object exists. Its mtime is refreshed: garbage collection spares
        recent objects, and a known object just referenced again must not be collected
        before its new manifest is recorded."""
        try:
            os.utime(self.path(digest))
            return True
        except FileNotFoundError:
            return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
