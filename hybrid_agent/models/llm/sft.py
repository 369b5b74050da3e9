"""Supervised fine-tuning of the proposer LLM with LoRA, on the steps whose tool call
succeeded: the model learns to write, for the prompt the agent built, the call that worked.

Data is JSONL, one example a line: ``{"messages": [...], "completion": "..."}``, where
``messages`` is what ``agents.prompt.build_messages`` produced for a step and
``completion`` the call as the backend decodes it (compact JSON, ``separators=(",", ":")``).
Each example is tokenised as the backend prompts (the chat template with the assistant
turn opened) followed by the completion and the stop token; the loss is on the completion
tokens only, since the prompt is given at inference and never generated.

LoRA (rank 8 on the attention projections) trains ~0.1% of the weights, so a run fits a
CPU; the adapter is a few MB and ``adapter.load_adapter`` merges it into the base weights
for inference. The loop is plain PyTorch (AdamW, constant learning rate, clipped
gradients), seeded, and measures a held-out split before and after: loss, and the token
accuracy of the completion under teacher forcing."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .base import LLMError

IGNORE = -100  # the label cross_entropy skips: prompt and padding positions
ROLES = frozenset({"system", "user", "assistant"})
REPORT_FILE = "sft_report.json"
CARD_FILE = "MODEL_CARD.md"


@dataclass(frozen=True)
class SFTConfig:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    # Llama's attention projections (LlamaAttention.q_proj ... o_proj); the MLP is left alone.
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = 2e-4
    epochs: int = 3
    batch_size: int = 4
    # The agent's prompts are capped at 6000 characters (~2000 tokens with the template);
    # a longer example is skipped (and counted), never cut: a cut prompt is not one the
    # model will see.
    max_length: int = 2048
    seed: int = 0
    val_fraction: float = 0.1
    max_grad_norm: float = 1.0
    device: str = "cpu"


@dataclass(frozen=True)
class SFTExample:
    messages: list[dict[str, str]]
    completion: str


@dataclass(frozen=True)
class Encoded:
    """One example's token ids and labels: IGNORE on the prompt, the ids on the completion."""

    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor       # (B, T), right-padded
    attention_mask: torch.Tensor  # (B, T), 0 on padding
    labels: torch.Tensor          # (B, T), IGNORE on prompt and padding


@dataclass(frozen=True)
class Metrics:
    loss: float            # mean cross-entropy per completion token
    token_accuracy: float  # completion tokens whose argmax under teacher forcing is right
    exact: float           # examples whose completion tokens are all right
    tokens: int
    examples: int


@dataclass
class SFTReport:
    base_model: str
    data: str | None
    command: str | None
    config: dict[str, Any]
    examples: int
    skipped_too_long: int
    train_examples: int
    val_examples: int
    epochs: int
    steps: int
    trainable_parameters: int
    epoch_losses: list[float]      # mean training loss of each epoch
    val_before: Metrics
    val_after: Metrics
    seconds: float
    peft_version: str
    adapter_dir: str
    step_losses: list[float] = field(default_factory=list)


# --- data ---------------------------------------------------------------------------------


