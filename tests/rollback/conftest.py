from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_agent.rollback.snapshots import SnapshotStore


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "rollback")


@pytest.fixture
def scope(tmp_path: Path) -> Path:
    root = tmp_path / "scope"
    root.mkdir()
    return root
