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
    "Tools:\n"
    "- write_file {path,content}: create a file with the given text, or replace its text.\n"
    "- shell {cmd}: run a bash command (mkdir, cp, mv, gzip, wc, sort, echo 'x' >> file to append).\n"
    "- edit {path,old,new}: replace the one place in a file where the text old occurs with new.\n"
    "- python {code}: run Python code. run_tests {}: run the project's tests.\n"
    "- read_file {path}: show a file. list_dir {path}: list a folder.\n"
    "- finish {summary,success}: call it as soon as the goal is reached."
)

# A bank of one-call examples, on names no real goal uses: the model learns the format and
# which tool fits. The few nearest to the goal (by shared words) are shown, nearest last,
# since a small model copies the structure of the example closest to the question.
EXAMPLES: list[tuple[str, dict]] = [
    ("Make a file flag.cfg that contains the text ready",
     {"tool": "write_file", "args": {"path": "flag.cfg", "content": "ready\n"}}),
    ("Write the word yes into a new file named ok.flag", {"tool": "write_file", "args": {"path": "ok.flag", "content": "yes\n"}}),
    ("Create a directory named out", {"tool": "shell", "args": {"cmd": "mkdir -p out"}}),
    ("Make a folder called cache/tmp", {"tool": "shell", "args": {"cmd": "mkdir -p cache/tmp"}}),
    ("Copy a.conf to b.conf", {"tool": "shell", "args": {"cmd": "cp a.conf b.conf"}}),
    ("Duplicate the folder web as web.orig", {"tool": "shell", "args": {"cmd": "cp -r web web.orig"}}),
    ("Rename x.dat to y.dat", {"tool": "shell", "args": {"cmd": "mv x.dat y.dat"}}),
    ("Move the file z.ini into the folder conf", {"tool": "shell", "args": {"cmd": "mv z.ini conf/"}}),
    ("Make a folder named conf and move x.ini into it", {"tool": "shell", "args": {"cmd": "mkdir -p conf && mv x.ini conf/"}}),
    ("Delete the file temp.bin", {"tool": "shell", "args": {"cmd": "rm temp.bin"}}),
    ("Remove every .bak file", {"tool": "shell", "args": {"cmd": "rm -f *.bak"}}),
    ("Count the lines of list.tsv and save the number in n.out", {"tool": "shell", "args": {"cmd": "wc -l < list.tsv > n.out"}}),
    ("Count the words in essay.md", {"tool": "shell", "args": {"cmd": "wc -w essay.md"}}),
    ("Append the line end to log.md", {"tool": "shell", "args": {"cmd": "echo 'end' >> log.md"}}),
    ("Add a line saying retry=3 to app.conf", {"tool": "shell", "args": {"cmd": "echo 'retry=3' >> app.conf"}}),
    ("Compress big.csv with gzip", {"tool": "shell", "args": {"cmd": "gzip big.csv"}}),
    ("Pack the folder docs into docs.tar.gz", {"tool": "shell", "args": {"cmd": "tar -czf docs.tar.gz docs"}}),
    ("Sort names.txt alphabetically into sorted.txt", {"tool": "shell", "args": {"cmd": "sort names.txt > sorted.txt"}}),
    ("Find the lines with ERROR in run.log", {"tool": "shell", "args": {"cmd": "grep ERROR run.log"}}),
    ("Change the port 80 to 8080 in srv.conf", {"tool": "edit", "args": {"path": "srv.conf", "old": "port 80",
                                                                           "new": "port 8080"}}),
    ("Show settings.ini", {"tool": "read_file", "args": {"path": "settings.ini"}}),
    ("What is in the folder assets?", {"tool": "list_dir", "args": {"path": "assets"}}),
]
SHOWN_EXAMPLES = 3
STOPWORDS = frozenset("a an the to of in into on for and or with as by it its is be named called file files new "
                      "that this from".split())
FINISH_EXAMPLE = {"tool": "finish", "args": {"summary": "goal reached", "success": True}}


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


def words(text: str) -> set[str]:
    """Content words of a goal; file names count only by their extension's absence."""
    tokens = {t.strip(".,:;!?'\"()").lower() for t in text.split()}
    return {t for t in tokens if t and t not in STOPWORDS and "." not in t and "/" not in t}


def nearest_examples(goal: str, k: int = SHOWN_EXAMPLES) -> list[tuple[str, dict]]:
    """Up to ``k`` examples sharing words with the goal, nearest last (ties keep bank
    order); the bank's first ``k`` when none does. Unrelated examples only add noise."""
    wanted = words(goal)
    overlaps = [(len(wanted & words(text)), -i) for i, (text, _) in enumerate(EXAMPLES)]
    ranked = sorted((o for o in overlaps if o[0] > 0))[-k:]
    return [EXAMPLES[-i] for _, i in ranked] if ranked else EXAMPLES[:k]


def system_message(goal: str) -> str:
    lines = [f"Goal: {example}\nCall: {render_call(call)}" for example, call in nearest_examples(goal)]
    return f"{SYSTEM}\n\nExamples:\n" + "\n".join(lines) + f"\nWhen the goal is done: {render_call(FINISH_EXAMPLE)}"


def build_messages(parts: PromptParts, *, max_chars: int = 6000, max_result_chars: int = 600) -> list[dict[str, str]]:
    """Chat messages for the next call. Oldest steps are dropped first to fit ``max_chars``."""
    head = [{"role": "system", "content": system_message(parts.goal)},
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
