"""The LLM boundary: given chat messages, a JSON schema for one tool call and K, return K
candidates. Backends know nothing of tools, the bus or the store; the caller validates."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class LLMError(Exception):
    """A backend failed (load, timeout, malformed response); the agent loop handles it."""


@dataclass(frozen=True)
class Candidate:
    text: str                      # the generated text, as decoded
    parsed: Any | None             # json.loads(text), or None when it does not parse
    logprob: float                 # sum of the sampled tokens' log-probabilities
    tokens: int                    # generated tokens
    error: str | None = None       # why parsed is None


@dataclass(frozen=True)
class Proposal:
    candidates: list[Candidate]
    prompt_tokens: int
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


class LLM(Protocol):
    name: str

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        """K candidates, each decoded under ``schema``; greedy when k == 1. None of them
        has a text in ``exclude`` (calls the caller already judged unusable): then fewer
        than K, or none, when the backend finds nothing else."""
        ...


def new_candidates(candidates: list[Candidate], exclude: Collection[str], k: int) -> list[Candidate]:
    """The first ``k`` candidates whose text is not in ``exclude``."""
    return [c for c in candidates if c.text not in exclude][:k]
