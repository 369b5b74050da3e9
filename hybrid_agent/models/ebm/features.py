"""What the energy model reads of one (state, candidate) pair: hashed ids of the state text
and of the candidate call, and a small vector of hard features with named slots.

Plain data in: ``StateView`` and ``CandidateView`` say nothing of the bus, the store or the
agent loop; the caller fills them (policy decision, past failures, test status included).

Text ids come in three bags. Raw ids are hashed words, word pairs and (for the candidate)
byte 3-5-grams, as in the tool-policy classifier. Grounded ids are the same words with
every value (a token holding ``.``, ``/``, ``~``, ``*`` or a digit: paths, file names,
numbers) and every goal word replaced by where it comes from: ``@q1``..``@q3`` for the
goal's quoted phrases, ``@g1``..``@g4`` for its first values in order, ``@gw`` for
another goal word, ``@r`` for a value only seen in recent observations, ``@new`` for a
value found nowhere. File names are arbitrary, so raw ids of a name never seen in training
say nothing; ``cp @g1 @g2/`` against ``cp @new @g2/`` is what generalises to unseen names.
The state bag holds the goal's raw and grounded words and the recent observations' grounded
words; the candidate bag the call's raw, grounded and byte ids; the cross bag every
(grounded goal word, grounded call word) pair, which ties ``copy`` to ``cp`` rather than
``mv`` and ``@g1`` to its place in the call. Every id hashes with crc32 and a tag per kind
(Python's hash() is salted per process; the ids must be the same wherever the model loads).
"""

from __future__ import annotations

import ast
import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hybrid_agent.policies.shell import ShellParseError, parse_script
from hybrid_agent.policies.tool_schema import CONTENT_MAX, is_valid_call

# Bump on any change to the ids or the hard features: a checkpoint is only valid for its own.
FEATURE_VERSION = 1

FEATURES: tuple[str, ...] = (
    "schema_invalid",               # no parsed call, a parse/validation error, or one validate_call rejects
    "policy_allow",                 # the policy engine's decision, one-hot; all zero when not checked
    "policy_approve",
    "policy_deny",
    "shell_parse_error",            # a command line (shell, run_tests) the shell parser cannot read
    "python_syntax_error",          # python tool code that does not parse
    "py_file_syntax_error",         # write_file content for a *.py path that does not parse
    "change_size",                  # log-scaled length of written content / edit replacement, 0..1
    "tests_failing",                # the task's tests are known to fail now
    "finish_despite_failing_tests", # finish(success=true) while the tests are known to fail
    "repeat_failed",                # the same call already failed in this task
    "failed_similarity",            # highest token Jaccard with a call that failed in this task
    "ungrounded_values",            # share of the call's values found neither in the goal nor in recent
    "goal_quotes_missing",          # share of the goal's quoted phrases the call does not contain
    "mean_logprob",                 # the proposer's mean log-probability per token, clipped to [-10, 0]
)
SLOT = {name: i for i, name in enumerate(FEATURES)}

# Shell-ish words, and runs of operators (">" and ">>" differ: overwrite vs append).
_TOKEN = re.compile(r"[^\s'\"`;|&<>(){}\[\],]+|[;|&<>]+")
_NGRAMS = (3, 4, 5)
GOAL_VALUES = 4          # goal values numbered @g1..@g4; later ones share @g4
GOAL_QUOTES = 3          # quoted phrases of the goal numbered @q1..@q3; later ones are plain words
_QUOTED = re.compile(r"""(?<!\w)'([^'\n]+)'(?!\w)|(?<!\w)"([^"\n]+)"(?!\w)""")
RECENT_TOKENS = 256      # only the last tokens of the recent observations count
LOGPROB_FLOOR = -10.0


@dataclass(frozen=True)
class StateView:
    goal: str
    recent: list[str]            # recent observations, oldest first
    failed_calls: list[str]      # calls that failed earlier in the task: call JSON or call_text()
    tests_failing: bool | None   # None: not known


@dataclass(frozen=True)
class CandidateView:
    text: str                    # what the proposer wrote
    call: dict[str, Any] | None  # the parsed call {"tool", "args"}; None when it did not parse
    mean_logprob: float
    policy: str | None           # "allow" | "approve" | "deny"; None when not checked
    error: str | None            # why the text is not a valid call, when it is not


def call_text(call: dict[str, Any]) -> str:
    """One call as the model reads it: the tool name, then each argument as ``key: value``."""
    args = call.get("args")
    pairs = args.items() if isinstance(args, dict) else ()
    return " ".join([str(call.get("tool", "")), *(f"{key}: {value}" for key, value in pairs)])


def candidate_text(candidate: CandidateView) -> str:
    return call_text(candidate.call) if isinstance(candidate.call, dict) else candidate.text


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _norm(token: str) -> str:
    """A token as matched against the state: no sentence punctuation, no ``./`` or trailing ``/``."""
    token = token.rstrip(".,:;!?/")
    return token[2:] if token.startswith("./") else token


