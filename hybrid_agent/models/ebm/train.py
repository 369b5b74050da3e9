"""Trains the energy model on groups (a state, its candidates, which one succeeded, each
one's outcome), calibrates it on held-out groups and writes the checkpoint, its model card
and its metrics:

    hybrid-agent train ebm --out hybrid_agent/models/ebm/ebm.pt [--traces FILE ...]

(``python -m hybrid_agent.models.ebm.train`` takes the same options). The card
(MODEL_CARD.md next to the checkpoint, or ``--card``) and ``<stem>.metrics.json`` hold no
date or duration: the same command on the same data writes the same files.

Data (data.py): synthetic everyday shell and file goals with near-miss negatives, and
optionally JSONL traces. The held-out synthetic groups use names never trained on; held-out
traces are chosen by a hash of the goal. The held-out groups are cut in two: one half fits
the calibration, the other measures everything (AUC, top-1, ECE before and after), so
that no reported number is of data the model or its calibration has seen. The LLM-only
ranking (energy = -mean log-probability) is measured on the same groups for comparison.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hybrid_agent.models import model_card
from hybrid_agent.models.ebm import calibration
from hybrid_agent.models.ebm.data import HELD_NAMES, TRAIN_NAMES, Group, load_traces, split_traces, synthetic_groups
from hybrid_agent.models.ebm.features import FEATURE_VERSION, FEATURES, Encoded, batch, encode
from hybrid_agent.models.ebm.losses import ebm_loss, pad_groups
from hybrid_agent.models.ebm.model import EBMConfig, EnergyModel
from hybrid_agent.models.ebm.reranker import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, DEFAULT_CHECKPOINT
from hybrid_agent.models.model_card import InputError, TraceFile

log = logging.getLogger(__name__)

HELD_OUT_TRACES = 0.2
LR = 3e-3
BATCH_GROUPS = 32
LOGISTIC_WEIGHT = 0.5
WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class Example:
    """A group as the model reads it, with what training needs."""

    inputs: Encoded
    good: int
    outcomes: list[float]     # NaN where unknown
    ranked: list[bool]        # in the softmax: every candidate but successes other than ``good``


def featurize(groups: Sequence[Group], config: EBMConfig) -> list[Example]:
    examples = []
    for g in groups:
        outcomes = [math.nan if o is None else o for o in g.outcomes]
        examples.append(Example(
            inputs=encode(g.state, g.candidates, buckets=config.buckets, state_buckets=config.state_buckets,
                          cross_buckets=config.cross_buckets),
            good=g.good, outcomes=outcomes,
            # Another candidate that also succeeded is no negative of the good one.
            ranked=[i == g.good or o != 1.0 for i, o in enumerate(outcomes)]))
    return examples


def fit(examples: list[Example], config: EBMConfig, *, epochs: int = 12, lr: float = LR,
        batch_groups: int = BATCH_GROUPS, logistic_weight: float = LOGISTIC_WEIGHT, seed: int = 0,
        progress: Callable[[int, float, EnergyModel], None] | None = None) -> tuple[EnergyModel, list[float]]:
    """The trained model and its mean training loss per epoch; ``progress(epoch, loss,
    model)`` after each epoch."""
    torch.manual_seed(seed)
    model = EnergyModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    losses = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for rows in torch.randperm(len(examples)).split(batch_groups):
            chunk = [examples[i] for i in rows.tolist()]
            flat = model(*batch([e.inputs for e in chunk]))                   # (N,)
            # Padding is never read: the softmax masks it and its outcome is NaN.
            energy, mask = pad_groups(flat, [len(e.outcomes) for e in chunk], 0.0)   # (G, K)
            width = energy.shape[1]
            positive = torch.tensor([e.good for e in chunk])                  # (G,)
            outcome = torch.tensor([e.outcomes + [math.nan] * (width - len(e.outcomes)) for e in chunk])
            ranked = torch.tensor([e.ranked + [False] * (width - len(e.ranked)) for e in chunk])
            loss = ebm_loss(energy, positive, ranked, outcome, logistic_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(chunk)
        losses.append(total / len(examples))
        if progress is not None:
            progress(epoch, losses[-1], model)
    return model.eval(), losses


def energies(model: EnergyModel, examples: Sequence[Example]) -> list[list[float]]:
    """Each group's energies, in candidate order."""
    model.eval()
    with torch.inference_mode():
        flat = model(*batch([e.inputs for e in examples])).tolist()
    out, start = [], 0
    for e in examples:
        out.append(flat[start:start + len(e.outcomes)])
        start += len(e.outcomes)
    return out


def llm_energies(groups: Sequence[Group]) -> list[list[float]]:
    """The LLM-only ranking as energies: -mean log-probability."""
    return [[-c.mean_logprob for c in g.candidates] for g in groups]


