"""A scope's lease is exclusive across processes and names its holder; garbage collection
frees the contents only expired snapshots held and keeps the rest restorable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_agent.rollback.errors import ScopeBusy, SnapshotMissing
from hybrid_agent.rollback.snapshots import SnapshotStore
from tests.rollback.tree_support import tree_state


def test_a_held_lease_refuses_others_and_names_the_holder(scope: Path, store: SnapshotStore) -> None:
    with store.lease(scope, holder="task t1"):
        with pytest.raises(ScopeBusy, match="held by task t1"):
            store.lease(scope, holder="a rollback").acquire()
        other_process = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; from hybrid_agent.rollback.snapshots import "
             "SnapshotStore; SnapshotStore(Path(sys.argv[1])).lease(sys.argv[2], 'cli').acquire()",
             str(store.root), str(scope)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
        assert other_process.returncode != 0 and "ScopeBusy" in other_process.stderr
    store.lease(scope, holder="a rollback").acquire().release()   # free once released


def test_a_dead_holder_gives_its_lease_back(scope: Path, store: SnapshotStore) -> None:
    subprocess.run([sys.executable, "-c", "import os, sys; from pathlib import Path; from hybrid_agent.rollback."
                    "snapshots import SnapshotStore; SnapshotStore(Path(sys.argv[1])).lease(sys.argv[2], 'w')"
                    ".acquire(); os._exit(0)", str(store.root), str(scope)], check=True,
                   cwd=Path(__file__).parents[2])
    store.lease(scope, holder="next").acquire().release()


def test_collection_frees_only_what_expired_snapshots_held(scope: Path, store: SnapshotStore) -> None:
    (scope / "shared.txt").write_text("in both")
    (scope / "old-only.txt").write_text("only in the old snapshot" * 100)
    old = store.create(scope)
    (scope / "old-only.txt").unlink()
    (scope / "new.txt").write_text("new")
    kept_state = tree_state(scope)
    kept = store.create(scope)
    report = store.collect_garbage({kept.manifest}, grace_s=0)
    assert report.objects_removed == 2   # old-only.txt's content and the old manifest
    with pytest.raises(SnapshotMissing):
        store.restore(old.manifest)
    (scope / "new.txt").write_text("changed")
    store.restore(kept.manifest)
    assert tree_state(scope) == kept_state


def test_recent_contents_survive_collection_within_the_grace_period(scope: Path, store: SnapshotStore) -> None:
    (scope / "a").write_text("a")
    store.create(scope)
    shutil.rmtree(scope)   # nothing keeps its contents but their age
    assert store.collect_garbage(set(), grace_s=600).objects_removed == 0
    assert store.collect_garbage(set(), grace_s=0).objects_removed == 2


def test_the_latest_manifest_of_a_scope_that_exists_is_kept(scope: Path, store: SnapshotStore) -> None:
    # The next incremental snapshot builds on it: collecting it would leave that one naming lost contents.
    (scope / "a").write_text("a")
    latest = store.create(scope)
    assert store.collect_garbage(set(), grace_s=0).objects_removed == 0
    (scope / "a").write_text("changed")
    store.restore(latest.manifest)
    assert (scope / "a").read_text() == "a"


def test_a_restore_with_missing_contents_changes_nothing(scope: Path, store: SnapshotStore) -> None:
    (scope / "a").write_text("a")
    snapshot = store.create(scope)
    digest = store.manifest(snapshot.manifest).entries["a"].digest
    os.unlink(store.objects.path(digest))
    (scope / "a").write_text("changed")
    (scope / "b").write_text("new")
    with pytest.raises(SnapshotMissing, match="nothing was changed"):
        store.restore(snapshot.manifest)
    assert (scope / "a").read_text() == "changed" and (scope / "b").exists()
