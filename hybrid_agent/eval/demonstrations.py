"""Demonstration traces: a pack's reference solutions played through the real agent loop,
so that SFT examples carry exactly the prompts the loop builds. The demonstrator answers
a task's first step with its reference solution as one call (an operations script as a
``shell`` call; a code fix, a Python script replacing the buggy snippet, as the ``edit``
call it amounts to) and finishes once the grammar allows it. The loop runs the call under
the policy and the sandbox, and the task's check decides whether the trace is kept, as for
the model's own traces. Only what ``collect`` is given (the train split) is demonstrated;
a solution that is no valid call (a script longer than a command may be) is left out."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_agent.eval.packs import Task
from hybrid_agent.models.llm.base import Candidate, Proposal, new_candidates
from hybrid_agent.policies.tool_schema import InvalidToolCall, ToolCall, validate_call

@dataclass(frozen=True)
class Demonstrations:
    calls: dict[str, dict[str, Any]]   # a task's goal -> its solution as a call
    skipped: dict[str, str]            # task id -> why it has no demonstration

    @classmethod
    def load(cls, solutions: Path, tasks: list[Task]) -> Demonstrations:
        by_id = {row["id"]: row["solution"] for row in map(json.loads, solutions.read_text().splitlines())}
        calls, skipped = {}, {}
        for task in tasks:
            if task.id not in by_id:
                skipped[task.id] = "no reference solution"
                continue
            try:
                calls[task.goal] = solution_call(by_id[task.id])
            except (InvalidToolCall, ValueError) as exc:
                skipped[task.id] = str(exc)
        return cls(calls, skipped)


def solution_call(solution: str) -> dict[str, Any]:
    """The call a reference solution amounts to; ValueError (or InvalidToolCall) when it is none."""
    call = _edit_call(solution) or {"tool": "shell", "args": {"cmd": solution.strip()}}
    validate_call(call)
    return call


def _edit_call(solution: str) -> dict[str, Any] | None:
    """A code fix written as ``python3 - <<'PY' ... PY`` that replaces ``buggy`` with
    ``fixed`` in ``path``: that edit, read from the script's syntax tree."""
    if not solution.startswith("python3 - <<'PY'"):
        return None
    body = solution.split("\n", 1)[1].rsplit("PY", 1)[0]
    values: dict[str, Any] = {}
    for node in ast.parse(body).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Name) and isinstance(value, ast.Call) and value.args:
                values[target.id] = ast.literal_eval(value.args[0])   # path = Path('x.py')
            elif isinstance(target, ast.Tuple):
                names = [element.id for element in target.elts if isinstance(element, ast.Name)]
                values.update(zip(names, ast.literal_eval(value)))    # buggy, fixed = '...', '...'
    if not {"path", "buggy", "fixed"} <= values.keys():
        raise ValueError("a Python fix that is not one replacement in one file")
    return {"tool": "edit", "args": {"path": values["path"], "old": values["buggy"], "new": values["fixed"]}}


class DemonstrationLLM:
    """The LLM boundary replaced by the demonstrator (``collect --demonstrations``)."""

    name = "demonstrator"

    def __init__(self, demonstrations: Demonstrations) -> None:
        self.demonstrations = demonstrations

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        # Finishing is allowed only once a change succeeded: then the demonstration is done.
        if '"finish"' in json.dumps(schema):
            call: dict[str, Any] = {"tool": "finish", "args": {"summary": "done as demonstrated", "success": True}}
        else:
            call = self._call_for(messages)
        text = ToolCall.model_validate(call).compact()
        candidate = Candidate(text=text, parsed=json.loads(text), logprob=0.0, tokens=0)
        return Proposal(candidates=new_candidates([candidate], exclude, k), prompt_tokens=0, seconds=0.0)

    def _call_for(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        prompt = "\n".join(message["content"] for message in messages if message["role"] == "user")
        for goal, call in self.demonstrations.calls.items():
            if goal in prompt:
                return call
        return {"tool": "list_dir", "args": {"path": "."}}   # a task without a demonstration: look only
