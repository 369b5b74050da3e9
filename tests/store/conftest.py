from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_agent.store.db import migrate


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A migrated SQLite database file."""
    path = tmp_path / "store.db"
    migrate(f"sqlite:///{path}")
    return path
