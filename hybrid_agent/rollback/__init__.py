"""Snapshots and rollback (a later issue)."""
