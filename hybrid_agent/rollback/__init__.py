"""Snapshots and rollback: a content-addressed store of file contents, incremental
manifests of scopes, byte-identical restore, leases on scopes, and compensations for
effects outside files. Knows nothing of the agent; the loop and the worker drive it."""
