"""Ten simple file goals through the real stack and the real default model. The outcome is
judged from the workspace, not from the model's own claim; most must succeed. Where the
policy holds a call for a human (deleting a file), the test plays an approver who approves
whatever is pending and runs it, as approval will once the approvals issue resumes tasks; a
held destructive call then fails its goal by what it does."""

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, running_stack
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.config import Settings
from hybrid_agent.policies.tool_schema import ToolCall

pytestmark = pytest.mark.llm


@dataclass(frozen=True)
class Goal:
    goal: str
    setup: dict[str, str]
    check: Callable[[Path], bool]


def text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


GOALS = [
    Goal("Create a file named notes.txt containing the word todo", {}, lambda w: "todo" in text(w / "notes.txt")),
    Goal("Create a directory named reports", {}, lambda w: (w / "reports").is_dir()),
    Goal("Write the number 42 into a file named answer.txt", {}, lambda w: "42" in text(w / "answer.txt")),
    Goal("Copy data.csv to backup.csv", {"data.csv": "a,b\n1,2\n"},
         lambda w: text(w / "backup.csv") == "a,b\n1,2\n" and (w / "data.csv").exists()),
    Goal("Rename old.log to new.log", {"old.log": "line\n"},
         lambda w: text(w / "new.log") == "line\n" and not (w / "old.log").exists()),
    Goal("Delete the file junk.tmp", {"junk.tmp": "x", "keep.txt": "k"},
         lambda w: not (w / "junk.tmp").exists() and (w / "keep.txt").exists()),
    Goal("Count the lines of input.txt and write the number to count.txt", {"input.txt": "a\nb\nc\n"},
         lambda w: text(w / "count.txt").strip() == "3"),
    Goal("Make a folder named archive and move report.txt into it", {"report.txt": "r\n"},
         lambda w: text(w / "archive" / "report.txt") == "r\n" and not (w / "report.txt").exists()),
    Goal("Append the line done to status.txt", {"status.txt": "started\n"},
         lambda w: text(w / "status.txt").splitlines() == ["started", "done"]),
    Goal("Compress app.log with gzip", {"app.log": "event\n" * 50},
         lambda w: (w / "app.log.gz").is_file() and gzip.decompress((w / "app.log.gz").read_bytes()) == b"event\n" * 50),
]


@pytest.fixture
async def sqlite_stack(tmp_path, embedded_nats, default_llm):
    settings = Settings(data_dir=tmp_path / "data", nats_url=embedded_nats, max_steps=5, tool_timeout_s=20,
                        workspace_roots=[tmp_path])
    async with running_stack(settings, default_llm) as running:
        yield running


async def test_most_simple_file_goals_succeed(sqlite_stack: Stack, tmp_path):
    rows = []
    for i, goal in enumerate(GOALS):
        workspace = tmp_path / f"goal{i}"
        workspace.mkdir()
        for name, content in goal.setup.items():
            (workspace / name).write_text(content)
        task = await sqlite_stack.run_task(goal.goal, workspace)
        calls = [step["tool_call"] for step in task["steps"]]
        status = task["status"]
        if status == "awaiting_approval":
            approve_and_run(task["result"]["pending"]["call"], workspace, sqlite_stack.settings)
            status = "approved"
        rows.append((goal.goal, goal.check(workspace), status, len(calls), calls))
    print("\n" + "\n".join(f"{'PASS' if ok else 'fail'}  {status:<10} {n} steps  {g}\n      {calls}"
                           for g, ok, status, n, calls in rows))
    passed = sum(ok for _, ok, *_ in rows)
    assert passed >= 6, f"only {passed}/10 goals reached"


def approve_and_run(call: dict, workspace: Path, settings: Settings) -> None:
    sandbox = make_sandbox(settings.sandbox, max_output_chars=settings.max_output_chars)
    ToolRunner(workspace, sandbox, timeout_s=settings.tool_timeout_s, max_output_chars=2000).run(ToolCall(**call))
