"""The operations task pack (task_packs/os.jsonl): its shape (families, splits, ids,
solutions), that it is exactly what its generator produces, and that every task works:
setup succeeds, the check fails on the untouched fixtures, the reference solution
succeeds, and then the check passes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from hybrid_agent.eval.packs import Task, run_script
from tests.task_packs.pack_support import generator, pack_path, solutions, solutions_path, tasks

PACK = pack_path("os")
SOLUTIONS = solutions_path("os")
TASKS = tasks("os")
SOLUTION = solutions("os")


def _generator() -> ModuleType:
    return generator("os")


def _families(split: str | None = None) -> Counter[str]:
    return Counter(t.family for t in TASKS.values() if split is None or t.split == split)


def test_size_and_families() -> None:
    assert len(TASKS) >= 150
    assert len(_families()) >= 12
    assert min(_families().values()) >= 8


def test_ids_unique_and_named_after_their_family() -> None:
    lines = [line for line in PACK.read_text().splitlines() if line.strip()]
    assert len(lines) == len(TASKS)
    for task in TASKS.values():
        assert re.fullmatch(rf"os-{re.escape(task.family)}-\d{{3}}", task.id), task.id


def test_every_task_has_exactly_one_solution() -> None:
    lines = [line for line in SOLUTIONS.read_text().splitlines() if line.strip()]
    assert len(lines) == len(SOLUTION)
    assert set(SOLUTION) == set(TASKS)


def test_splits() -> None:
    train, test = _families("train"), _families("test")
    test_only = set(test) - set(train)
    assert len(test_only) >= 3, test_only
    assert not set(train) - set(test), "every training family is also tested"
    for family in set(train) & set(test):
        share = train[family] / (train[family] + test[family])
        assert 0.5 <= share <= 0.7, (family, share)


def test_destructive_tasks_are_tagged() -> None:
    tagged = [t for t in TASKS.values() if "destructive" in t.tags]
    assert len(tagged) >= 20
    assert all(set(t.tags) <= {"destructive"} for t in TASKS.values())


def test_goals_vary_within_each_family() -> None:
    for family in _families():
        goals = {t.goal for t in TASKS.values() if t.family == family}
        assert len(goals) == _families()[family], family


def test_generator_reproduces_the_files_exactly() -> None:
    pack, solutions = _generator().build()
    assert "\n".join(pack) + "\n" == PACK.read_text()
    assert "\n".join(solutions) + "\n" == SOLUTIONS.read_text()


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_task_setup_check_and_solution(task_id: str, tmp_path: Path) -> None:
    task: Task = TASKS[task_id]
    setup = run_script(task.setup, tmp_path, timeout_s=30)
    assert setup.ok, f"setup failed: {setup.output}"
    before = run_script(task.check, tmp_path, timeout_s=30)
    assert not before.ok, "the check passes before anything was done"
    solved = run_script(SOLUTION[task_id], tmp_path, timeout_s=30)
    assert solved.ok, f"reference solution failed: {solved.output}"
    after = run_script(task.check, tmp_path, timeout_s=30)
    assert after.ok, f"the check fails after the reference solution: {after.output}"


# Plausible but wrong answers (matching words instead of fields, editing every matching
# line, losing hidden files, ...) that each task's check must reject. They name tasks by id,
# so they follow the generated pack: regenerating with other parameters may need new ones.
SLOPPY = {
    "os-logcount-001": "grep -c WARN logs/app.log > count.txt",
    "os-logcount-005": "grep -c FATAL logs/postgresql.log > count.txt",
    "os-logcount-009": "grep -c '\\[crit\\]' logs/nginx/error.log > answer.txt",
    "os-logcount-010": "zcat -f srv/billing/log/worker.log* | grep -c ERROR > all_logs_count.txt",
    "os-accesslog-003": "grep -cE ' 5[0-9]{2} ' logs/nginx/access.log > server_errors.txt",
    "os-accesslog-005": "grep /api/orders logs/nginx/access.log | awk '{s += $10} END {print s}' > bytes_total.txt",
    "os-ini-003": "sed -i 's/^port = .*/port = 6380/' config/app.ini",
    "os-ini-004": "echo 'connect_timeout = 15' >> config/app.ini",
    "os-envfile-007": "sed -i 's/DB_HOST=.*/DB_HOST=db-2.internal/' services/notifier/.env",
    "os-envfile-009": "sed -i '/DB_HOST/d' services/ledger/.env",
    "os-yamlconf-002": "sed -i 's/replicas: .*/replicas: 9/' docker-compose.yml",
    "os-yamlconf-004": "echo '    restart: unless-stopped' >> docker-compose.yml",
    "os-findfiles-003": "rm -f project/*.bak project/*/*.bak project/*/*/*.bak",
    "os-rotate-001": "rm logs/worker.log.*",
    "os-archive-001": "mkdir -p backups && tar -czf backups/site.tar.gz -C site/public .",
    "os-archive-005": "unzip -o -q backups/etc-backup.zip",
    "os-jsonconf-001": "jq '.service.workers = \"12\"' app/config.json > x && mv x app/config.json",
    "os-csvfix-004": "(head -1 data/orders.csv; tail -n +2 data/orders.csv | sort -t, -k4) > data/orders_sorted.csv",
    "os-perms-003": "chmod -R 700 private",
    "os-housekeep-001": "cd scans/incoming && for f in *.*; do e=${f##*.}; mkdir -p $e; mv $f $e/; done",
    "os-diskusage-001": "du -sk home/* | sort -rn | head -3 > space.txt",
    "os-cron-004": "echo '*/10 * * * * /usr/local/bin/sync-assets --bucket static' >> ops/crontab.txt",
    "os-git-003": "cd projects/api && git tag v1.7.5",
    "os-script-004": "mkdir -p scripts; printf '#!/bin/sh\\ngrep -q \"status: ok\" \"$1\"\\n' > scripts/check_status.sh; "
                     "chmod +x scripts/check_status.sh",
}


@pytest.mark.parametrize("task_id", sorted(SLOPPY))
def test_check_rejects_a_sloppy_answer(task_id: str, tmp_path: Path) -> None:
    task = TASKS[task_id]
    assert run_script(task.setup, tmp_path, timeout_s=30).ok
    run_script(SLOPPY[task_id], tmp_path, timeout_s=30)
    assert not run_script(task.check, tmp_path, timeout_s=30).ok
