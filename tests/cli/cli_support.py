"""Running the `hybrid-agent` command as a person would: a subprocess with its own data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def cli(*args: str, data_dir: Path, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HA_DATA_DIR": str(data_dir), "HA_WORKSPACE_ROOTS": json.dumps([str(data_dir.parent)])}
    if database_url:
        env["HA_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "hybrid_agent", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
