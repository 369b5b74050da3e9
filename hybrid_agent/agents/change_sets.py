"""Dry runs. The agent works on a scratch copy of its scope, restored from a snapshot;
what it changed there (files, and the commands it ran) is the predicted change set, and
nothing touches the scope. Approval applies exactly that change set: the changed paths
are put in the state the dry run left them, provided the scope has not moved under them."""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hybrid_agent.rollback.errors import RollbackError
from hybrid_agent.rollback.manifest import Entry, Manifest
from hybrid_agent.rollback.restore import RestoreReport, restore
from hybrid_agent.rollback.snapshots import Snapshot, SnapshotStore

DIFF_MAX_CHARS = 100_000
TEXT_MAX_BYTES = 256 * 1024


class ChangeSetConflict(RollbackError):
    """The scope changed since the dry run under paths the change set would write."""


@dataclass(frozen=True)
class ChangeSet:
    scope: str
    base_manifest: str      # the scope when the dry run started
    result_manifest: str    # the scratch copy when it ended
    paths: list[str]        # the topmost changed paths
    files: list[dict[str, str]]   # {"path", "change": added|modified|deleted}
    commands: list[str]     # the shell commands the dry run ran, in order
    diff: str

    def as_dict(self) -> dict[str, Any]:
        return {"apply": "files", "scope": self.scope, "base_manifest": self.base_manifest,
                "result_manifest": self.result_manifest, "paths": self.paths, "files": self.files,
                "commands": self.commands, "diff": self.diff}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeSet:
        return cls(data["scope"], data["base_manifest"], data["result_manifest"], data["paths"], data["files"],
                   data["commands"], data["diff"])


def scratch_copy(store: SnapshotStore, scope: Path, scratch: Path) -> Snapshot:
    """Snapshot ``scope`` and restore that snapshot into ``scratch`` (emptied first). The
    snapshot belongs to no task: undoing the dry run must never restore the scope to it."""
    base = store.create(scope)
    if scratch.exists():
        shutil.rmtree(scratch)
    restore(replace(store.manifest(base.manifest), scope=str(scratch)), store.objects)
    return base


def predict(store: SnapshotStore, *, scope: Path, base_manifest: str, scratch: Path, commands: list[str],
            task_id: str) -> ChangeSet:
    """What the dry run changed in ``scratch`` relative to the scope's snapshot."""
    after = store.create(scratch, task_id=task_id)
    before, result = store.manifest(base_manifest), store.manifest(after.manifest)
    changed = sorted(path for path in before.entries.keys() | result.entries.keys()
                     if not _same(before.entries.get(path), result.entries.get(path)))
    files = [{"path": path, "change": _change(before.entries.get(path), result.entries.get(path))}
             for path in changed if _kind(before.entries.get(path), result.entries.get(path)) != "dir"]
    return ChangeSet(str(scope), base_manifest, after.manifest, _topmost(changed), files, commands,
                     _diff(store, before, result, files))


def apply(store: SnapshotStore, change_set: ChangeSet) -> RestoreReport:
    """Write the change set into its scope; refused (nothing written) when the scope no
    longer matches the dry run's starting point under the changed paths. The caller holds
    the scope's lease and has snapshotted it (so the apply can be rolled back)."""
    if not change_set.paths:
        return RestoreReport()
    scope = Path(change_set.scope)
    base, result = store.manifest(change_set.base_manifest), store.manifest(change_set.result_manifest)
    now = store.manifest(store.create(scope, paths=change_set.paths).manifest)
    moved = [path for path in _under(base.entries.keys() | now.entries.keys(), change_set.paths)
             if not _same(base.entries.get(path), now.entries.get(path))]
    if moved:
        raise ChangeSetConflict(f"the scope changed since the dry run under {', '.join(sorted(moved)[:5])}; "
                                "nothing was applied (run it again)")
    target = Manifest(str(scope), base.root_mode, result.scanned_at_ns,
                      {path: result.entries[path] for path in _under(result.entries, change_set.paths)},
                      change_set.paths)
    return restore(target, store.objects)


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.type, a.mode, a.digest, a.target) == (b.type, b.mode, b.digest, b.target)


def _change(before: Entry | None, after: Entry | None) -> str:
    return "added" if before is None else "deleted" if after is None else "modified"


def _kind(before: Entry | None, after: Entry | None) -> str:
    return (after or before).type  # type: ignore[union-attr]


def _topmost(paths: list[str]) -> list[str]:
    """Paths without an ancestor in the list: restoring those covers the rest."""
    kept: list[str] = []
    for path in sorted(paths):
        if not any(path.startswith(parent + "/") for parent in kept):
            kept.append(path)
    return kept


def _under(paths: Any, roots: list[str]) -> list[str]:
    return [path for path in paths if any(path == root or path.startswith(root + "/") for root in roots)]


def _diff(store: SnapshotStore, before: Manifest, result: Manifest, files: list[dict[str, str]]) -> str:
    """A unified diff of the changed text files; binary or large ones are named only."""
    parts: list[str] = []
    for item in files:
        path = item["path"]
        was, now = before.entries.get(path), result.entries.get(path)
        if was and now and was.mode != now.mode:
            parts.append(f"mode change {path} {was.mode:04o} -> {now.mode:04o}\n")
        old, new = _text(store, was), _text(store, now)
        if old is None or new is None:
            parts.append(f"Binary or large file {path} {item['change']}\n")
            continue
        lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile="/dev/null" if item["change"] == "added" else f"a/{path}",
                                     tofile="/dev/null" if item["change"] == "deleted" else f"b/{path}")
        # As git and patch write it: a last line without a newline is marked, not glued to the next.
        parts.extend(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    text = "".join(parts)
    return text if len(text) <= DIFF_MAX_CHARS else text[:DIFF_MAX_CHARS] + "\n[diff cut]\n"


def _text(store: SnapshotStore, entry: Entry | None) -> str | None:
    if entry is None:
        return ""
    if entry.type != "file" or entry.digest is None or entry.size > TEXT_MAX_BYTES:
        return None if entry.type == "file" else ""
    data = store.objects.read_bytes(entry.digest)
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None
