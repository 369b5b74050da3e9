"""The playbook expert: tool calls that succeeded before on similar goals.

The playbook is an in-memory index of (goal, call) pairs from succeeded tasks' steps
(``queries.succeeded_steps``). A new goal recalls the calls of the stored goals whose
embeddings (a ``TextEncoder``, MiniLM by default) are closest by cosine, above a floor.

The values a goal names are what goals of one kind differ in and matter least to what
should be done ("Set `WORKERS` in `.env` to `14`" is the plan for "Set `DB_HOST` in
`app/.env` to `db-2`"), so goals are embedded with their values masked, and a recalled
call is adapted by position: the stored goal's first value of a kind becomes the new
goal's first of that kind, and so on, wherever it occurs in the call's arguments. The
kinds: a span the goal quotes (in backticks or double quotes), a file name outside quotes
(a word with an extension: ``notes.txt``, ``logs/app.log``) and a whole number outside
quotes. Two quoted values of the same shape pair their parts too (``[server]`` and
``[cache]`` pair ``server`` with ``cache``; ``srv/search/`` and ``srv/web/`` pair ``search``
with ``web``), since commands spell a value's parts (``\\[server\\]``). That is all the
adapting there is; anything else in the call is kept as it was."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from hybrid_agent.agents.experts.base import ExpertContext, expert_candidate
from hybrid_agent.models.hrm.text import TextEncoder, default_encoder
from hybrid_agent.models.llm.base import Candidate
from hybrid_agent.policies.tool_schema import is_valid_call

QUOTED = re.compile(r"`([^`\n]+)`|\"([^\"\n]+)\"")
# An extension starts with a letter, so "3.5" and "v1.2" are not file names.
FILE_NAME = re.compile(r"(?<![\w./-])[\w./-]*\w\.[A-Za-z]\w*(?![\w-])")
NUMBER = re.compile(r"(?<![\w.:/-])\d+(?![\w.:/-])")
MASKS = {"quoted": "VALUE", "file": "FILE", "number": "N"}
PART_SEPARATOR = re.compile(r"([^\w.-]+)")
# With values masked, goals of the same shape score near 1; other actions on the
# same kind of object (copy vs rename) about 0.65 with MiniLM.
MIN_SIMILARITY = 0.7


def goal_values(goal: str) -> dict[str, list[str]]:
    """The values ``goal`` names, by kind, in order."""
    quoted = [a or b for a, b in QUOTED.findall(goal)]
    rest = QUOTED.sub(" ", goal)
    return {"quoted": quoted, "file": FILE_NAME.findall(rest), "number": NUMBER.findall(FILE_NAME.sub(" ", rest))}


def masked(goal: str) -> str:
    text = QUOTED.sub(MASKS["quoted"], goal)
    return NUMBER.sub(MASKS["number"], FILE_NAME.sub(MASKS["file"], text))


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
    """``call`` with the old goal's values replaced by the new goal's, by position within
    each kind, in every string argument, in one pass (so that swapped values do not chain)."""
    pairs = value_pairs(goal_values(old_goal), goal_values(new_goal))
    if not pairs:
        return call
    names = sorted(pairs, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.-])(?:" + "|".join(map(re.escape, names)) + r")(?![\w-])")

    def substitute(value: Any) -> Any:
        return pattern.sub(lambda m: pairs[m[0]], value) if isinstance(value, str) else value

    return {"tool": call["tool"], "args": {key: substitute(value) for key, value in call["args"].items()}}


def value_pairs(old: dict[str, list[str]], new: dict[str, list[str]]) -> dict[str, str]:
    """Old value -> new value: whole values first, then the parts of quoted values of the
    same shape; a form paired once keeps its first partner (an unchanged value included,
    so that a part of another value cannot rename it)."""
    pairs: dict[str, str] = {}
    wholes = [(a, b) for kind in MASKS for a, b in zip(old[kind], new[kind])]
    for a, b in wholes:
        pairs.setdefault(a, b)
        if a.endswith("/") and b.endswith("/") and len(a) > 1 and len(b) > 1:
            pairs.setdefault(a.rstrip("/"), b.rstrip("/"))
    for a, b in zip(old["quoted"], new["quoted"]):
        a_parts, b_parts = PART_SEPARATOR.split(a), PART_SEPARATOR.split(b)
        if len(a_parts) > 1 and a_parts[1::2] == b_parts[1::2]:   # the same separators: the same shape
            for x, y in zip(a_parts[::2], b_parts[::2]):
                if x and y:
                    pairs.setdefault(x, y)
    return pairs


class PlaybookExpert:
    name = "playbook"
    verifiable = False

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook

    def propose(self, context: ExpertContext, k: int) -> list[Candidate]:
        return [expert_candidate(call, similarity) for similarity, call in self.playbook.recall(context.goal, k)]