def read_examples(path: Path, limit: int | None = None) -> list[SFTExample]:
    """The examples of a JSONL file, the first ``limit`` of them; ValueError naming the line
    of the first malformed one."""
    examples: list[SFTExample] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            try:
                examples.append(parse_example(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
    return examples


def parse_example(raw: Any) -> SFTExample:
    if not isinstance(raw, dict):
        raise ValueError("an example is a JSON object")
    messages, completion = raw.get("messages"), raw.get("completion")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    for message in messages:
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise ValueError(f"a message must be {{role: {'|'.join(sorted(ROLES))}, content: str}}, not {message!r}")
    if not isinstance(completion, str) or not completion:
        raise ValueError("'completion' must be a non-empty string")
    return SFTExample(messages=[{"role": m["role"], "content": m["content"]} for m in messages], completion=completion)


def stop_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that ends an assistant turn (SmolLM2: <|im_end|>), as the backend stops on."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return int(eos[0] if isinstance(eos, list) else eos)


def encode(tokenizer: PreTrainedTokenizerBase, example: SFTExample, stop_id: int) -> Encoded:
    """Prompt exactly as ``TransformersLLM.prompt_ids`` builds it, then the completion and
    the stop token. The completion is tokenised on its own, as the backend generates it
    token by token after the prompt's last one."""
    prompt = list(tokenizer.apply_chat_template(example.messages, add_generation_prompt=True,
                                                return_dict=True)["input_ids"])
    completion = list(tokenizer(example.completion, add_special_tokens=False)["input_ids"]) + [stop_id]
    return Encoded(input_ids=prompt + completion, labels=[IGNORE] * len(prompt) + completion)


def collate(encoded: Sequence[Encoded], pad_id: int) -> Batch:
    """Right padding: each row's positions are those it has alone, so no position ids are
    needed, and no query row is all padding (which some attention kernels turn into NaN)."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels)
    return Batch(input_ids=ids, attention_mask=mask, labels=labels)


def split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and held-out indices: a seeded shuffle, ``val_fraction`` of it (at least one)
    held out."""
    if n < 2:
        raise ValueError(f"SFT needs at least 2 examples (one held out), not {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = min(n - 1, max(1, round(n * val_fraction)))
    return sorted(order[held:]), sorted(order[:held])


# --- model --------------------------------------------------------------------------------


def lora_model(base: PreTrainedModel, config: SFTConfig) -> Any:
    """``base`` wrapped by peft with fresh LoRA weights (seeded); only those are trainable."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)  # LoRA's A matrices start random (B at zero)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(base, lora)


def completion_logits(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, vocab) predicting the batch's N completion tokens, and those tokens (N,).
    The output head runs on those positions only: the (B, T, 49152) logits of whole
    prompts would be ~1.5 GB for a batch of four, and are never used."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                 use_cache=False).last_hidden_state        # (B, T, H)
    # Position t predicts token t + 1.
    targets = batch.labels[:, 1:]
    chosen = targets != IGNORE
    logits = inner.get_output_embeddings()(hidden[:, :-1][chosen])         # (N, V)
    return logits.float(), targets[chosen]


def evaluate(model: Any, encoded: Sequence[Encoded], *, pad_id: int, batch_size: int, device: str = "cpu") -> Metrics:
    """Held-out loss and teacher-forced accuracy of the completions, in eval mode."""
    model.eval()
    loss_sum, right, tokens, exact = 0.0, 0, 0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            logits, targets = completion_logits(model, _to(collate(chunk, pad_id), device))
            loss_sum += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            hits = (logits.argmax(-1) == targets).cpu()
            right += int(hits.sum())
            tokens += len(targets)
            # Completion tokens come row by row, in order: split the hits back per example.
            lengths = [sum(label != IGNORE for label in e.labels) for e in chunk]
            exact += sum(bool(part.all()) for part in hits.split(lengths))
    return Metrics(loss=loss_sum / max(tokens, 1), token_accuracy=right / max(tokens, 1),
                   exact=exact / max(len(encoded), 1), tokens=tokens, examples=len(encoded))


def fit(model: Any, encoded: Sequence[Encoded], config: SFTConfig, *, pad_id: int,
        progress: bool = True) -> list[float]:
    """Trains the model's trainable (LoRA) weights in place; the loss of each step. The loss
    is the mean over the batch's completion tokens, so a long call weighs as its tokens."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    # Its own generator: the shuffle does not depend on what else drew random numbers.
    shuffle = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # LoRA dropout
    per_epoch = math.ceil(len(encoded) / config.batch_size)
    losses: list[float] = []
    with tqdm(total=per_epoch * config.epochs, desc="sft", unit="step", disable=not progress) as bar:
        for epoch in range(config.epochs):
            model.train()
            for rows in torch.randperm(len(encoded), generator=shuffle).split(config.batch_size):
                batch = _to(collate([encoded[i] for i in rows.tolist()], pad_id), config.device)
                logits, targets = completion_logits(model, batch)
                loss = torch.nn.functional.cross_entropy(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
    model.eval()
    return losses


def _to(batch: Batch, device: str) -> Batch:
    return Batch(batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device))


# --- the run ------------------------------------------------------------------------------


def train_sft(examples: Sequence[SFTExample], base_model: Path, config: SFTConfig, out_dir: Path, *,
              progress: bool = True, command: str | None = None, data: Path | None = None) -> SFTReport:
    """Fine-tunes a LoRA adapter on ``examples`` for the Hugging Face model in
    ``base_model`` and writes it to ``out_dir`` (peft's files, MODEL_CARD.md,
    sft_report.json). ``command`` and ``data`` are recorded in the card."""
    from peft import __version__ as peft_version

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
        base = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=torch.float32)
    except Exception as exc:
        raise LLMError(f"cannot load the base model from {base_model}: {exc}") from exc
    base.to(config.device)
    stop_id = stop_token_id(base, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    encoded_all = [encode(tokenizer, example, stop_id) for example in examples]
    encoded = [e for e in encoded_all if len(e.input_ids) <= config.max_length]
    if len(encoded) < 2:
        raise ValueError(f"SFT needs at least 2 examples (one held out): {len(examples)} given, "
                         f"{len(encoded_all) - len(encoded)} of them longer than {config.max_length} tokens")
    train_idx, val_idx = split(len(encoded), config.val_fraction, config.seed)
    train, val = [encoded[i] for i in train_idx], [encoded[i] for i in val_idx]

    model = lora_model(base, config)
    measure = dict(pad_id=pad_id, batch_size=config.batch_size, device=config.device)
    before = evaluate(model, val, **measure)
    step_losses = fit(model, train, config, pad_id=pad_id, progress=progress)
    after = evaluate(model, val, **measure)

    per_epoch = math.ceil(len(train) / config.batch_size)
    report = SFTReport(
        base_model=str(base_model), data=None if data is None else str(data), command=command,
        config=asdict(config), examples=len(examples), skipped_too_long=len(encoded_all) - len(encoded),
        train_examples=len(train), val_examples=len(val), epochs=config.epochs, steps=len(step_losses),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        epoch_losses=[sum(chunk) / len(chunk) for chunk in _chunks(step_losses, per_epoch)],
        val_before=before, val_after=after, seconds=time.perf_counter() - started,
        peft_version=peft_version, adapter_dir=str(out_dir), step_losses=step_losses,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    (out_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    (out_dir / CARD_FILE).write_text(model_card(report))
    return report


def run_sft(data: Path, out: Path, *, base_model: Path | None = None, cache_dir: Path | None = None,
            epochs: int = 3, lr: float = 2e-4, rank: int = 8, seed: int = 0, limit: int | None = None,
            command: str | None = None, progress: bool = True, device: str = "cpu") -> SFTReport:
    """What ``hybrid-agent train sft`` runs: the first ``limit`` examples of ``data``, the
    default config but for the given knobs (alpha stays twice the rank). Without
    ``base_model``, the default LLM, converted from its GGUF into ``cache_dir`` once (as
    ``transformers:default`` loads it)."""
    config = SFTConfig(rank=rank, alpha=2 * rank, lr=lr, epochs=epochs, seed=seed, device=device)
    examples = read_examples(data, limit)
    if base_model is None:
        from .gguf_weights import convert_gguf, default_gguf

        if cache_dir is None:
            raise ValueError("the default base model needs a cache_dir to convert it into")
        base_model = convert_gguf(default_gguf(), cache_dir)
    return train_sft(examples, base_model, config, out, progress=progress, command=command, data=data)


def _chunks(values: list[float], size: int) -> list[list[float]]:
    return [values[i : i + size] for i in range(0, len(values), max(size, 1))]


def model_card(report: SFTReport) -> str:
    c = report.config
    before, after = report.val_before, report.val_after
    losses = ", ".join(f"{loss:.4f}" for loss in report.epoch_losses)
    return f"""# Model card: LoRA adapter for the proposer LLM

Generated by `hybrid_agent/models/llm/sft.py`; retrain rather than edit.
Load it with `HA_LLM_ADAPTER={report.adapter_dir}` (merged into the base weights at load).

## Intended use

Makes the base model write, for a prompt of the agent's prompt builder, the tool call that
succeeded in similar steps. The backend still decodes under the tool-call grammar, and the
policy engine, sandbox and approvals still check every call.

## Training

- Command: `{report.command or '(not recorded)'}`
- Base model: `{report.base_model}`
- Data: `{report.data or '(in memory)'}`: {report.examples} examples, {report.skipped_too_long} skipped as longer
  than {c['max_length']} tokens; {report.train_examples} trained on, {report.val_examples} held out (seed {c['seed']}).
- LoRA rank {c['rank']}, alpha {c['alpha']}, dropout {c['dropout']} on {', '.join(c['target_modules'])}:
  {report.trainable_parameters} trainable parameters.
- Loss on the completion tokens (the call and the stop token) only.
- AdamW, lr {c['lr']} constant, gradients clipped to {c['max_grad_norm']}, batch {c['batch_size']},
  {report.epochs} epochs, {report.steps} steps, on {c['device']}: {report.seconds:.0f} s. peft {report.peft_version}.
- Mean training loss per epoch: {losses}.

## Held-out metrics (teacher forcing)

| | loss per token | token accuracy | all tokens right |
| --- | --- | --- | --- |
| base model | {before.loss:.4f} | {before.token_accuracy:.3f} | {before.exact:.3f} |
| with adapter | {after.loss:.4f} | {after.token_accuracy:.3f} | {after.exact:.3f} |

{after.examples} held-out examples, {after.tokens} completion tokens. Teacher forcing
measures the next token given the right ones before it, not whole calls decoded freely.
"""
