"""The agent's state as the HRM reads it: a compact structured record of one step, turned
into a short sequence of feature vectors (tokens).

Tokens, in this order (``TOKENS`` of them, always: empty slots are padding tokens):

    goal   the goal's text embedding
    meta   the task kind's text embedding, how far through its step budget the task is
    step   one per recent step, most recent first: the tool, ok, exit-code class, the error
           class's text embedding, how many steps ago

Each token is ``[text embedding (text.dim) | structured features (STRUCT_DIM)]``. Every
token's features say what it is (its type, a step's age), so the model needs no position
embedding. Text goes through a pluggable ``TextEncoder`` (text.py), MiniLM by default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

import torch

from hybrid_agent.models.hrm.text import TextEncoder, default_encoder, stable_bucket
from hybrid_agent.policies.tool_schema import TOOL_ARGS

FEATURE_VERSION = 1      # bump when the layout below changes: old checkpoints stop loading
RECENT = 6               # the last steps a state keeps
TOKENS = 2 + RECENT
KNOWN_TOOLS = tuple(TOOL_ARGS)   # one slot each; other tool names share hashed slots
OTHER_TOOL_SLOTS = 8
# Exit codes as classes: what they mean to a shell matters, not their value.
EXIT_CLASSES = ("none", "0", "1", "2", "timeout", "not-runnable", "signal", "other")
# Structured features: name -> width, laid out in this order after the text embedding.
SLOTS = {"type": 4, "progress": 2, "tool": len(KNOWN_TOOLS) + OTHER_TOOL_SLOTS,
         "outcome": 2, "exit": len(EXIT_CLASSES), "age": RECENT}
STRUCT_DIM = sum(SLOTS.values())
OFFSET = dict(zip(SLOTS, accumulate(SLOTS.values(), initial=0)))
GOAL, META, STEP, EMPTY = range(4)   # token types


@dataclass(frozen=True)
class RecentStep:
    tool: str
    ok: bool
    exit_code: int | None = None
    error_class: str | None = None   # e.g. "FileNotFoundError", "AssertionError", "timeout"


@dataclass
class StepState:
    goal: str
    task_kind: str
    step: int                        # steps taken so far
    max_steps: int
    recent: list[RecentStep] = field(default_factory=list)   # oldest first, as they happened


def exit_class(code: int | None) -> str:
    if code is None:
        return "none"                  # a file tool: no process ran
    if code in (0, 1, 2):
        return str(code)
    if code == 124:
        return "timeout"               # timeout(1)'s status
    if code in (126, 127):
        return "not-runnable"          # not executable, not found
    return "signal" if code > 128 or code < 0 else "other"


def tool_slot(tool: str) -> int:
    if tool in KNOWN_TOOLS:
        return KNOWN_TOOLS.index(tool)
    return len(KNOWN_TOOLS) + stable_bucket(tool, OTHER_TOOL_SLOTS)


def _structured(state: StepState) -> tuple[torch.Tensor, list[str]]:
    """The structured part (TOKENS, STRUCT_DIM) and each token's text ("" for none)."""
    at = OFFSET
    feats = torch.zeros(TOKENS, STRUCT_DIM)
    texts = [state.goal, state.task_kind] + [""] * RECENT
    feats[0, at["type"] + GOAL] = 1.0
    feats[1, at["type"] + META] = 1.0
    fraction = min(state.step / max(state.max_steps, 1), 1.0)
    feats[1, at["progress"]:at["progress"] + 2] = torch.tensor([fraction, float(state.step == 0)])
    recent = state.recent[::-1][:RECENT]    # most recent first
    for age, step in enumerate(recent):
        row = 2 + age
        feats[row, at["type"] + STEP] = 1.0
        feats[row, at["tool"] + tool_slot(step.tool)] = 1.0
        feats[row, at["outcome"] + (0 if step.ok else 1)] = 1.0
        feats[row, at["exit"] + EXIT_CLASSES.index(exit_class(step.exit_code))] = 1.0
        feats[row, at["age"] + age] = 1.0
        texts[row] = step.error_class or ""
    feats[2 + len(recent):, at["type"] + EMPTY] = 1.0
    return feats, texts


def encode_states(states: Sequence[StepState], text: TextEncoder | None = None) -> torch.Tensor:
    """(len(states), TOKENS, text.dim + STRUCT_DIM): the model's input for a batch."""
    text = text or default_encoder()
    parts = [_structured(s) for s in states]
    texts = [t for _, token_texts in parts for t in token_texts]
    unique = sorted({t for t in texts if t})
    vectors = dict(zip(unique, text.encode(unique))) if unique else {}
    zero = torch.zeros(text.dim)
    embedded = torch.stack([vectors.get(t, zero) for t in texts]).view(len(states), TOKENS, text.dim)
    return torch.cat([embedded, torch.stack([f for f, _ in parts])], dim=-1)


def encode_state(state: StepState, text: TextEncoder | None = None) -> torch.Tensor:
    """(TOKENS, text.dim + STRUCT_DIM) for one state."""
    return encode_states([state], text)[0]


def input_dim(text: TextEncoder) -> int:
    return text.dim + STRUCT_DIM
