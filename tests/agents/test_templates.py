"""Task templates around the agent's loop: a disk cleanup reports the space it freed, a
health check does nothing while its probe passes and verifies the probe after a fix, and
a CI task that cannot reproduce its failure stops before the agent starts."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from hybrid_agent.store import queries
from tests.agents.conftest import call, queue_task
from tests.worker_support import finished, run_worker_until

DAY_S = 86400


async def ended(sessions, task_id: str):
    async with sessions() as session:
        task = await queries.get_task(session, task_id=task_id)
        steps = await queries.get_steps(session, task_id=task_id)
        prepared = await queries.journal_entry(session, task_id=task_id, kind="task.prepared")
    return task, steps, prepared


def old(path: Path, days: int) -> None:
    stamp = time.time() - days * DAY_S
    os.utime(path, (stamp, stamp))


async def test_a_disk_cleanup_shows_what_uses_the_space_and_reports_what_it_freed(
        tmp_path, sessions, embedded_bus, scripted_worker):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("current\n" * 100)
    (logs / "app.log.1").write_text("rotated line\n" * 5000)
    old(logs / "app.log.1", 10)
    await queue_task(sessions, embedded_bus, "disk", goal="free space", workspace=str(logs),
                     template="disk_pressure", params={"roots": [str(logs)], "older_than_days": 7})
    script = [call("shell", cmd="gzip -n app.log.1"), call("finish", summary="compressed", success=True)]
    await run_worker_until(scripted_worker(script), lambda: finished(sessions, "disk"))
    task, _, prepared = await ended(sessions, "disk")
    assert "65,000  app.log.1" in prepared.detail["goal"] and "bytes are used here" in prepared.detail["goal"]
    after = sum(path.stat().st_size for path in logs.iterdir())
    assert task.status == "succeeded"
    assert task.result["bytes_before"] == 65_800 and task.result["bytes_after"] == after
    assert task.result["freed_bytes"] == 65_800 - after > 60_000
    assert task.result["summary"] == f"freed {65_800 - after:,d} bytes (65,800 -> {after:,d})"


async def test_a_passing_probe_ends_the_health_task_without_running_the_agent(
        tmp_path, sessions, embedded_bus, scripted_worker):
    service = tmp_path / "svc"
    service.mkdir()
    (service / "healthy").write_text("ok")
    await queue_task(sessions, embedded_bus, "probe-ok", workspace=str(service), template="service_health",
                     params={"probe": "test -f healthy", "service": "web"})
    llm_script: list = []
    await run_worker_until(scripted_worker(llm_script), lambda: finished(sessions, "probe-ok"))
    task, steps, _ = await ended(sessions, "probe-ok")
    assert task.status == "succeeded" and steps == []
    assert task.result["summary"] == "the probe `test -f healthy` passes; nothing to do"


async def test_a_failing_probe_is_fixed_and_verified(tmp_path, sessions, embedded_bus, scripted_worker):
    service = tmp_path / "svc"
    service.mkdir()
    (service / "app.conf").write_text("port=80x\n")
    probe = "grep -qx port=8080 app.conf"
    await queue_task(sessions, embedded_bus, "probe-fix", workspace=str(service), template="service_health",
                     params={"probe": probe, "service": "web"})
    script = [call("edit", path="app.conf", old="port=80x", new="port=8080"), call("finish", summary="fixed",
                                                                                     success=True)]
    await run_worker_until(scripted_worker(script), lambda: finished(sessions, "probe-fix"))
    task, _, prepared = await ended(sessions, "probe-fix")
    assert f"The health probe `{probe}` of web fails." in prepared.detail["goal"]
    assert task.status == "succeeded" and task.result["probe"] == "passes"


async def test_a_fix_the_probe_still_fails_after_is_rolled_back(tmp_path, sessions, embedded_bus, scripted_worker):
    service = tmp_path / "svc"
    service.mkdir()
    (service / "app.conf").write_text("port=80x\n")
    await queue_task(sessions, embedded_bus, "probe-bad", workspace=str(service), template="service_health",
                     params={"probe": "grep -qx port=8080 app.conf"})
    script = [call("edit", path="app.conf", old="port=80x", new="port=9090"), call("finish", summary="fixed",
                                                                                     success=True)]
    await run_worker_until(scripted_worker(script), lambda: finished(sessions, "probe-bad"))
    task, _, _ = await ended(sessions, "probe-bad")
    assert task.status == "rolled_back" and task.error.startswith("the probe still fails")
    assert (service / "app.conf").read_text() == "port=80x\n"


async def test_a_ci_failure_that_does_not_reproduce_stops_before_the_agent(
        tmp_path, sessions, embedded_bus, scripted_worker):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=d", "-c", "user.email=d@x", "commit", "-qm", "ok"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    await queue_task(sessions, embedded_bus, "ci", template="ci_remediation",
                     params={"repo": str(repo), "test_cmd": "python3 -m pytest -q -p no:cacheprovider"})
    await run_worker_until(scripted_worker([]), lambda: finished(sessions, "ci"))
    task, steps, _ = await ended(sessions, "ci")
    assert task.status == "failed" and steps == []
    assert task.error == "the failure does not reproduce: `python3 -m pytest -q -p no:cacheprovider` passes at HEAD"


async def test_a_repository_that_cannot_be_cloned_fails_the_task_saying_why(
        tmp_path, sessions, embedded_bus, scripted_worker):
    await queue_task(sessions, embedded_bus, "ci-gone", template="ci_remediation",
                     params={"repo": str(tmp_path / "no-such-repo")})
    await run_worker_until(scripted_worker([]), lambda: finished(sessions, "ci-gone"))
    task, _, _ = await ended(sessions, "ci-gone")
    assert task.status == "failed" and task.error.startswith("git clone --quiet failed: fatal:")
