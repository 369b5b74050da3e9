"""Trains the HRM (or the flat ablation) with deep supervision and writes a checkpoint,
its model card and its metrics:

    hybrid-agent train hrm --variant hrm|flat --out PATH [--traces FILE ...]

(``python -m hybrid_agent.models.hrm.train`` takes the same options). The card
(MODEL_CARD.md next to the checkpoint, or ``--card``) and ``<stem>.metrics.json`` hold no
date or duration: the same command on the same data writes the same files.

Each batch runs ``segments`` (M) segments, each from the detached carry of the one before,
with a loss at every segment: cross-entropy on the next tool and on the expert, BCE on
failed_soon (the risk), and the paper's Q-learning halting loss. Q-halt's target is
whether this segment's tool prediction is right; Q-continue's is the value of the next
segment, sigmoid(max(halt, continue)), or its halt value alone where the next segment is
the last (nothing can continue past it), less a step cost. The paper has none; then,
wherever the answer is already right, both values tend to 1 and the max tips the tie
towards going on (measured on the synthetic data: 84% of held-out steps went past one
segment, right about as often, 0.90 vs 0.93, as those that halted). The cost makes the
Q-head halt unless another segment is expected to raise P(right) by more than it: the
segment count says whether more HRM computation pays, not how unsure the HRM is (the
priors and the risk say that).

The segment losses are summed into one AdamW step per batch (the paper steps per
segment); memory grows with M, never with the cycles."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hybrid_agent.models import model_card
from hybrid_agent.models.hrm import data
from hybrid_agent.models.hrm.checkpoint import Checkpoint, Model, build_model, parameter_count, save
from hybrid_agent.models.hrm.model import PlanHeads, halts
from hybrid_agent.models.hrm.state import FEATURE_VERSION, RECENT, TOKENS, encode_states, input_dim
from hybrid_agent.models.hrm.text import FakeHashEncoder, TextEncoder, default_encoder
from hybrid_agent.models.model_card import InputError, TraceFile

log = logging.getLogger(__name__)
IGNORE = -100     # an expert not recorded


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 64
    segments: int = 3         # M: deep supervision, and the planner's limit
    step_cost: float = 0.05   # taken off Q-continue's bootstrapped target; the paper's is 0
    lr: float = 1e-3
    weight_decay: float = 0.1
    clip: float = 1.0
    seed: int = 0
    log_every: int = 25


@dataclass
class Tensors:
    x: torch.Tensor           # (n, L, d_in)
    tool: torch.Tensor        # (n,) long
    expert: torch.Tensor      # (n,) long, IGNORE where not recorded
    risk: torch.Tensor        # (n,) float 0/1

    def __getitem__(self, rows: torch.Tensor) -> Tensors:
        return Tensors(self.x[rows], self.tool[rows], self.expert[rows], self.risk[rows])


def tensorize(examples: list[data.Example], text: TextEncoder, tools: list[str], experts: list[str]) -> Tensors:
    return Tensors(encode_states([e.state for e in examples], text),
                   torch.tensor([tools.index(e.next_tool) for e in examples]),
                   torch.tensor([experts.index(e.expert) if e.expert else IGNORE for e in examples]),
                   torch.tensor([float(e.failed_soon) for e in examples]))


def q_targets(out: PlanHeads, tool: torch.Tensor, next_out: PlanHeads | None, next_is_last: bool,
              step_cost: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B,) targets of Q-halt and Q-continue (None where no segment follows)."""
    halt = (out.tool_logits.argmax(-1) == tool).float()
    if next_out is None:
        return halt, None
    following = next_out.q_logits.detach()                                      # (B, 2)
    value = following[:, 0] if next_is_last else following.max(-1).values
    return halt, (torch.sigmoid(value) - step_cost).clamp(min=0.0)


def segment_loss(out: PlanHeads, batch: Tensors, next_out: PlanHeads | None, next_is_last: bool,
                 step_cost: float) -> torch.Tensor:
    loss = F.cross_entropy(out.tool_logits, batch.tool) + F.binary_cross_entropy_with_logits(out.risk_logit, batch.risk)
    if (batch.expert != IGNORE).any():
        loss = loss + F.cross_entropy(out.expert_logits, batch.expert, ignore_index=IGNORE)
    halt, go_on = q_targets(out, batch.tool, next_out, next_is_last, step_cost)
    q = F.binary_cross_entropy_with_logits(out.q_logits[:, 0], halt)
    if go_on is not None:
        q = q + F.binary_cross_entropy_with_logits(out.q_logits[:, 1], go_on)
    return loss + 0.5 * q


