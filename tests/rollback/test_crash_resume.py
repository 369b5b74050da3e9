"""A restore killed midway (SIGKILL, in the middle of putting files back) leaves a
half-restored scope with a stray temporary; running the restore again completes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hybrid_agent.rollback.restore import TEMP_PREFIX
from hybrid_agent.rollback.snapshots import SnapshotStore
from tests.rollback.tree_support import tree_state

# The restore runs in a child process that kills itself (SIGKILL: no cleanup, no finally)
# just before its tenth rename of a temporary file over its target.
DYING_RESTORE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from hybrid_agent.rollback import restore
    from hybrid_agent.rollback.snapshots import SnapshotStore

    renames = 0
    real_replace = os.replace

    def replace_then_die(src, dst):
        global renames
        renames += 1
        if renames == 10:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    restore.os.replace = replace_then_die
    SnapshotStore(Path(sys.argv[1])).restore(sys.argv[2])
""")


def test_a_killed_restore_completes_when_run_again(scope: Path, store: SnapshotStore, tmp_path: Path) -> None:
    for i in range(30):
        folder = scope / f"d{i % 3}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i}.txt").write_text(f"original {i}\n")
    os.chmod(scope / "d1", 0o750)
    before = tree_state(scope)
    snapshot = store.create(scope)
    for i in range(30):
        path = scope / f"d{i % 3}" / f"f{i}.txt"
        if i % 5 == 0:
            path.unlink()
        else:
            path.write_text(f"changed {i}\n")
    (scope / "d0" / "extra.log").write_text("created since")

    child = subprocess.run([sys.executable, "-c", DYING_RESTORE, str(store.root), snapshot.manifest],
                           cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    half = tree_state(scope)
    assert half != before
    assert any(TEMP_PREFIX in rel for rel in half)   # the temporary it was about to rename

    report = store.restore(snapshot.manifest)
    assert tree_state(scope) == before
    assert report.changed and not any(TEMP_PREFIX in path for path in report.removed)
