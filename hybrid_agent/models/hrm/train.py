"""Trains the HRM (or the flat ablation) with deep supervision and writes a checkpoint:

    python -m hybrid_agent.models.hrm.train --variant hrm|flat --out PATH [--traces FILE ...]

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
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hybrid_agent.models.hrm import data
from hybrid_agent.models.hrm.checkpoint import Checkpoint, Model, build_model, parameter_count, save
from hybrid_agent.models.hrm.model import PlanHeads, halts
from hybrid_agent.models.hrm.state import encode_states, input_dim
from hybrid_agent.models.hrm.text import FakeHashEncoder, TextEncoder, default_encoder

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("hrm", "flat"), default="hrm")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--traces", type=Path, action="append", default=[], metavar="FILE",
                        help="JSONL of trace steps (data.load_traces); repeatable")
    parser.add_argument("--synthetic", type=int, default=10_000, help="synthetic training examples")
    parser.add_argument("--encoder", choices=("minilm", "fake-hash"), default="minilm")
    parser.add_argument("--hidden", type=int, default=256)
    for name, default in asdict(TrainConfig()).items():
        if name != "log_every":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Small matrices: a second thread only adds synchronisation, and on a busy two-core
    # machine one thread ran a step four times faster than two.
    torch.set_num_threads(1)
    config = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig()) if hasattr(args, k)})
    torch.manual_seed(config.seed)
    started = time.perf_counter()

    traces = [e for path in args.traces for e in data.load_traces(path)]
    held_traces = [e for e in traces if _held_out(e)]
    train_examples = data.synthetic(args.synthetic, config.seed) + [e for e in traces if not _held_out(e)]
    held_examples = data.synthetic(2_000, config.seed + 1) + held_traces
    tools = _names(data.TOOLS, [e.next_tool for e in traces])
    experts = _names(data.EXPERTS, [e.expert for e in traces if e.expert])
    text = default_encoder() if args.encoder == "minilm" else FakeHashEncoder()
    train, held = (tensorize(ex, text, tools, experts) for ex in (train_examples, held_examples))
    log.info("train %d examples (%d from traces), held out %d; encoded in %.0f s", len(train_examples),
             len(traces) - len(held_traces), len(held_examples), time.perf_counter() - started)

    model = build_model(args.variant, d_in=input_dim(text), n_tools=len(tools), n_experts=len(experts),
                        hidden=args.hidden)
    log.info("%s: %d parameters", args.variant, parameter_count(model))
    losses = fit(model, train, config, held)
    metrics: dict[str, Any] = {
        **evaluate(model, held, config.segments), "final_loss": losses[-1], "parameters": parameter_count(model),
        "train_seconds": time.perf_counter() - started, "train": asdict(config),
        "examples": {"synthetic": args.synthetic, "traces": len(traces), "held_out_traces": len(held_traces)}}
    save(Checkpoint(args.variant, model, tools, experts, text.name, config.segments, metrics), args.out)
    log.info("held out: %s", {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    log.info("wrote %s (%.1f s)", args.out, metrics["train_seconds"])
    return 0


def _held_out(example: data.Example) -> bool:
    """A fifth of the traces, by goal: all steps of a task (and its reruns) on one side."""
    return zlib.crc32(example.state.goal.encode()) % 5 == 0


def _names(defaults: tuple[str, ...], seen: list[str]) -> list[str]:
    """The default names, then any new ones the traces use, in order of appearance."""
    return list(dict.fromkeys([*defaults, *seen]))


if __name__ == "__main__":
    raise SystemExit(main())
