"""The snapshot benchmark on a tiny tree: the summary has its fields with positive times,
each incremental snapshot read exactly the changed files (the benchmark lets the tree
settle past the racy window before each scan), and the ratio is cp_s / ours_s. Nothing
about which method is faster is asserted: that depends on the machine and its load."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from hybrid_agent.eval.snapshot_bench import run_snapshot_benchmark, table

TIMES = ("cp_s", "git_s", "ours_s", "ratio", "full_s")


def test_a_tiny_tree_through_all_three_methods(tmp_path: Path) -> None:
    result = run_snapshot_benchmark(files=60, total_mb=1, changed_fraction=0.05, repeats=2, workdir=tmp_path)

    summary = json.loads(json.dumps(result.summary))  # what the last line prints
    for key in TIMES:
        assert math.isfinite(summary[key]) and summary[key] > 0, (key, summary)
    assert summary["files"] == 60 and summary["changed_files"] == 3 and summary["repeats"] == 2
    assert abs(summary["total_mb"] - 1) < 0.01
    assert [r.files_read for r in result.repeats] == [3, 3]
    assert summary["files_read"] == 3 and summary["bytes_stored"] > 0
    assert math.isclose(summary["ratio"], summary["cp_s"] / summary["ours_s"], abs_tol=0.005)
    assert summary["goal_ratio_met"] == (summary["ratio"] >= 20)
    assert summary["goal_below_git_met"] == (summary["ours_s"] < summary["git_s"])
    assert len(table(result).splitlines()) == 4  # a header and one row per method
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo.git", "store", "tree"]  # the copy is gone


def test_the_same_seed_builds_the_same_tree(tmp_path: Path) -> None:
    for name in ("a", "b"):
        run_snapshot_benchmark(files=20, total_mb=0.2, repeats=1, workdir=tmp_path / name)
    trees = [{p.relative_to(tmp_path / name / "tree"): p.read_bytes() for p in (tmp_path / name / "tree").rglob("*")
              if p.is_file()} for name in ("a", "b")]
    assert len(trees[0]) == 20 and trees[0] == trees[1]


def test_the_cli_prints_a_table_then_the_summary_as_json(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hybrid_agent", "bench", "snapshot", "--files", "40", "--mb", "0.5"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    *rows, last = done.stdout.splitlines()
    summary = json.loads(last)
    assert summary["files"] == 40 and summary["changed_files"] == 1 and summary["files_read"] == 1
    assert rows[0].split()[0] == "method" and len(rows) == 4
