"""Training examples for the HRM: a state, the tool taken next, the proposer to trust for
it, and whether the task failed within the next few steps.

Real examples come from the agent's traces (``load_traces``). Until there are enough,
``synthetic`` rolls out a scripted agent on five task kinds, with structure a model can
learn and must read the whole state for:

- the first tool follows the goal's wording (create -> write_file, count/compress ->
  shell, show -> read_file, fix tests -> run_tests): only the goal text tells;
- after a success, the kind's playbook goes on from the last tool (tests: read_file ->
  edit -> run_tests -> finish; logs: shell, shell, finish; ...);
- after a failure, the error class picks the recovery (FileNotFoundError -> list_dir,
  AssertionError -> read_file, SyntaxError or an edit that found no match -> edit or
  read_file, a timeout -> the same tool again, PermissionError -> finish);
- a tenth of the recorded next tools are random (the proposer strayed): about 0.9 is the
  best accuracy there is;
- the expert is code_edit for edits in test fixing, playbook for routine log
  maintenance, the LLM otherwise;
- a task fails after three failures in a row, on PermissionError, or at its step limit;
  ``failed_soon`` marks the states at most ``HORIZON`` steps before such an end, so that
  risk rises with recent failures and a spent budget."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hybrid_agent.models.hrm.state import KNOWN_TOOLS, RECENT, RecentStep, StepState

TOOLS = KNOWN_TOOLS
EXPERTS = ("llm", "code_edit", "playbook")
HORIZON = 3      # failed_soon: the task fails within this many steps
NOISE = 0.1      # share of random next tools


@dataclass(frozen=True)
class Example:
    state: StepState
    next_tool: str
    expert: str | None       # None: not recorded (no expert loss)
    failed_soon: bool


FILES = ("app.log", "report.csv", "notes.txt", "config.yaml", "main.py", "utils.py", "data.json")
# (kind, wording, first tool); {f} is a file name.
GOALS = (
    ("files", ("Create {f} with a short greeting", "Write a new file {f}", "Make a file called {f}"), "write_file"),
    ("files", ("Copy {f} into a new folder backup", "Rename {f} to old-{f}", "Move {f} into archive/"), "shell"),
    ("logs", ("Count the ERROR lines in {f}", "Compress the logs older than a week",
              "Free disk space under /var/log", "Rotate {f} and keep five copies"), "shell"),
    ("inspect", ("Show the first lines of {f}", "What does {f} contain?", "Print {f}"), "read_file"),
    ("inspect", ("List what is in the workspace", "Which files are in this folder?"), "list_dir"),
    ("tests", ("Fix the failing test in test_{f}", "Make the test suite pass",
               "The CI run failed: repair it"), "run_tests"),
    ("script", ("Write a python script that sums {f}", "Create a script that parses {f}"), "write_file"),
)
PLAYBOOK = {   # kind -> tool -> the next tool after it succeeded
    "files": {"write_file": "finish", "shell": "list_dir", "list_dir": "finish"},
    "logs": {"list_dir": "shell"},
    "inspect": {"read_file": "finish", "list_dir": "read_file"},
    "tests": {"run_tests": "read_file", "read_file": "edit", "edit": "run_tests"},
    "script": {"write_file": "python", "python": "finish", "edit": "python", "read_file": "edit"},
}
RECOVERY = {"FileNotFoundError": "list_dir", "AssertionError": "read_file", "SyntaxError": "edit",
            "NoMatch": "read_file", "PermissionError": "finish"}
ERRORS = {  # tool -> (error class, exit code) it can fail with
    "shell": (("FileNotFoundError", 1), ("timeout", 124), ("PermissionError", 1)),
    "python": (("SyntaxError", 1), ("FileNotFoundError", 1)),
    "run_tests": (("AssertionError", 1),),
    "read_file": (("FileNotFoundError", None),),
    "edit": (("NoMatch", None), ("SyntaxError", None)),
    "write_file": (("PermissionError", None),),
    "list_dir": (("FileNotFoundError", None),),
}


def scripted_next(kind: str, first: str, recent: list[RecentStep]) -> str:
    """The scripted agent's next tool: a function of what the state shows."""
    recent = recent[-RECENT:]
    if not recent:
        return first
    last = recent[-1]
    if not last.ok:
        return last.tool if last.error_class == "timeout" else RECOVERY.get(last.error_class or "", "list_dir")
    if kind == "tests" and last.tool == "run_tests" and any(not s.ok for s in recent[:-1]):
        return "finish"          # the tests pass after having failed: done
    if kind == "logs" and last.tool == "shell":
        return "finish" if sum(s.tool == "shell" and s.ok for s in recent) >= 2 else "shell"
    return PLAYBOOK[kind].get(last.tool, "finish")


def expert_for(kind: str, tool: str) -> str:
    if kind == "tests" and tool == "edit":
        return "code_edit"
    return "playbook" if kind == "logs" else "llm"


def synthetic(n: int, seed: int = 0) -> list[Example]:
    """About ``n`` examples from rolled-out tasks (a task's last states may overrun n)."""
    rng = random.Random(seed)
    examples: list[Example] = []
    while len(examples) < n:
        kind, wordings, first = rng.choice(GOALS)
        goal = rng.choice(wordings).format(f=rng.choice(FILES))
        max_steps = rng.randint(4, 12)
        recent: list[RecentStep] = []
        states: list[tuple[StepState, str, str]] = []
        failed = False
        while True:
            tool = scripted_next(kind, first, recent)
            if rng.random() < NOISE:
                tool = rng.choice(TOOLS)
            states.append((StepState(goal, kind, len(recent), max_steps, list(recent)), tool, expert_for(kind, tool)))
            if tool == "finish":
                break
            if kind == "tests" and not recent and tool == "run_tests":
                recent.append(RecentStep(tool, False, 1, "AssertionError"))   # the failing test to fix
            else:
                recent.append(_outcome(tool, rng, failure_rate=0.25))
            streak = len(recent) - max([i + 1 for i, s in enumerate(recent) if s.ok], default=0)
            if streak >= 3 or recent[-1].error_class == "PermissionError" or len(recent) >= max_steps:
                failed = True
                break
        end = len(states)
        examples += [Example(state, tool, expert, failed and end - i <= HORIZON)
                     for i, (state, tool, expert) in enumerate(states)]
    return examples


def _outcome(tool: str, rng: random.Random, failure_rate: float) -> RecentStep:
    if tool not in ERRORS or rng.random() >= failure_rate:
        return RecentStep(tool, True, 0 if tool in ("shell", "python", "run_tests") else None)
    error, code = rng.choice(ERRORS[tool])
    return RecentStep(tool, False, code, error)


def load_traces(path: Path) -> list[Example]:
    """JSONL, one step a line: ``{"state": {"goal", "task_kind", "step", "max_steps",
    "recent": [{"tool", "ok", "exit_code", "error_class"}, ...]}, "next_tool": NAME,
    "expert": NAME or null, "failed_soon": bool}``; ``recent`` oldest first."""
    examples = []
    for number, row in enumerate(_jsonl(path), start=1):
        try:
            s = row["state"]
            recent = [RecentStep(r["tool"], bool(r["ok"]), r.get("exit_code"), r.get("error_class"))
                      for r in s.get("recent", [])]
            state = StepState(s["goal"], s["task_kind"], int(s["step"]), int(s["max_steps"]), recent)
            examples.append(Example(state, row["next_tool"], row.get("expert"), bool(row["failed_soon"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not an HRM trace step: {exc!r}") from exc
    return examples


def _jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as lines:
        yield from (json.loads(line) for line in lines if line.strip())