def is_value(token: str) -> bool:
    """A path, file name or number; ``backup/`` is one, ``backup`` is a word, and neither
    a flag nor a placeholder (``@q1``) is."""
    token = token.rstrip(".,:;!?")
    return bool(token) and not token.startswith(("-", "@")) and any(c in "./~*" or c.isdigit() for c in token)


def goal_quotes(goal: str) -> list[str]:
    """The goal's quoted phrases, lowercased, in order (an apostrophe inside a word opens none)."""
    return [(a or b).lower() for a, b in _QUOTED.findall(goal)]


class Grounding:
    """Where a word of a candidate comes from: the goal's quoted phrases, values and words,
    and the values of the recent observations."""

    def __init__(self, state: StateView) -> None:
        # Longest first, so that a phrase inside another does not split it.
        quotes = goal_quotes(state.goal)[:GOAL_QUOTES]
        self.quotes = sorted(((q, f"@q{i}") for i, q in enumerate(quotes, 1) if q.strip()), key=lambda p: -len(p[0]))
        self.goal = self.tokens(state.goal)
        self.values: dict[str, int] = {}
        for token in self.goal:
            norm = _norm(token)
            if norm and is_value(token) and norm not in self.values:
                self.values[norm] = min(len(self.values) + 1, GOAL_VALUES)
        self.goal_words = frozenset(norm for norm in map(_norm, self.goal) if norm)
        self.recent = self.tokens(" ".join(state.recent))[-RECENT_TOKENS:]
        self.seen = frozenset(_norm(t) for t in self.recent)

    def tokens(self, text: str) -> list[str]:
        """The words of ``text``, each of the goal's quoted phrases one word ``@qN``."""
        text = text.lower()
        for phrase, placeholder in self.quotes:
            text = text.replace(phrase, f" {placeholder} ")
        return _tokens(text)

    def marker(self, token: str) -> str | None:
        """The token's origin marker; None for a plain word of no origin (kept as it is)."""
        norm = _norm(token)
        if not norm or token.startswith("@q"):
            return None
        if norm in self.values:
            return f"@g{self.values[norm]}"
        if norm in self.goal_words:
            return "@gw"
        if not is_value(token):
            return None
        if norm in self.seen:
            return "@r"
        if "/" in norm.strip("/"):   # a path built from known parts: archive/report.csv -> @g2/@g1
            return "/".join(self.marker(part) or part for part in norm.split("/"))
        return "@new"

    def grounded(self, tokens: Iterable[str]) -> list[str]:
        return [self.marker(t) or t for t in tokens]


def _hash(kind: str, item: str, buckets: int) -> int:
    return zlib.crc32(f"{kind}\x00{item}".encode()) % buckets


def _words_and_pairs(kind: str, words: list[str], buckets: int) -> set[int]:
    ids = {_hash(kind, w, buckets) for w in words}
    ids.update(_hash(kind + "2", f"{a} {b}", buckets) for a, b in zip(words, words[1:]))
    return ids


def state_ids(state: StateView, buckets: int, grounding: Grounding | None = None) -> list[int]:
    """The sorted, distinct ids of the goal and the recent observations, in ``range(buckets)``."""
    grounding = grounding or Grounding(state)
    ids = _words_and_pairs("goal", _tokens(state.goal), buckets)
    ids |= _words_and_pairs("goal@", grounding.grounded(grounding.goal), buckets)
    ids |= _words_and_pairs("recent@", grounding.grounded(grounding.recent), buckets)
    return sorted(ids)


def candidate_ids(state: StateView, candidate: CandidateView, buckets: int,
                  grounding: Grounding | None = None) -> list[int]:
    """The sorted, distinct ids of the candidate call read against the state."""
    grounding = grounding or Grounding(state)
    text = candidate_text(candidate).lower()
    ids = _words_and_pairs("call", _tokens(text), buckets)
    ids |= _words_and_pairs("call@", grounding.grounded(grounding.tokens(text)), buckets)
    data = f" {text} ".encode()
    ids.update(_hash("bytes", data[i:i + n].hex(), buckets) for n in _NGRAMS for i in range(len(data) - n + 1))
    return sorted(ids)


def cross_ids(state: StateView, candidate: CandidateView, buckets: int,
              grounding: Grounding | None = None) -> list[int]:
    """The sorted, distinct ids of (goal word, candidate word) pairs, both grounded: what
    ties a goal's verb to a program (``copy`` x ``cp``) and a goal's value to its place in
    the call, for any names."""
    grounding = grounding or Grounding(state)
    goal = set(grounding.grounded(grounding.goal))
    call = set(grounding.grounded(grounding.tokens(candidate_text(candidate))))
    return sorted({_hash("cross", f"{g} {c}", buckets) for g in goal for c in call})