def auc(good: Sequence[float], bad: Sequence[float]) -> float:
    """P(a good candidate's energy is below a bad one's), ties counting half."""
    if not good or not bad:
        return math.nan
    ranked = sorted([(e, 0) for e in good] + [(e, 1) for e in bad])
    wins, bad_above, i = 0.0, len(bad), 0
    while i < len(ranked):          # walk energies upward; a tie block is counted together
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        tied_good = sum(1 for _, label in ranked[i:j] if label == 0)
        tied_bad = (j - i) - tied_good
        bad_above -= tied_bad
        wins += tied_good * (bad_above + 0.5 * tied_bad)
        i = j
    return wins / (len(good) * len(bad))


def pairs(group_energies: Sequence[Sequence[float]], groups: Sequence[Group]) -> tuple[list[float], list[float]]:
    """(energies, outcomes) of every candidate whose outcome is known."""
    es, ys = [], []
    for energy, g in zip(group_energies, groups):
        for e, o in zip(energy, g.outcomes):
            if o is not None:
                es.append(e)
                ys.append(o)
    return es, ys


def ranking_metrics(group_energies: Sequence[Sequence[float]], groups: Sequence[Group]) -> dict[str, Any]:
    """AUC over all known outcomes, top-1 (the good one has the lowest energy) over groups
    that have a good one, and per negative kind the share ranked below the good one."""
    es, ys = pairs(group_energies, groups)
    top1, beaten, seen = [], {}, {}
    for energy, g in zip(group_energies, groups):
        if g.good < 0:
            continue
        top1.append(min(range(len(energy)), key=energy.__getitem__) == g.good)
        for e, kind, o in zip(energy, g.kinds, g.outcomes):
            if o == 0.0:
                win = 1.0 if e > energy[g.good] else 0.5 if e == energy[g.good] else 0.0
                beaten[kind] = beaten.get(kind, 0.0) + win
                seen[kind] = seen.get(kind, 0) + 1
    return {"groups": len(groups), "pairs": len(es),
            "auc": auc([e for e, y in zip(es, ys) if y == 1.0], [e for e, y in zip(es, ys) if y == 0.0]),
            "top1": sum(top1) / max(len(top1), 1),
            "beaten_by_kind": {k: beaten[k] / seen[k] for k in sorted(seen)}}


def calibrate(cal_energies: Sequence[Sequence[float]], cal: Sequence[Group], test_energies: Sequence[Sequence[float]],
              test: Sequence[Group]) -> tuple[calibration.Calibration, dict[str, Any]]:
    """The calibration fitted on ``cal``, and ECE on ``test`` before and after it."""
    fit_e, fit_y = pairs(cal_energies, cal)
    mapping = calibration.fit(fit_e, fit_y)
    test_e, test_y = pairs(test_energies, test)
    return mapping, {"method": mapping.to_dict()["method"], "fitted_on_pairs": len(fit_e),
                     "ece_before": calibration.ece([calibration.uncalibrated(e) for e in test_e], test_y),
                     "ece_after": calibration.ece([mapping(e) for e in test_e], test_y)}


