"""Features of one (goal, tool call) pair for the tool-policy classifier: hashed ids, so
that no vocabulary ships with the model and unseen words still land somewhere.

The call becomes one canonical text, ``tool: <name> | <string args>``, lowercased. From it
come word unigrams and bigrams (shell words, flags, path parts, punctuation runs such as
``|`` or ``>/``) and byte 3-5-grams, which survive odd quoting, spacing and unseen file
names. The goal's words hash into their own, smaller table: the goal conditions the verdict,
the call decides it. Each kind of feature hashes with its own crc32 seed (Python's hash()
is salted per process, and the ids must be the same in every process that loads the model).
A call's features are a set: repeating a word does not change them."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import torch

from hybrid_agent.policies.tool_schema import ToolCall

# Bump on any change to what ids a call or goal gets: a checkpoint is only valid for its own.
FEATURE_VERSION = 1

# Flags, dotted words (``os.system``, ``app.log``) and runs of punctuation each stay one word.
_WORD = re.compile(r"-{1,2}[a-z0-9][\w-]*|[\w.]+|[^\w\s]+")
_GOAL_WORD = re.compile(r"[a-z0-9]+")
_UNIGRAM, _BIGRAM, _BYTES, _GOAL = 0x5EED0001, 0x5EED0002, 0x5EED0003, 0x5EED0004
_NGRAMS = (3, 4, 5)


def canonical_text(call: ToolCall) -> str:
    """The call as the classifier reads it: tool name and its string arguments in argument
    order (numbers such as a timeout say nothing about danger)."""
    values = [value for value in call.args.values() if isinstance(value, str)]
    return f"tool: {call.tool} | " + " | ".join(values)


def call_ids(call: ToolCall, buckets: int) -> list[int]:
    """The sorted, distinct feature ids of a call, each in ``range(buckets)``."""
    text = canonical_text(call).lower()
    words = _WORD.findall(text)
    ids = {zlib.crc32(word.encode(), _UNIGRAM) for word in words}
    ids.update(zlib.crc32(f"{a} {b}".encode(), _BIGRAM) for a, b in zip(words, words[1:]))
    data = f" {text} ".encode()
    ids.update(zlib.crc32(data[i:i + n], _BYTES) for n in _NGRAMS for i in range(len(data) - n + 1))
    return sorted({h % buckets for h in ids})


def goal_ids(goal: str, buckets: int) -> list[int]:
    """The sorted, distinct ids of the goal's words, each in ``range(buckets)``; none for
    an empty goal."""
    return sorted({zlib.crc32(word.encode(), _GOAL) % buckets for word in _GOAL_WORD.findall(goal.lower())})


def collate(bags: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags of ids as EmbeddingBag wants them: all ids in one flat tensor and each bag's
    start offset."""
    offsets = torch.tensor([0] + [len(bag) for bag in bags[:-1]], dtype=torch.long).cumsum(0)
    flat = torch.tensor([i for bag in bags for i in bag], dtype=torch.long)
    return flat, offsets