def hard_features(state: StateView, candidate: CandidateView, grounding: Grounding | None = None) -> list[float]:
    """The candidate's hard features, in the order of ``FEATURES``."""
    grounding = grounding or Grounding(state)
    out = [0.0] * len(FEATURES)
    call = candidate.call if isinstance(candidate.call, dict) else None
    args = call.get("args") if call is not None else None
    args = args if isinstance(args, dict) else {}
    tool = call.get("tool") if call is not None else None
    out[SLOT["schema_invalid"]] = float(call is None or candidate.error is not None or not is_valid_call(call))
    if candidate.policy in ("allow", "approve", "deny"):
        out[SLOT[f"policy_{candidate.policy}"]] = 1.0
    cmd = args.get("cmd")
    if tool in ("shell", "run_tests") and isinstance(cmd, str):
        out[SLOT["shell_parse_error"]] = float(not _shell_parses(cmd))
    code = args.get("code")
    if tool == "python" and isinstance(code, str):
        out[SLOT["python_syntax_error"]] = float(not _python_parses(code))
    path, content = args.get("path"), args.get("content")
    if tool == "write_file" and isinstance(path, str) and path.endswith(".py") and isinstance(content, str):
        out[SLOT["py_file_syntax_error"]] = float(not _python_parses(content))
    written = content if tool == "write_file" else args.get("new") if tool == "edit" else None
    if isinstance(written, str):
        out[SLOT["change_size"]] = min(math.log1p(len(written)) / math.log1p(CONTENT_MAX), 1.0)
    if state.tests_failing:
        out[SLOT["tests_failing"]] = 1.0
        out[SLOT["finish_despite_failing_tests"]] = float(tool == "finish" and args.get("success") is True)
    text = candidate_text(candidate)
    failed = [_failed_text(f) for f in state.failed_calls]
    out[SLOT["repeat_failed"]] = float(_squeeze(text) in {_squeeze(f) for f in failed})
    out[SLOT["failed_similarity"]] = max((jaccard(text, f) for f in failed), default=0.0)
    out[SLOT["ungrounded_values"]] = _ungrounded(_target_text(tool, args) if call else text, grounding)
    quotes = goal_quotes(state.goal)
    if quotes:
        lowered = text.lower()
        out[SLOT["goal_quotes_missing"]] = sum(q not in lowered for q in quotes) / len(quotes)
    logprob = candidate.mean_logprob
    out[SLOT["mean_logprob"]] = min(max(logprob, LOGPROB_FLOOR), 0.0) if not math.isnan(logprob) else LOGPROB_FLOOR
    return out




def _shell_parses(cmd: str) -> bool:
    try:
        parse_script(cmd)
    except ShellParseError:
        return False
    return True


def _python_parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):   # ValueError: null bytes in the source
        return False
    return True


def _failed_text(failed: str) -> str:
    """A past failed call as ``call_text``, whether it was given as call JSON or as text."""
    try:
        raw = json.loads(failed)
    except ValueError:
        return failed
    return call_text(raw) if isinstance(raw, dict) and "tool" in raw else failed


def _squeeze(text: str) -> str:
    return " ".join(_tokens(text))


def jaccard(a: str, b: str) -> float:
    """Token-set Jaccard similarity of two call texts (0 when both are empty)."""
    left, right = set(_tokens(a)), set(_tokens(b))
    return len(left & right) / len(left | right) if left | right else 0.0


def _target_text(tool: Any, args: dict[str, Any]) -> str:
    """What a call acts on: the command, the code or the path; not free text such as a
    file's content, whose words need not come from anywhere."""
    if tool in ("shell", "run_tests", "python"):
        return str(args.get("cmd") or args.get("code") or "")
    return str(args.get("path") or "")


def _ungrounded(text: str, grounding: Grounding) -> float:
    values = [t for t in grounding.tokens(text) if is_value(t)]
    if not values:
        return 0.0
    return sum("@new" in (grounding.marker(v) or "") for v in values) / len(values)


@dataclass(frozen=True)
class Encoded:
    """One state and its candidates as the model reads them."""

    state: list[int]
    candidates: list[list[int]]
    crosses: list[list[int]]
    features: list[list[float]]


def encode(state: StateView, candidates: Sequence[CandidateView], *, buckets: int, state_buckets: int,
           cross_buckets: int) -> Encoded:
    grounding = Grounding(state)
    return Encoded(state=state_ids(state, state_buckets, grounding),
                   candidates=[candidate_ids(state, c, buckets, grounding) for c in candidates],
                   crosses=[cross_ids(state, c, cross_buckets, grounding) for c in candidates],
                   features=[hard_features(state, c, grounding) for c in candidates])


def collate(bags: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags of ids as EmbeddingBag wants them: all ids in one flat tensor and each bag's
    start offset."""
    offsets = torch.tensor([0] + [len(bag) for bag in bags[:-1]], dtype=torch.long).cumsum(0)
    flat = torch.tensor([i for bag in bags for i in bag], dtype=torch.long)
    return flat, offsets


def batch(groups: Sequence[Encoded]) -> tuple[torch.Tensor, ...]:
    """The model's inputs for every candidate of ``groups``, group after group: ids and
    offsets of the states (each once per candidate), of the candidates and of the crosses,
    then the hard features (N, len(FEATURES))."""
    states = [g.state for g in groups for _ in g.candidates]
    candidates = [bag for g in groups for bag in g.candidates]
    crosses = [bag for g in groups for bag in g.crosses]
    features = torch.tensor([row for g in groups for row in g.features], dtype=torch.float32)
    return (*collate(states), *collate(candidates), *collate(crosses), features.reshape(-1, len(FEATURES)))