def save_checkpoint(path: Path, model: EnergyModel, mapping: calibration.Calibration, metrics: dict[str, Any],
                    data: dict[str, Any]) -> None:
    """What reranker.load_reranker reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "feature_version": FEATURE_VERSION,
                "config": asdict(model.config), "state_dict": model.state_dict(), "calibration": mapping.to_dict(),
                "metrics": metrics, "data": data}, path)


@dataclass(frozen=True)
class Splits:
    """One run's groups and where they came from. Held-out groups alternate between the
    calibration half and the test half, synthetic and trace groups each on their own, so
    that both halves get trace groups when there are any."""

    train: list[Group]
    calibration: list[Group]
    test: list[Group]               # the synthetic test groups, then the trace ones
    test_traces: list[Group]        # the test groups that came from traces
    files: list[TraceFile]
    train_traces: int
    held_traces: int


def split_groups(synthetic: int, held_out: int, traces: Sequence[Path], seed: int) -> Splits:
    """The groups of a run; InputError when the traces are unreadable or nothing is left
    to train or to measure on."""
    loaded, files = model_card.read_traces(traces, load_traces)
    train_traces, held_traces = split_traces(loaded, HELD_OUT_TRACES)
    train = synthetic_groups(synthetic, names=TRAIN_NAMES, seed=seed) + train_traces
    held = synthetic_groups(held_out, names=HELD_NAMES, seed=seed + 1)
    calibration_groups, test = held[0::2] + held_traces[0::2], held[1::2] + held_traces[1::2]
    if not train:
        raise InputError("no training groups: give --synthetic above 0 or --traces")
    if not calibration_groups or not test:
        raise InputError("too few held-out groups to calibrate and to test: give --held-out 2 or more")
    return Splits(train, calibration_groups, test, held_traces[1::2], files, len(train_traces), len(held_traces))


def main(argv: Sequence[str] | None = None) -> int:
    """``hybrid-agent train ebm ARGS``: trains, then writes the checkpoint, its model card
    and its metrics. Bad input is one ``error:`` line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hybrid-agent train ebm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--card", type=Path, help=f"the model card (default: {model_card.CARD_FILE} next to --out)")
    parser.add_argument("--traces", type=Path, action="append", default=[], metavar="FILE",
                        help="JSONL trace groups (format in data.py); repeatable")
    parser.add_argument("--synthetic", type=int, default=1500, help="synthetic training groups")
    parser.add_argument("--held-out", type=int, default=600, help="synthetic held-out groups")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model_card.show_progress(log)
    # The model is tiny: more threads only add synchronisation on a busy two-core machine.
    torch.set_num_threads(1)
    try:
        train_and_write(args, model_card.command("ebm", argv))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def train_and_write(args: argparse.Namespace, command: str) -> None:
    """The whole run behind ``main``: groups, training, evaluation, then the checkpoint, the
    card and the metrics file; ``command`` is recorded in the card."""
    started = time.perf_counter()
    splits = split_groups(args.synthetic, args.held_out, args.traces, args.seed)
    config = EBMConfig()
    train_x, cal_x, test_x = (featurize(groups, config) for groups in (splits.train, splits.calibration, splits.test))
    log.info("groups: train %d (%d from traces), calibration %d, test %d; %.1f s to build and featurize",
             len(splits.train), splits.train_traces, len(splits.calibration), len(splits.test),
             time.perf_counter() - started)

    def progress(epoch: int, loss: float, model: EnergyModel) -> None:
        m = ranking_metrics(energies(model, test_x), splits.test)
        log.info("epoch %d/%d  loss %.4f  held-out AUC %.3f  top-1 %.3f", epoch, args.epochs, loss, m["auc"], m["top1"])

    model, losses = fit(train_x, config, epochs=args.epochs, seed=args.seed, progress=progress)
    test_energies = energies(model, test_x)
    mapping, calibrated = calibrate(energies(model, cal_x), splits.calibration, test_energies, splits.test)
    metrics = {"test": ranking_metrics(test_energies, splits.test) | calibrated,
               "llm_only_test": ranking_metrics(llm_energies(splits.test), splits.test),
               "final_loss": losses[-1], "epoch_losses": losses}
    if splits.test_traces:     # the real steps alone: the synthetic ones outnumber them
        first = len(splits.test) - len(splits.test_traces)
        metrics["test_traces"] = ranking_metrics(test_energies[first:], splits.test_traces)
        metrics["llm_only_test_traces"] = ranking_metrics(llm_energies(splits.test_traces), splits.test_traces)
    data = {"synthetic_train_groups": args.synthetic, "synthetic_held_out_groups": args.held_out,
            "trace_files": [{"path": str(f.path), "groups": f.count} for f in splits.files],
            "train_groups": len(splits.train), "train_trace_groups": splits.train_traces,
            "held_out_trace_groups": splits.held_traces, "calibration_groups": len(splits.calibration),
            "test_groups": len(splits.test), "test_trace_groups": len(splits.test_traces),
            "epochs": args.epochs, "seed": args.seed, "lr": LR, "batch_groups": BATCH_GROUPS,
            "logistic_weight": LOGISTIC_WEIGHT}
    seconds = time.perf_counter() - started
    # The checkpoint keeps the duration; the card and the metrics file stay reproducible.
    save_checkpoint(args.out, model, mapping, metrics | {"train_seconds": seconds}, data)
    about = {"parameters": sum(p.numel() for p in model.parameters()), "bytes": args.out.stat().st_size,
             "config": asdict(config), "feature_version": FEATURE_VERSION}
    card = model_card.card_path(args.out, args.card)
    model_card.write(card, card_text(command, about, data, metrics, splits.files), model_card.metrics_path(args.out),
                     {"command": command, "model": about, "data": data, "metrics": metrics})

    test_m, llm = metrics["test"], metrics["llm_only_test"]
    log.info("held out (%d groups, %d pairs): AUC %.3f  top-1 %.3f  (LLM only: AUC %.3f  top-1 %.3f)",
             test_m["groups"], test_m["pairs"], test_m["auc"], test_m["top1"], llm["auc"], llm["top1"])
    log.info("calibration %s on %d pairs: ECE %.3f -> %.3f", calibrated["method"], calibrated["fitted_on_pairs"],
             calibrated["ece_before"], calibrated["ece_after"])
    log.info("negatives ranked below the good call: %s",
             "  ".join(f"{k} {v:.2f}" for k, v in test_m["beaten_by_kind"].items()))
    log.info("wrote %s (%d parameters, %d bytes) and %s in %.1f s", args.out, about["parameters"], about["bytes"],
             card, seconds)


