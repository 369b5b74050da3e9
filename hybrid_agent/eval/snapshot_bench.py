"""The snapshot benchmark: our incremental snapshot of a tree with a few files changed,
against the two other ways to keep such a tree: `cp -a` of the whole of it, and an
incremental ``git add -A && git commit`` of the same change in a repository that already
holds it.

The tree (``files`` files of varied sizes in nested folders, ``total_mb`` of random bytes,
the same for a given seed) is built once; then, untimed, our first (full) snapshot of it is
taken and git commits it whole, in a git dir outside the tree so that neither our scan nor
`cp -a` sees git's files. Each repeat rewrites a fresh ``changed_fraction`` of the files
(same size, new bytes), then times the three methods on that one state of the tree; the
summary has each method's median. Everything is in the page cache (the tree was just
written): what is compared is the work each method does, not the disk."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hybrid_agent.rollback.manifest import RACY_NS
from hybrid_agent.rollback.snapshots import SnapshotStore

GOAL_RATIO = 20
DIRS = 40
SEED = 0
# A file written within RACY_NS of a scan is re-read by the next one, as git re-reads its
# racily clean index entries: the benchmark lets the tree settle for longer than that
# before each scan, so an incremental snapshot reads only the files that changed (the
# wait is before all three timings, and spares git's index the same re-reads).
SETTLE_S = 2 * RACY_NS / 1e9
T = TypeVar("T")
GIT_IDENTITY = ("-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "commit.gpgsign=false")


class SnapshotBenchError(RuntimeError):
    """git or cp is missing or failed: the comparison cannot be made."""


@dataclass(frozen=True)
class RepeatTiming:
    cp_s: float
    git_s: float
    ours_s: float
    files_read: int
    bytes_stored: int


@dataclass(frozen=True)
class SnapshotBenchResult:
    files: int
    total_bytes: int
    changed_files: int
    full_s: float                 # our first, full snapshot: not part of the comparison
    repeats: list[RepeatTiming]

    @property
    def summary(self) -> dict[str, Any]:
        """Medians over the repeats; ``files_read`` and ``bytes_stored`` are the most any
        one incremental snapshot read and stored."""
        cp_s, git_s, ours_s = (round(statistics.median(getattr(r, name) for r in self.repeats), 6)
                               for name in ("cp_s", "git_s", "ours_s"))
        ratio = round(cp_s / ours_s, 2)
        return {"cp_s": cp_s, "git_s": git_s, "ours_s": ours_s, "ratio": ratio, "files": self.files,
                "total_mb": round(self.total_bytes / 1e6, 2), "changed_files": self.changed_files,
                "files_read": max(r.files_read for r in self.repeats),
                "bytes_stored": max(r.bytes_stored for r in self.repeats), "full_s": round(self.full_s, 6),
                "repeats": len(self.repeats), "goal_ratio_met": ratio >= GOAL_RATIO,
                "goal_below_git_met": ours_s < git_s}


def build_tree(root: Path, rng: random.Random, *, files: int, total_bytes: int) -> list[Path]:
    """``files`` files of long-tailed sizes summing to about ``total_bytes`` in ``DIRS``
    nested folders below ``root``; returns the files."""
    dirs = [root]
    for i in range(DIRS):
        folder = rng.choice(dirs) / f"d{i:02d}"
        folder.mkdir(parents=True)
        dirs.append(folder)
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    scale = total_bytes / sum(weights)
    paths = []
    for i, weight in enumerate(weights):
        path = rng.choice(dirs) / f"f{i:04d}.bin"
        path.write_bytes(rng.randbytes(max(1, round(weight * scale))))
        paths.append(path)
    return paths


def change_files(paths: list[Path], rng: random.Random, count: int) -> None:
    """Rewrite ``count`` of ``paths`` in place with new bytes of the same size."""
    for path in rng.sample(paths, count):
        path.write_bytes(rng.randbytes(path.stat().st_size))


def git(git_dir: Path, tree: Path, *args: str) -> None:
    """Run git on the repository at ``git_dir`` whose work tree is ``tree``, with git's
    defaults: the user's and the system's configuration are left out."""
    env = {**os.environ, "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(tree), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": os.devnull}
    done = subprocess.run(["git", *GIT_IDENTITY, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SnapshotBenchError(f"git {args[0]} failed: {done.stderr.strip()}")


def commit(git_dir: Path, tree: Path, message: str) -> None:
    git(git_dir, tree, "add", "-A")
    git(git_dir, tree, "commit", "-q", "-m", message)


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``action`` took, and what it returned."""
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def run_snapshot_benchmark(*, files: int = 2000, total_mb: float = 50, changed_fraction: float = 0.01,
                           repeats: int = 3, workdir: Path | None = None) -> SnapshotBenchResult:
    """Build the tree in ``workdir`` (default: a temporary folder, removed after) and time
    our incremental snapshot, `cp -a` and git's incremental commit ``repeats`` times."""
    for tool in ("git", "cp"):
        if shutil.which(tool) is None:
            raise SnapshotBenchError(f"the snapshot benchmark needs `{tool}` on PATH")
    if workdir is not None:
        return _run(workdir, files, total_mb, changed_fraction, repeats)
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as tmp:
        return _run(Path(tmp), files, total_mb, changed_fraction, repeats)


def _run(workdir: Path, files: int, total_mb: float, changed_fraction: float, repeats: int) -> SnapshotBenchResult:
    rng = random.Random(SEED)
    tree, git_dir, copy = workdir / "tree", workdir / "repo.git", workdir / "copy"
    paths = build_tree(tree, rng, files=files, total_bytes=round(total_mb * 1e6))
    store = SnapshotStore(workdir / "store")
    git(git_dir, tree, "init", "-q")
    time.sleep(SETTLE_S)
    full_s, _ = timed(lambda: store.create(tree))
    commit(git_dir, tree, "tree")
    count = max(1, round(files * changed_fraction))
    timings = []
    for _ in range(repeats):
        change_files(paths, rng, count)
        time.sleep(SETTLE_S)
        ours_s, snapshot = timed(lambda: store.create(tree))
        git_s, _ = timed(lambda: commit(git_dir, tree, "change"))
        cp_s, _ = timed(lambda: subprocess.run(["cp", "-a", str(tree), str(copy)], check=True))
        shutil.rmtree(copy)
        timings.append(RepeatTiming(cp_s, git_s, ours_s, snapshot.files_read, snapshot.bytes_stored))
    return SnapshotBenchResult(files, sum(p.stat().st_size for p in paths), count, full_s, timings)


def table(result: SnapshotBenchResult) -> str:
    """One row per method: median seconds and how many times ours it took."""
    summary = result.summary
    rows = [("ours (incremental snapshot)", summary["ours_s"]), ("git add -A && git commit", summary["git_s"]),
            ("cp -a", summary["cp_s"])]
    lines = [f"{'method':<30}{'seconds':>10}{'vs ours':>10}"]
    lines += [f"{name:<30}{seconds:>10.4f}{seconds / summary['ours_s']:>9.1f}x" for name, seconds in rows]
    return "\n".join(lines)
