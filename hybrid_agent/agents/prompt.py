"""The chat prompt for one step: tool descriptions, worked examples on tasks unlike real
goals (so the model learns the format, not the commands), the goal with the workspace
listing, and the steps so far. Built to fit a budget of characters; what was dropped is
said in the prompt itself."""

from __future__ import annotations

import json
from dataclasses import dataclass

SYSTEM = (
    "You are an operations agent. You work inside a workspace directory and reach the goal by calling tools. "
    "Reply with exactly one tool call as JSON.\n"
    "Tools:\n"
    '- shell {"cmd"}: run a bash command in the workspace (mkdir, cp, mv, grep, wc, gzip, sort, sed ...).\n'
    '- write_file {"path","content"}: create or overwrite a text file with exactly that content.\n'
    '- read_file {"path"}: show a file.\n'
    '- list_dir {"path"}: list a directory.\n'
    '- finish {"summary","success"}: stop once the goal is done.'
)

# Each example: a goal, then (call, result) pairs. Different file names and commands from
# any goal a user is likely to give, so the model has nothing to copy but the format.
EXAMPLES: list[tuple[str, list[tuple[dict, str]]]] = [
    ("Save the word ready in status/flag.cfg", [
        ({"tool": "write_file", "args": {"path": "status/flag.cfg", "content": "ready\n"}}, "wrote 6 bytes to status/flag.cfg"),
        ({"tool": "finish", "args": {"summary": "status/flag.cfg contains ready", "success": True}}, ""),
    ]),
    ("Put the number of lines of inventory.tsv into total.out", [
        ({"tool": "shell", "args": {"cmd": "wc -l < inventory.tsv > total.out"}}, "exit=0"),
        ({"tool": "finish", "args": {"summary": "total.out holds the line count", "success": True}}, ""),
    ]),
    ("Move every .bak file into a new folder named old", [
        ({"tool": "shell", "args": {"cmd": "mkdir -p old && mv *.bak old/"}}, "exit=0"),
        ({"tool": "finish", "args": {"summary": "moved the .bak files into old/", "success": True}}, ""),
    ]),
]


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


def build_messages(parts: PromptParts, *, max_chars: int = 6000, max_result_chars: int = 600) -> list[dict[str, str]]:
    """Chat messages for the next call. Oldest steps are dropped first to fit ``max_chars``."""
    messages = [{"role": "system", "content": SYSTEM}]
    for goal, turns in EXAMPLES:
        messages.append({"role": "user", "content": goal_message(goal, "(example)")})
        for call, result in turns:
            messages.append({"role": "assistant", "content": render_call(call)})
            if result:
                messages.append({"role": "user", "content": f"Result: {result}"})
    head = messages + [{"role": "user", "content": goal_message(parts.goal, parts.listing)}]
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
