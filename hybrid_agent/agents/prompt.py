"""The chat prompt for one step: tool descriptions, one-call examples on names unlike real
goals (so the model learns the format and the fitting tool, not a goal's commands), the
goal with the workspace listing, and the steps so far. Built to fit a budget of characters; what was dropped is
said in the prompt itself."""

from __future__ import annotations

import json
from dataclasses import dataclass

SYSTEM = (
    "You are an operations agent working inside a workspace directory. Reach the goal with tool calls. "
    "Reply with exactly one tool call as JSON. Use the exact file names of the goal.\n"
    "Tools: shell {cmd} runs a bash command; write_file {path,content} writes a text file; "
    "read_file {path}; list_dir {path}; finish {summary,success} once the goal is done."
)

# One call per example, each a different tool or command, on names no real goal uses: the
# model learns the format and which tool fits, and has no commands of a goal to copy.
EXAMPLES: list[tuple[str, dict]] = [
    ("Save the word ready in flag.cfg", {"tool": "write_file", "args": {"path": "flag.cfg", "content": "ready\n"}}),
    ("Make a folder named out", {"tool": "shell", "args": {"cmd": "mkdir -p out"}}),
    ("Copy a.conf to b.conf", {"tool": "shell", "args": {"cmd": "cp a.conf b.conf"}}),
    ("Rename x.dat to y.dat", {"tool": "shell", "args": {"cmd": "mv x.dat y.dat"}}),
    ("Remove temp.bin", {"tool": "shell", "args": {"cmd": "rm temp.bin"}}),
    ("Put the line count of list.tsv into n.out", {"tool": "shell", "args": {"cmd": "wc -l < list.tsv > n.out"}}),
    ("Add the line end to log.md", {"tool": "shell", "args": {"cmd": "echo end >> log.md"}}),
    ("Pack big.csv with gzip", {"tool": "shell", "args": {"cmd": "gzip big.csv"}}),
    ("Show settings.ini", {"tool": "read_file", "args": {"path": "settings.ini"}}),
]
FINISH_EXAMPLE = {"tool": "finish", "args": {"summary": "what was done", "success": True}}


@dataclass(frozen=True)
class StepView:
    """What the prompt shows of a past step."""

    call: dict
    result: str


@dataclass(frozen=True)
class PromptParts:
    goal: str
    listing: str
    steps: list[StepView]
    note: str = ""            # a hint from the loop, e.g. why a call was refused


def render_call(call: dict) -> str:
    return json.dumps(call, separators=(",", ":"))


def goal_message(goal: str, listing: str) -> str:
    return f"Goal: {goal}\nWorkspace files:\n{listing or '(empty)'}"


def system_message() -> str:
    lines = [f"Goal: {goal}\nCall: {render_call(call)}" for goal, call in EXAMPLES]
    return f"{SYSTEM}\n\nExamples:\n" + "\n".join(lines) + f"\nWhen the goal is done: {render_call(FINISH_EXAMPLE)}"


def build_messages(parts: PromptParts, *, max_chars: int = 6000, max_result_chars: int = 600) -> list[dict[str, str]]:
    """Chat messages for the next call. Oldest steps are dropped first to fit ``max_chars``."""
    head = [{"role": "system", "content": system_message()},
            {"role": "user", "content": goal_message(parts.goal, parts.listing)}]
    steps = _step_messages(parts.steps, max_result_chars)
    budget = max_chars - sum(len(m["content"]) for m in head)
    dropped = 0
    while steps and sum(len(m["content"]) for m in steps) > budget:
        steps = steps[2:]
        dropped += 1
    if dropped:
        head[-1]["content"] += f"\n({dropped} earlier steps omitted to fit the context)"
    if parts.note:
        if steps:
            steps[-1] = {**steps[-1], "content": f"{steps[-1]['content']}\n{parts.note}"}
        else:
            head[-1]["content"] += f"\n{parts.note}"
    return head + steps


def _step_messages(steps: list[StepView], max_result_chars: int) -> list[dict[str, str]]:
    messages = []
    for step in steps:
        result = step.result if len(step.result) <= max_result_chars else step.result[:max_result_chars] + " [...]"
        messages.append({"role": "assistant", "content": render_call(step.call)})
        messages.append({"role": "user", "content": f"Result: {result}"})
    return messages