def card_text(command: str, about: dict[str, Any], data: dict[str, Any], metrics: dict[str, Any],
              files: Sequence[TraceFile]) -> str:
    """The model card: what the model is, what it was trained and measured on, how well it
    ranks and how to make it again."""
    c, test, llm = about["config"], metrics["test"], metrics["llm_only_test"]
    n = model_card.number
    rows = [("EBM", test), ("LLM only (-mean log-probability)", llm)]
    if "test_traces" in metrics:
        rows += [("EBM, trace groups only", metrics["test_traces"]),
                 ("LLM only, trace groups only", metrics["llm_only_test_traces"])]
    table = "\n".join(f"| {name} | {m['groups']} | {m['pairs']} | {n(m['auc'])} | {n(m['top1'])} |" for name, m in rows)
    kinds = "\n".join(f"| {kind} | {n(share)} | {n(llm['beaten_by_kind'].get(kind, math.nan))} |"
                      for kind, share in test["beaten_by_kind"].items()) or "| (none) | | |"
    losses = ", ".join(f"{loss:.4f}" for loss in metrics["epoch_losses"])
    hard = ", ".join(f"`{f}`" for f in FEATURES)
    return f"""# Model card: energy-based reranker (EBM)

Generated by `hybrid_agent/models/ebm/train.py`; retrain rather than edit.

## Intended use

Ranks the candidate tool calls proposed for one agent step: the lower a call's energy, the
likelier it is to succeed. The agent loop acts on the lowest-energy allowed call, and the
calibrated P(success) of it reaches the policy engine as a risk signal. It reorders
candidates only: the policy rules, the sandbox and the approvals still check every call.

## Model

Hashed ids (`features.py`, feature version {about["feature_version"]}) of the state
({c["state_buckets"]} buckets), of the candidate ({c["buckets"]}) and of goal-word x call-word
crosses ({c["cross_buckets"]}), each mean-pooled to dimension {c["dim"]}; an MLP (hidden {c["hidden"]}, ReLU,
dropout {c["dropout"]}) reads [state, candidate, state * candidate, crosses] to an energy, plus a
linear term on {c["features"]} hard features ({hard}).
{about["parameters"]} parameters; the checkpoint is {about["bytes"]} bytes.

## Training data

- Synthetic (`data.py`): {data["synthetic_train_groups"]} training groups of everyday shell and file goals, each with
  its good call, near-miss negatives (`negatives.py`), another goal's call and sometimes a
  truncated one; {data["synthetic_held_out_groups"]} held-out groups drawn from names (files, folders, texts) never
  trained on.
{model_card.traces_lines(files, "groups")}
- Held out from traces: the groups whose goal's crc32 % 1000 < {HELD_OUT_TRACES * 1000:.0f}
  (every step of a task on one side): {data["held_out_trace_groups"]} held out, {data["train_trace_groups"]} trained on.
- In all: {data["train_groups"]} training groups. The held-out groups alternate between a
  calibration half ({data["calibration_groups"]} groups) and a test half ({data["test_groups"]} groups,
  {data["test_trace_groups"]} of them from traces): no number below is of data the model or its
  calibration has seen.

## Training

Listwise InfoNCE over each group's candidates (the one that succeeded is the class) plus
{data["logistic_weight"]} x a logistic term (sigmoid(-energy) against every known outcome);
AdamW (lr {data["lr"]}, weight decay {WEIGHT_DECAY}), {data["batch_groups"]} groups a batch,
epochs: {data["epochs"]}, seed {data["seed"]}. Mean training loss per epoch: {losses}.

## Held-out metrics (test half)

| ranking | groups | pairs | AUC | top-1 |
|---|---|---|---|---|
{table}

AUC: P(a candidate that succeeded has lower energy than one that failed), over every
candidate with a known outcome. Top-1: the share of groups with a success whose lowest
energy is that success.

Calibration ({test["method"]}, fitted on {test["fitted_on_pairs"]} pairs of the calibration half): expected
calibration error {n(test["ece_before"])} before (sigmoid(-energy)), {n(test["ece_after"])} after.

Share of each negative kind ranked below the good call:

| negative kind | EBM | LLM only |
|---|---|---|
{kinds}

## Limitations

- The synthetic goals are short single steps in a small workspace, and their
  log-probabilities are simulated; unless the traces are many, the numbers above say how
  it ranks near misses of such steps, not how it does on real tasks.
- Lexical: it sees hashed words and byte n-grams, not what a command does.

## Retraining

```
{command}
```
"""


if __name__ == "__main__":
    raise SystemExit(main())
