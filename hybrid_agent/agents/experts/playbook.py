"""The playbook expert: tool calls that succeeded before on similar goals.

The playbook is an in-memory index of (goal, call) pairs from succeeded tasks' steps
(``queries.succeeded_steps``). A new goal recalls the calls of the stored goals whose
embeddings (a ``TextEncoder``, MiniLM by default) are closest by cosine, above a floor.

File names are what goals differ in most and matter least to what should be done ("Copy
a.conf to b.conf" is the plan for "Copy notes.txt to backup.txt"), so goals are embedded
with their file names masked, and a recalled call is adapted by position: the stored
goal's first file name becomes the new goal's first, and so on, wherever it occurs in the
call's arguments. That is all the adapting there is; anything else in the call is kept
as it was. A file name here is a word with an extension (``notes.txt``, ``logs/app.log``);
folder names are not substituted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from hybrid_agent.agents.experts.base import ExpertContext, expert_candidate
from hybrid_agent.models.hrm.text import TextEncoder, default_encoder
from hybrid_agent.models.llm.base import Candidate
from hybrid_agent.policies.tool_schema import is_valid_call

# An extension starts with a letter, so "3.5" and "v1.2" are not file names.
FILE_NAME = re.compile(r"(?<![\w./-])[\w./-]*\w\.[A-Za-z]\w*(?![\w-])")
FILE_MASK = "FILE"
# With file names masked, goals of the same shape score near 1; other actions on the
# same kind of object (copy vs rename) about 0.65 with MiniLM.
MIN_SIMILARITY = 0.7


def file_names(text: str) -> list[str]:
    return FILE_NAME.findall(text)


def masked(goal: str) -> str:
    return FILE_NAME.sub(FILE_MASK, goal)


class Playbook:
    """Calls that worked, indexed by the goal they worked for."""

    def __init__(self, entries: list[tuple[str, dict[str, Any]]], encoder: TextEncoder,
                 min_similarity: float = MIN_SIMILARITY) -> None:
        if not 0 < min_similarity <= 1:
            raise ValueError(f"min_similarity must be in (0, 1], not {min_similarity}")   # its log is the score
        self.entries = entries
        self.encoder = encoder
        self.min_similarity = min_similarity
        self._vectors = encoder.encode([masked(goal) for goal, _ in entries]) if entries else None

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, dict[str, Any]]], *, encoder: TextEncoder | None = None,
                  min_similarity: float = MIN_SIMILARITY) -> Playbook:
        """From ``queries.succeeded_steps`` rows, best first (newest first wins ties)."""
        return cls(list(rows), encoder if encoder is not None else default_encoder(), min_similarity)

    def recall(self, goal: str, k: int) -> list[tuple[float, dict[str, Any]]]:
        """Up to ``k`` distinct calls adapted to ``goal``, with the similarity of the goal
        they came from, most similar first."""
        if self._vectors is None or k < 1:
            return []
        similarity = (self._vectors @ self.encoder.encode([masked(goal)])[0]).tolist()
        order = sorted(range(len(self.entries)), key=lambda i: -similarity[i])   # stable: newest first on ties
        recalled: list[tuple[float, dict[str, Any]]] = []
        seen: set[str] = set()
        for i in order:
            if similarity[i] < self.min_similarity or len(recalled) == k:
                break
            old_goal, call = self.entries[i]
            adapted = adapt(call, old_goal, goal)
            key = json.dumps(adapted, sort_keys=True)
            if key not in seen and is_valid_call(adapted):
                seen.add(key)
                recalled.append((min(similarity[i], 1.0), adapted))
        return recalled


def adapt(call: dict[str, Any], old_goal: str, new_goal: str) -> dict[str, Any]:
    """``call`` with the old goal's file names replaced by the new goal's, by position,
    in every string argument, in one pass (so that swapped names do not chain)."""
    pairs = dict(zip(file_names(old_goal), file_names(new_goal)))
    if not pairs:
        return call
    names = sorted(pairs, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(?:" + "|".join(map(re.escape, names)) + r")(?![\w-])")

    def substitute(value: Any) -> Any:
        return pattern.sub(lambda m: pairs[m[0]], value) if isinstance(value, str) else value

    return {"tool": call["tool"], "args": {key: substitute(value) for key, value in call["args"].items()}}




class PlaybookExpert:
    name = "playbook"
    verifiable = False

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook

    def propose(self, context: ExpertContext, k: int) -> list[Candidate]:
        return [expert_candidate(call, similarity) for similarity, call in self.playbook.recall(context.goal, k)]
