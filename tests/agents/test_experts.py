"""Experts propose tool calls besides the LLM. The code-edit expert repairs the code a
failing test's traceback implicates, with edits that apply and make the test pass; the
playbook expert recalls calls that succeeded on similar goals, adapted to the new goal's
file names; both are chosen by name."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hybrid_agent.agents.experts import (
    CodeEditExpert,
    ExpertContext,
    Playbook,
    PlaybookExpert,
    make_experts,
)
from hybrid_agent.agents.experts.playbook import adapt
from hybrid_agent.agents.sandbox import RlimitSandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.models.hrm.text import FakeHashEncoder
from hybrid_agent.models.llm.base import Candidate
from hybrid_agent.policies.tool_schema import validate_call
from hybrid_agent.store import queries
from hybrid_agent.store.tables import utcnow

UNITTEST = "python3 -m unittest"
# The project's pytest, without the plugins this repository's tests load.
PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"

AGE = """\
def is_adult(age):
    return age > 18


def can_vote(age):
    return age > 18
"""
AGE_TEST = """\
import unittest

from age import is_adult


class AgeTest(unittest.TestCase):
    def test_eighteen_is_adult(self):
        self.assertTrue(is_adult(18))
"""
ITEMS = """\
def last_items(xs, n):
    return [xs[i] for i in range(len(xs) - n, len(xs) + 1)]
"""
ITEMS_TEST = """\
from lib.items import last_items


def test_last_two():
    assert last_items([1, 2, 3], 2) == [2, 3]