def run_segments(model: Model, x: torch.Tensor, segments: int) -> list[PlanHeads]:
    carry, outs = None, []
    for _ in range(segments):
        carry, out = model(x, carry)
        outs.append(out)
    return outs


def fit(model: Model, train: Tensors, config: TrainConfig, held: Tensors | None = None) -> list[float]:
    """Trains ``model`` in place; the mean loss of each logging window."""
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.1)
    losses, window, started = [], 0.0, time.perf_counter()
    # Progress is measured on a random slice of the held-out set: all of it costs many steps.
    sample = held[torch.randperm(len(held.tool))[:512]] if held is not None else None
    for step in range(1, config.steps + 1):
        model.train()
        batch = train[torch.randint(len(train.tool), (config.batch_size,))]
        outs = run_segments(model, batch.x, config.segments)
        M = len(outs)
        loss = sum(segment_loss(out, batch, outs[m + 1] if m + 1 < M else None, m + 2 == M, config.step_cost)
                   for m, out in enumerate(outs)) / M
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        schedule.step()
        window += loss.item()
        if step % config.log_every == 0 or step == config.steps:
            losses.append(window / (step % config.log_every or config.log_every))
            window = 0.0
            progress = ""
            if sample is not None:
                progress = f"  held-out tool acc {evaluate(model, sample, config.segments)['tool_acc']:.3f}"
            log.info("step %d/%d  loss %.4f%s  (%.0f s)", step, config.steps, losses[-1], progress,
                     time.perf_counter() - started)
    return losses


def evaluate(model: Model, held: Tensors, max_segments: int) -> dict[str, float]:
    """Metrics at the segment where each example halts, as the planner would stop."""
    model.eval()
    with torch.inference_mode():
        outs = run_segments(model, held.x, max_segments)
    last = torch.ones_like(held.tool, dtype=torch.bool)                          # the limit stops everything
    halted = torch.stack([halts(o) for o in outs[:-1]] + [last])                 # (M, n)
    stop = halted.float().argmax(0)                                              # (n,) first halting segment
    rows = torch.arange(len(stop))
    tools = torch.stack([o.tool_logits.argmax(-1) for o in outs])[stop, rows]    # (n,)
    experts = torch.stack([o.expert_logits.argmax(-1) for o in outs])[stop, rows]
    risk = torch.sigmoid(torch.stack([o.risk_logit for o in outs])[stop, rows])
    labelled = held.expert != IGNORE
    expert_acc = (experts == held.expert)[labelled].float().mean().item() if labelled.any() else float("nan")
    return {"tool_acc": (tools == held.tool).float().mean().item(), "expert_acc": expert_acc,
            "tool_acc_last_segment": (outs[-1].tool_logits.argmax(-1) == held.tool).float().mean().item(),
            "risk_auc": auc(risk, held.risk), "risk_brier": ((risk - held.risk) ** 2).mean().item(),
            "mean_segments": (stop + 1).float().mean().item(), "halted_at_1": (stop == 0).float().mean().item()}


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """P(a positive outscores a negative), ties counting half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()


def main(argv: Sequence[str] | None = None) -> int:
    """``hybrid-agent train hrm ARGS``: trains, then writes the checkpoint, its model card
    and its metrics. Bad input is one ``error:`` line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hybrid-agent train hrm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("hrm", "flat"), default="hrm")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--card", type=Path, help=f"the model card (default: {model_card.CARD_FILE} next to --out)")
    parser.add_argument("--traces", type=Path, action="append", default=[], metavar="FILE",
                        help="JSONL of trace steps (data.load_traces); repeatable")
    parser.add_argument("--synthetic", type=int, default=10_000, help="synthetic training examples")
    parser.add_argument("--held-out", type=int, default=2_000, help="synthetic held-out examples")
    parser.add_argument("--encoder", choices=("minilm", "fake-hash"), default="minilm")
    parser.add_argument("--hidden", type=int, default=256)
    for name, default in asdict(TrainConfig()).items():
        if name != "log_every":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    model_card.show_progress(log)
    # Small matrices: a second thread only adds synchronisation, and on a busy two-core
    # machine one thread ran a step four times faster than two.
    torch.set_num_threads(1)
    try:
        train_and_write(args, model_card.command("hrm", argv))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


@dataclass(frozen=True)
class Splits:
    """One run's examples and where they came from."""

    train: list[data.Example]         # the synthetic training examples, then the trace ones
    held: list[data.Example]          # the synthetic held-out examples, then the trace ones
    traces: list[data.Example]        # every trace step, in the files' order
    held_traces: int
    files: list[TraceFile]


