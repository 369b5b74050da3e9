"""Fakes for boundaries a test is not about. Each says so in its name."""

from __future__ import annotations

import json

from hybrid_agent.models.llm.base import Candidate, Proposal


class FakeScriptedLLM:
    """Answers each propose() with the next scripted list of call texts; records schemas."""

    name = "fake-scripted"

    def __init__(self, script: list[list[str] | Exception]) -> None:
        self.script = list(script)
        self.schemas: list[dict] = []
        self.ks: list[int] = []
        self.excluded: list[list[str]] = []
        self.prompts: list[list[dict]] = []

    def propose(self, messages, schema, k, *, exclude=()):
        self.prompts.append(messages)
        self.schemas.append(schema)
        self.ks.append(k)
        self.excluded.append(list(exclude))
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        candidates = []
        for i, text in enumerate(answer):
            try:
                parsed, error = json.loads(text), None
            except json.JSONDecodeError:
                parsed, error = None, "not JSON"
            candidates.append(Candidate(text=text, parsed=parsed, logprob=-1.0 - i, tokens=10, error=error))
        return Proposal(candidates=candidates, prompt_tokens=100, seconds=0.01)


class FakeAppendOnceLLM:
    """Appends a line to count.txt (an execution a test counts), then finishes once a change
    may be followed by ``finish``."""

    name = "fake-append-once"

    def propose(self, messages, schema, k, *, exclude=()):
        call = ({"tool": "shell", "args": {"cmd": "echo ran >> count.txt"}} if '"shell"' in json.dumps(schema)
                else {"tool": "finish", "args": {"summary": "ran", "success": True}})
        return Proposal(candidates=[Candidate(text=json.dumps(call), parsed=call, logprob=-1.0, tokens=5)],
                        prompt_tokens=10, seconds=0.0)