"""


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run_tests(root: Path, cmd: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"]}
    return subprocess.run(cmd, shell=True, cwd=root, env=env, capture_output=True, text=True, timeout=60)


def runner(root: Path) -> ToolRunner:
    return ToolRunner(root, RlimitSandbox(max_output_chars=4000), timeout_s=60, max_output_chars=4000)


def fixes(candidate: Candidate, original: Path, scratch: Path, test_cmd: str) -> bool:
    """Apply the proposed edit to a copy of the project with the real tool runner, then
    rerun the tests there."""
    shutil.copytree(original, scratch)
    tools = runner(scratch)
    edited = tools.run(validate_call(candidate.parsed))
    assert edited.ok, edited.output
    return tools.run(validate_call({"tool": "run_tests", "args": {"cmd": test_cmd}})).ok


def failing_output(root: Path, cmd: str) -> str:
    result = run_tests(root, cmd)
    assert result.returncode != 0, "the project's test must fail before the repair"
    return result.stdout + result.stderr


class TestCodeEditExpert:
    def test_a_proposed_edit_makes_the_failing_unittest_pass(self, tmp_path: Path) -> None:
        root = project(tmp_path / "ws", {"age.py": AGE, "test_age.py": AGE_TEST})
        context = ExpertContext("make the tests pass", root, failing_output(root, UNITTEST), None)

        proposed = CodeEditExpert().propose(context, k=4)

        assert proposed and len(proposed) <= 4
        assert any(fixes(c, root, tmp_path / f"try{i}", UNITTEST) for i, c in enumerate(proposed))

    def test_proposals_are_unique_edits_of_the_code_under_test_best_first(self, tmp_path: Path) -> None:
        root = project(tmp_path / "ws", {"age.py": AGE, "test_age.py": AGE_TEST})
        context = ExpertContext("make the tests pass", root, failing_output(root, UNITTEST), None)

        proposed = CodeEditExpert().propose(context, k=8)

        for candidate in proposed:
            call = validate_call(candidate.parsed)
            assert call.tool == "edit" and candidate.text and candidate.tokens == 1 and candidate.error is None
            assert call.args["path"] == "age.py", "the test is the spec: never edited"
            # is_adult's line also occurs in can_vote: the edit must say which one it means.
            assert AGE.count(call.args["old"]) == 1 and "is_adult" in call.args["old"]
        assert [c.logprob for c in proposed] == sorted((c.logprob for c in proposed), reverse=True)
        assert proposed[0].parsed["args"]["new"].endswith("return age >= 18")
        assert proposed == CodeEditExpert().propose(context, k=8)

    def test_an_off_by_one_range_behind_a_pytest_traceback_is_repaired(self, tmp_path: Path) -> None:
        root = project(tmp_path / "ws", {"lib/__init__.py": "", "lib/items.py": ITEMS, "test_items.py": ITEMS_TEST})
        context = ExpertContext("make the tests pass", root, failing_output(root, PYTEST), None)

        proposed = CodeEditExpert().propose(context, k=6)

        assert {c.parsed["args"]["path"] for c in proposed} == {"lib/items.py"}
        assert any(fixes(c, root, tmp_path / f"try{i}", PYTEST) for i, c in enumerate(proposed))

    @pytest.mark.parametrize("observation", [None, "", "exit=1\nNo such file or directory: 'a.txt'"])
    def test_no_traceback_no_proposal(self, tmp_path: Path, observation: str | None) -> None:
        root = project(tmp_path / "ws", {"age.py": AGE})
        assert CodeEditExpert().propose(ExpertContext("g", root, observation, None), k=4) == []

    def test_frames_outside_the_workspace_are_ignored(self, tmp_path: Path) -> None:
        root = project(tmp_path / "ws", {"age.py": AGE})
        outside = project(tmp_path / "outside", {"helper.py": "def check(x):\n    return x > 1\n"})
        traceback = (
            "Traceback (most recent call last):\n"
            f'  File "{root / "age.py"}", line 2, in is_adult\n'
            f'  File "{outside / "helper.py"}", line 2, in check\n'
            '  File "../outside/helper.py", line 2, in check\n'
            "AssertionError\n")

        proposed = CodeEditExpert().propose(ExpertContext("g", root, traceback, None), k=20)

        assert proposed and {c.parsed["args"]["path"] for c in proposed} == {"age.py"}
        only_outside = traceback.replace(f'  File "{root / "age.py"}", line 2, in is_adult\n', "")
        assert CodeEditExpert().propose(ExpertContext("g", root, only_outside, None), k=20) == []

    def test_a_failing_assertion_with_nothing_of_the_workspace_behind_it_gets_no_edit(self, tmp_path: Path) -> None:
        test = "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_len(self):\n" \
               "        self.assertEqual(len('ab'), 3)\n"
        root = project(tmp_path / "ws", {"test_len.py": test})

        proposed = CodeEditExpert().propose(ExpertContext("g", root, failing_output(root, UNITTEST), None), k=4)

        assert proposed == [], "changing the test's expectation would only hide the failure"


COPY = {"tool": "shell", "args": {"cmd": "cp a.conf b.conf"}}
GZIP = {"tool": "shell", "args": {"cmd": "gzip app.log"}}
ROWS = [("Copy a.conf to b.conf", COPY), ("Compress app.log", GZIP)]


def context(goal: str) -> ExpertContext:
    return ExpertContext(goal, Path("/nonexistent"), None, None)


class TestPlaybookExpert:
    def test_recalls_the_call_of_the_most_similar_goal_adapted_to_its_file_names(self) -> None:
        expert = PlaybookExpert(Playbook.from_rows(ROWS, encoder=FakeHashEncoder()))

        proposed = expert.propose(context("Copy notes.txt to backup.txt"), k=4)

        assert [c.parsed for c in proposed] == [{"tool": "shell", "args": {"cmd": "cp notes.txt backup.txt"}}]
        assert proposed[0].logprob == pytest.approx(0.0, abs=1e-5)   # the same goal once names are masked
        assert validate_call(proposed[0].parsed).tool == "shell"

    def test_the_score_is_the_log_of_the_goals_similarity(self) -> None:
        playbook = Playbook.from_rows(ROWS, encoder=FakeHashEncoder(), min_similarity=0.1)

        recalled = dict((c["args"]["cmd"], s) for s, c in playbook.recall("Compress the old server.log", k=4))
        proposed = PlaybookExpert(playbook).propose(context("Compress the old server.log"), k=4)

        assert list(recalled)[0] == "gzip server.log" and 0.1 <= recalled["gzip server.log"] < 1
        assert [c.logprob for c in proposed] == pytest.approx([math.log(s) for s in recalled.values()])

    def test_goals_below_the_threshold_recall_nothing(self) -> None:
        playbook = Playbook.from_rows(ROWS, encoder=FakeHashEncoder(), min_similarity=0.7)
        assert PlaybookExpert(playbook).propose(context("Delete every temporary directory"), k=4) == []
        empty = Playbook.from_rows([], encoder=FakeHashEncoder())
        assert PlaybookExpert(empty).propose(context("Copy x.txt to y.txt"), k=4) == []

    def test_the_same_call_is_proposed_once_and_at_most_k(self) -> None:
        rows = [("Copy a.conf to b.conf", COPY),
                ("Copy c.conf to d.conf", {"tool": "shell", "args": {"cmd": "cp c.conf d.conf"}}),
                ("Copy a.conf to b.conf", {"tool": "read_file", "args": {"path": "b.conf"}})]
        expert = PlaybookExpert(Playbook.from_rows(rows, encoder=FakeHashEncoder()))

        assert [c.parsed for c in expert.propose(context("Copy x.txt to y.txt"), k=4)] == [
            {"tool": "shell", "args": {"cmd": "cp x.txt y.txt"}}, {"tool": "read_file", "args": {"path": "y.txt"}}]
        assert len(expert.propose(context("Copy x.txt to y.txt"), k=1)) == 1

    @pytest.mark.parametrize(("call", "old_goal", "new_goal", "adapted"), [
        ("mv x.txt y.txt", "Rename x.txt to y.txt", "Rename y.txt to z.txt", "mv y.txt z.txt"),   # no chaining
        ("cp a.conf a.conf.bak; cat data.conf", "Back up a.conf", "Back up notes.txt",
         "cp notes.txt notes.txt.bak; cat data.conf"),                                          # whole names only
        ("grep -c ERROR /var/log/app.log", "Count errors in app.log", "Count errors in logs/web.log",
         "grep -c ERROR /var/log/logs/web.log"),
        ("wc -l app.log", "Count lines in app.log", "Count lines of the report", "wc -l app.log"),  # nothing to pair
        ("sed -i 's|^WORKERS=.*|WORKERS=14|' .env",
         "Change the variable `WORKERS` in `.env` to `14`; nothing else may change.",
         "Change the variable `DB_HOST` in `services/api/.env` to `db-2.internal`; nothing else may change.",
         "sed -i 's|^DB_HOST=.*|DB_HOST=db-2.internal|' services/api/.env"),                    # quoted values
        ("sed -i '/^\\[server\\]/,/^\\[/{s|^workers *=.*|workers = 14|}' etc/app.ini",
         "In `etc/app.ini`, set `workers` in `[server]` to `14`.", "In `conf/db.ini`, set `host` in `[cache]` to `db-2`.",
         "sed -i '/^\\[cache\\]/,/^\\[/{s|^host *=.*|host = db-2|}' conf/db.ini"),              # a value's parts
        ("mkdir -p srv/search/shared/cache", "Create `shared/cache/` under `srv/search/`",
         "Create `releases/` under `srv/web/`", "mkdir -p srv/web/releases"),                     # folders
        ("find logs -mtime +30 -delete", "Delete what in `logs` is older than 30 days",
         "Delete what in `cache` is older than 7 days", "find cache -mtime +7 -delete"),           # numbers
        ("head -n 3 top.txt", "Keep the first 3 lines of top.txt", "Keep the first 10 lines of `all.txt`",
         "head -n 10 top.txt"),                                                                    # kinds do not mix
    ])
    def test_values_are_substituted_by_position_within_their_kind(self, call: str, old_goal: str, new_goal: str,
                                                                  adapted: str) -> None:
        shell: dict[str, Any] = {"tool": "shell", "args": {"cmd": call, "timeout_s": 5}}
        assert adapt(shell, old_goal, new_goal) == {"tool": "shell", "args": {"cmd": adapted, "timeout_s": 5}}

    def test_minilm_recalls_a_config_edit_for_the_same_edit_with_other_values(self) -> None:
        edit = {"tool": "shell", "args": {"cmd": "sed -i 's|^WORKERS=.*|WORKERS=14|' .env"}}
        rows = [("Change the value of the environment variable `WORKERS` in `.env` to `14`.", edit), *ROWS]

        proposed = PlaybookExpert(Playbook.from_rows(rows)).propose(
            context("Change the value of the environment variable `DB_HOST` in `app/.env` to `db-2.internal`."), k=4)

        assert [c.parsed for c in proposed] == [
            {"tool": "shell", "args": {"cmd": "sed -i 's|^DB_HOST=.*|DB_HOST=db-2.internal|' app/.env"}}]

    def test_minilm_recalls_the_copy_for_a_copy_goal(self) -> None:
        playbook = Playbook.from_rows(ROWS)   # the default encoder: MiniLM

        proposed = PlaybookExpert(playbook).propose(context("Copy notes.txt to backup.txt"), k=4)

        assert proposed and proposed[0].parsed == {"tool": "shell", "args": {"cmd": "cp notes.txt backup.txt"}}
        assert all("gzip" not in c.text for c in proposed)


def task(task_id: str, goal: str) -> dict[str, Any]:
    return {"id": task_id, "event_id": None, "goal": goal, "status": "queued", "workspace": None,
            "queue": "default", "requested_by": "test"}


def step(n: int, call: dict[str, Any] | None, ok: bool) -> dict[str, Any]:
    return {"n": n, "tool_call": call, "decision": "allow" if call else "none", "observation": "", "ok": ok,
            "candidates": [], "prompt_tokens": 1, "timings": {}, "started_at": utcnow(), "duration_s": 0.1}


FINISH = {"tool": "finish", "args": {"summary": "done", "success": True}}
LIST = {"tool": "list_dir", "args": {"path": "."}}
FAILED_GZIP = {"tool": "shell", "args": {"cmd": "gzip missing.log"}}


async def test_succeeded_steps_are_the_ok_steps_of_succeeded_tasks_newest_first(sessions) -> None:
    tasks = {"old": ("Copy a.conf to b.conf", "succeeded", [step(1, LIST, True), step(2, COPY, True),
                                                            step(3, FINISH, True)]),
             "failed": ("Compress app.log", "failed", [step(1, GZIP, True)]),
             "new": ("Compress app.log", "succeeded", [step(1, None, False), step(2, FAILED_GZIP, False),
                                                       step(3, GZIP, True), step(4, FINISH, True)])}
    for task_id, (goal, status, steps) in tasks.items():
        async with sessions.begin() as session:
            await queries.insert_events_and_tasks(session, events=[], tasks=[task(task_id, goal)])
            for s in steps:
                await queries.add_step(session, task_id=task_id, step=s)
        async with sessions.begin() as session:
            await queries.finish_task(session, task_id=task_id, status=status, result=None, error=None)

    async with sessions() as session:
        rows = await queries.succeeded_steps(session, limit=10)
        first = await queries.succeeded_steps(session, limit=2)

    assert rows == [("Compress app.log", GZIP), ("Copy a.conf to b.conf", LIST), ("Copy a.conf to b.conf", COPY)]
    assert first == rows[:2]


def test_experts_are_chosen_by_name() -> None:
    playbook = Playbook.from_rows([], encoder=FakeHashEncoder())
    assert [e.name for e in make_experts(["playbook", "code_edit"], playbook=playbook)] == ["playbook", "code_edit"]
    with pytest.raises(ValueError, match="unknown expert 'oracle'; valid: code_edit, playbook"):
        make_experts(["code_edit", "oracle"])
    with pytest.raises(ValueError, match="needs a Playbook"):
        make_experts(["playbook"])


INVENTORY = """class Inventory:
    def __init__(self, stock, reserved):
        self.stock, self.reserved = stock, reserved

    def available(self):
        return self.stock + self.reserved
"""
CI_REPORT = """CI failed on main: fix the code so the tests pass.

    def test_available():
        inventory = Inventory(5, 5)
>       assert inventory.available() == 0
E       assert 10 == 0

tests/test_inventory.py:5: AssertionError
"""


def test_a_ci_report_in_the_goal_leads_to_the_method_the_failing_test_called(tmp_path: Path) -> None:
    (tmp_path / "inventory.py").write_text(INVENTORY)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_inventory.py").write_text(
        "from inventory import Inventory\n\ndef test_available():\n    inventory = Inventory(5, 5)\n"
        "    assert inventory.available() == 0\n")
    # No observation yet: the failing frames are in the goal; the method is found through
    # the class the test imported, not by its name in the test file.
    proposed = CodeEditExpert().propose(ExpertContext(goal=CI_REPORT, workspace=tmp_path), 16)
    calls = [c.parsed for c in proposed]
    assert {"tool": "edit", "args": {"path": "inventory.py", "old": "        return self.stock + self.reserved",
                                     "new": "        return self.stock - self.reserved"}} in calls
    assert all(c["args"]["path"] == "inventory.py" for c in calls)   # never the test
