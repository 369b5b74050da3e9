"""Where a task runs: a fresh directory under the data dir, or a requested directory that
lies strictly below one of the allowed roots."""

from __future__ import annotations

from pathlib import Path

from hybrid_agent.config import Settings


class WorkspaceNotAllowed(ValueError):
    """The requested workspace is not strictly below an allowed root."""


def resolve_workspace(requested: str | None, *, settings: Settings, task_id: str) -> Path:
    """The task's workspace as an absolute path with symlinks resolved, created if missing."""
    if requested is None:
        return _fresh_workspace(settings.workspaces_dir, task_id)
    path = Path(requested).expanduser().resolve()
    _check_allowed(path, requested, settings.allowed_roots)
    if path.exists() and not path.is_dir():
        raise WorkspaceNotAllowed(f"workspace {requested!r} is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    # Roots such as /tmp are writable by anyone: a component could have been swapped for a
    # symlink between the check and mkdir, so check what was actually created.
    _check_allowed(path.resolve(), requested, settings.allowed_roots)
    return path


def _fresh_workspace(workspaces_dir: Path, task_id: str) -> Path:
    # The id becomes a path component, so one such as "../x" would leave the directory.
    if task_id in {"", ".", ".."} or "/" in task_id or "\0" in task_id:
        raise ValueError(f"task id {task_id!r} cannot name a workspace directory")
    path = workspaces_dir.resolve() / task_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_allowed(path: Path, requested: str, roots: list[Path]) -> None:
    # Strictly below: a root itself is refused, else the agent would own all of /tmp (or
    # of a log root), and snapshots and rollback would cover everything in it.
    if not any(path != root and path.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise WorkspaceNotAllowed(
            f"workspace {requested!r} (resolved: {path}) is not strictly below an allowed root: {allowed}"
        )


def check_workspace(requested: str, *, roots: list[Path]) -> Path:
    """Check a requested workspace without creating it: the API refuses a bad one before
    anything is stored."""
    path = Path(requested).expanduser().resolve()
    _check_allowed(path, requested, roots)
    if path.exists() and not path.is_dir():
        raise WorkspaceNotAllowed(f"workspace {requested!r} is not a directory")
    return path