def split_examples(synthetic: int, held_out: int, traces: Sequence[Path], seed: int) -> Splits:
    """The examples of a run; InputError when the traces are unreadable or nothing is left
    to train or to measure on."""
    loaded, files = model_card.read_traces(traces, data.load_traces)
    held_traces = [e for e in loaded if _held_out(e)]
    train = data.synthetic(synthetic, seed) + [e for e in loaded if not _held_out(e)]
    held = data.synthetic(held_out, seed + 1) + held_traces
    if not train:
        raise InputError("no training examples: give --synthetic above 0 or --traces")
    if not held:
        raise InputError("no held-out examples to measure on: give --held-out above 0")
    return Splits(train, held, loaded, len(held_traces), files)


def train_and_write(args: argparse.Namespace, command: str) -> None:
    """The whole run behind ``main``: examples, training, evaluation, then the checkpoint, the
    card and the metrics file; ``command`` is recorded in the card."""
    config = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig()) if hasattr(args, k)})
    started = time.perf_counter()
    splits = split_examples(args.synthetic, args.held_out, args.traces, config.seed)
    tools = _names(data.TOOLS, [e.next_tool for e in splits.traces])
    experts = _names(data.EXPERTS, [e.expert for e in splits.traces if e.expert])
    try:
        text = default_encoder() if args.encoder == "minilm" else FakeHashEncoder()
    except FileNotFoundError as exc:     # the MiniLM wheel is not installed: the message says how
        raise InputError(str(exc)) from exc
    train, held = (tensorize(ex, text, tools, experts) for ex in (splits.train, splits.held))
    log.info("train %d examples (%d from traces), held out %d (%d from traces); encoded in %.0f s",
             len(splits.train), len(splits.traces) - splits.held_traces, len(splits.held), splits.held_traces,
             time.perf_counter() - started)

    torch.manual_seed(config.seed)      # the weights' initialization
    model = build_model(args.variant, d_in=input_dim(text), n_tools=len(tools), n_experts=len(experts),
                        hidden=args.hidden)
    log.info("%s: %d parameters", args.variant, parameter_count(model))
    losses = fit(model, train, config, held)
    metrics: dict[str, Any] = {**evaluate(model, held, config.segments),
                               "majority_tool_acc": _majority_acc(train.tool, held.tool),
                               "final_loss": losses[-1], "window_losses": losses}
    if splits.held_traces:      # the real steps alone: the synthetic ones outnumber them
        last = torch.arange(len(splits.held) - splits.held_traces, len(splits.held))
        metrics["traces"] = evaluate(model, held[last], config.segments)
    examples = {"synthetic": args.synthetic, "synthetic_held_out": args.held_out,
                "trace_files": [{"path": str(f.path), "examples": f.count} for f in splits.files],
                "traces": len(splits.traces), "train_traces": len(splits.traces) - splits.held_traces,
                "held_out_traces": splits.held_traces, "train": len(splits.train), "held_out": len(splits.held)}
    seconds = time.perf_counter() - started
    # The checkpoint keeps the duration; the card and the metrics file stay reproducible.
    save(Checkpoint(args.variant, model, tools, experts, text.name, config.segments,
                    metrics | {"parameters": parameter_count(model), "train_seconds": seconds, "train": asdict(config),
                               "examples": examples}), args.out)
    about = {"variant": args.variant, "parameters": parameter_count(model), "bytes": args.out.stat().st_size,
             "config": asdict(model.config), "encoder": text.name, "tools": tools, "experts": experts}
    run = {"train": asdict(config), "examples": examples}
    card = model_card.card_path(args.out, args.card)
    model_card.write(card, card_text(command, about, run, metrics, splits.files), model_card.metrics_path(args.out),
                     {"command": command, "model": about, "data": run, "metrics": metrics})
    log.info("held out: %s", {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    log.info("wrote %s and %s (%.1f s)", args.out, card, seconds)


def _majority_acc(train_tools: torch.Tensor, held_tools: torch.Tensor) -> float:
    """The held-out accuracy of always naming the commonest training tool: the floor the
    tool prior must beat."""
    return (held_tools == torch.bincount(train_tools).argmax()).float().mean().item()


def card_text(command: str, about: dict[str, Any], run: dict[str, Any], metrics: dict[str, Any],
              files: Sequence[TraceFile]) -> str:
    """The model card: what the model is, what it was trained and measured on, how well it
    plans and how to make it again."""
    c, t, ex = about["config"], run["train"], run["examples"]
    n = model_card.number
    if about["variant"] == "hrm":
        shape = (f"The HRM: a high-level and a low-level module of {c['blocks']} transformer blocks each\n(hidden "
                 f"{c['hidden']}, {c['heads']} heads); each segment runs {c['high_cycles']} high-level cycles of "
                 f"{c['low_steps']} low-level steps,\nwith the one-step gradient")
    else:
        shape = (f"The flat ablation: one stack of {c['blocks']} transformer blocks (hidden {c['hidden']}, "
                 f"{c['heads']} heads),\nrun once per segment")
    columns = [("all held out", metrics)] + ([("held-out traces", metrics["traces"])] if "traces" in metrics else [])
    head = " | ".join(name for name, _ in columns)

    def row(label: str, key: str) -> str:
        return f"| {label} | " + " | ".join(n(m[key]) for _, m in columns) + " |"

    tools, experts = ", ".join(about["tools"]), ", ".join(about["experts"])
    return f"""# Model card: HRM planner ({about["variant"]})

Generated by `hybrid_agent/models/hrm/train.py`; retrain rather than edit.

## Intended use

Reads the agent's state once per step (goal, task kind, progress through the step budget,
the last steps' tools and outcomes) and gives a prior over the next tool, a prior over
which proposer to trust (the LLM or an expert), the risk that the task fails within the
next {data.HORIZON} steps, and how many segments it took to halt. These steer the step: unlikely
tools leave the proposer's grammar, the expert prior shares the candidates among the
experts, and the risk and the segments set the compute budget and reach the policy engine.
The candidates still come from the proposers, and the policy rules, the sandbox and the
approvals still check every call.

## Model

{shape}; tool, expert, risk and Q (halt, continue) heads on the mean-pooled state.
Input: {TOKENS} tokens of text embeddings (`{about["encoder"]}`) and structured features
(`state.py`, feature version {FEATURE_VERSION}). Tools: {tools}. Experts: {experts}.
{about["parameters"]} parameters; the checkpoint is {about["bytes"]} bytes.

## Training data

- Synthetic (`data.py`): {ex["synthetic"]} training examples asked for (seed {t["seed"]}) and
  {ex["synthetic_held_out"]} held out (seed {t["seed"] + 1}), from a scripted agent rolled out on five task kinds;
  a tenth of the recorded next tools are random, so about 0.9 is the best tool accuracy
  there is on them.
{model_card.traces_lines(files, "steps")}
- Held out from traces: the steps whose goal's crc32 % 5 == 0 (every step of a task, and
  its reruns, on one side): {ex["held_out_traces"]} held out, {ex["train_traces"]} trained on.
- In all: {ex["train"]} training examples, {ex["held_out"]} held out.

## Training

Deep supervision over {t["segments"]} segments, each from the detached carry of the one
before: at each segment cross-entropy on the next tool and on the expert, BCE on the risk,
and the Q-learning halting loss with a step cost of {t["step_cost"]}. AdamW (lr {t["lr"]}, one-cycle
schedule, weight decay {t["weight_decay"]}), gradients clipped to {t["clip"]}, batch {t["batch_size"]},
{t["steps"]} steps, seed {t["seed"]}. Final training loss {metrics["final_loss"]:.4f}.

## Held-out metrics

At the segment where each example halts, as the planner stops.

| metric | {head} |
|---|{"---|" * len(columns)}
{row("tool accuracy", "tool_acc")}
{row("tool accuracy at the last segment", "tool_acc_last_segment")}
{row("expert accuracy", "expert_acc")}
{row("risk AUC", "risk_auc")}
{row("risk Brier score", "risk_brier")}
{row("mean segments", "mean_segments")}
{row("share halted after one segment", "halted_at_1")}

Always naming the commonest training tool scores {n(metrics["majority_tool_acc"])} on all held out. "n/a": nothing
to measure (no expert recorded, or only one risk label).

## Limitations

- Unless the traces are many, it has learned the scripted agent's habits on five synthetic
  task kinds; real tasks and real proposers differ.
- It sees the structured record of the last {RECENT} steps, not their output.
- The agent loop and `hybrid-agent collect` give every live step the task kind `user`,
  which the synthetic kinds never are: on live steps the goal text must carry the kind.

## Retraining

```
{command}
```
"""


def _held_out(example: data.Example) -> bool:
    """A fifth of the traces, by goal: all steps of a task (and its reruns) on one side."""
    return zlib.crc32(example.state.goal.encode()) % 5 == 0


def _names(defaults: tuple[str, ...], seen: list[str]) -> list[str]:
    """The default names, then any new ones the traces use, in order of appearance."""
    return list(dict.fromkeys([*defaults, *seen]))


if __name__ == "__main__":
    raise SystemExit(main())
