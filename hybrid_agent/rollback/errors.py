"""The rollback package's one exception tree."""

from __future__ import annotations


class RollbackError(Exception):
    """A snapshot or a restore could not be done; the message says why."""


class ScopeBusy(RollbackError):
    """Another task holds the scope's lease: restoring under it would undo its work mid-step."""


class SnapshotMissing(RollbackError):
    """The snapshot, its manifest or some of its content is not in the store (collected, or never taken)."""
