"""The load benchmark, small: two worker processes behind the real router on a private
embedded NATS and SQLite; every event ends as exactly one finished task, and the
processes stop by themselves. The lost and duplicated counts are measurements: fed a task
that never finished, or one run twice, they say so. Nothing about speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hybrid_agent.eval.load_bench import Sent, count_duplicated, execution_counts, phase_outcome, worker_timings
from hybrid_agent.store.tables import TaskRow

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_every_event_becomes_exactly_one_task_and_the_last_line_says_so(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hybrid_agent", "bench", "load", "--workers", "2",
                           "--events", "200", "--rate", "200"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    assert done.returncode == 0, done.stderr
    *table, last = done.stdout.splitlines()
    summary = json.loads(last)
    assert summary["lost"] == 0 and summary["duplicated"] == 0, summary
    assert summary["events"] == 200 and summary["fast_events"] == 200 and summary["workers"] == 2
    assert summary["rate"] == 200 and summary["database"] == "sqlite"
    assert summary["clean_exit"] is True   # router and workers exited 0 on SIGTERM
    for key in ("events_per_s", "p50_ms", "p99_ms", "ratio", "raw_p99_ms", "raw_msgs_per_s"):
        assert summary[key] > 0, key
    assert set(summary["worker_p99_ms"]) == {"wait", "start", "tool", "finish", "ack"}
    assert 1 <= summary["worker_batch_mean"]["fast"] <= 16   # what the workers took at once
    assert any(line.startswith("raw JetStream") for line in table)
    data_dir = tmp_path / ".hybrid-agent"   # HOME's default data dir: the run's folder went there, and is gone
    assert data_dir.is_dir() and not any(data_dir.iterdir())


def test_a_task_whose_tool_ran_twice_is_duplicated(tmp_path: Path) -> None:
    (tmp_path / "executions-worker-0.log").write_text("a\nb\n")
    (tmp_path / "executions-worker-1.log").write_text("b\nc\n")   # b redelivered and run again

    executions = execution_counts(tmp_path)

    assert executions == {"a": 1, "b": 2, "c": 1}
    assert count_duplicated({"a", "b", "c"}, executions, starts={}) == 1
    # The store's start count is the other witness: c started twice though its tool ran once.
    assert count_duplicated({"a", "b", "c"}, executions, starts={"a": 1, "c": 2}) == 2
    assert count_duplicated({"a", "c"}, executions, starts={}) == 0


def _task(task_id: str, *, status: str, started_ms: float | None, deliveries: int = 1) -> TaskRow:
    started = T0 + timedelta(milliseconds=started_ms) if started_ms is not None else None
    finished = started + timedelta(milliseconds=5) if started and status == "succeeded" else None
    return TaskRow(id=task_id, status=status, deliveries=deliveries, created_at=T0 + timedelta(milliseconds=1),
                   started_at=started, finished_at=finished)


def test_a_phase_counts_tasks_that_never_finished_as_lost_and_measures_from_the_event(tmp_path: Path) -> None:
    sent = Sent("fixed", {"a": T0, "b": T0, "c": T0, "d": T0})
    rows = {"a": _task("a", status="succeeded", started_ms=10), "b": _task("b", status="succeeded", started_ms=30),
            "c": _task("c", status="running", started_ms=20)}   # c never finished, d never became a task
    # Stage ms per task, then how many messages its worker took with it.
    (tmp_path / "timings-worker-0.tsv").write_text("a\t1\t2\t3\t4\t5\t1\nb\t1\t2\t3\t4\t5\t3\n")

    phase = phase_outcome(sent, rows, execution_counts(tmp_path), worker_timings(tmp_path))

    assert phase.events == 4 and phase.lost == 2 and phase.duplicated == 0
    assert (phase.p50_ms, phase.p99_ms) == (20, 30)   # started tasks only: 10, 20, 30 ms after their events
    assert phase.route_p99_ms == 1 and phase.pickup_p99_ms == 29
    assert phase.stages["tool"] == (3, 3) and phase.batch_mean == 2
