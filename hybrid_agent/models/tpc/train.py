"""Trains the tool-policy classifier on the policy corpora (dangerous = 1, benign = 0) and
optionally on traces, picks its threshold on a held-out split, and writes the checkpoint
and its model card:

    python -m hybrid_agent.models.tpc.train --out hybrid_agent/models/tpc/tpc.pt

The split is by a hash of the call, per label, before augmentation: no variant of a
held-out call is trained on. Augmentation rewrites what should not matter (file names,
the scope prefix, flag order, quoting) so that the model learns less of the exact strings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hybrid_agent.models.tpc import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, DEFAULT_CHECKPOINT, predict
from hybrid_agent.models.tpc.features import FEATURE_VERSION, call_ids, canonical_text, collate, goal_ids
from hybrid_agent.models.tpc.model import TPCConfig, ToolPolicyClassifier
from hybrid_agent.policies.tool_schema import ToolCall, validate_call

log = logging.getLogger(__name__)

CORPUS = Path(__file__).parents[3] / "tests" / "policies" / "corpus"
HELD_OUT = 0.2
MAX_FPR = 0.01


@dataclass(frozen=True)
class Example:
    goal: str
    call: ToolCall
    label: float           # 1.0 dangerous, 0.0 benign
    hard: bool = False     # the corpus says the rules must deny it


def load_corpus(directory: Path) -> list[Example]:
    examples = []
    for name, label in (("dangerous.jsonl", 1.0), ("benign.jsonl", 0.0)):
        for row in _jsonl(directory / name):
            examples.append(Example(row["goal"], validate_call(row["call"]), label, bool(row.get("hard_deny", False))))
    return examples


def load_traces(path: Path) -> list[Example]:
    """Lines ``{"goal", "call", "label"}``, label 1 (dangerous) or 0, e.g. policy-denied
    candidates from the journal."""
    return [Example(row["goal"], validate_call(row["call"]), float(bool(row["label"]))) for row in _jsonl(path)]


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        yield from (json.loads(line) for line in lines if line.strip())


def split(examples: list[Example], fraction: float = HELD_OUT) -> tuple[list[Example], list[Example]]:
    """(train, held out): per label, the ``fraction`` of calls with the lowest hash. Equal
    calls hash equally, so a call never lands on both sides."""
    train, held = [], []
    for label in (0.0, 1.0):
        group = [(zlib.crc32(e.call.compact().encode()), e) for e in examples if e.label == label]
        if not group:
            continue
        cut = sorted(h for h, _ in group)[max(1, round(fraction * len(group))) - 1]
        held += [e for h, e in group if h <= cut]
        train += [e for h, e in group if h > cut]
    return train, held


# -- augmentation -------------------------------------------------------------------------

SCOPE = "/srv/agent/ws/"    # the corpora's scope (corpus/README.md): relative paths mean the same
STEMS = ("report", "orders", "users", "app", "metrics", "notes", "main", "utils", "events", "inventory")
# A relative file name (no "/", "~" or "." just before it: system and hidden paths keep theirs).
_EXTENSIONS = "csv|log|txt|json|ya?ml|py|ini|cfg|conf|toml|md|sql|gz|tgz"
_FILE = re.compile(rf"(?<![\w./~-])((?:[\w-]+/)*)[a-z][\w-]*\.({_EXTENSIONS})\b")
_SHORT_FLAGS = re.compile(r"(?<=\s)-([a-zA-Z]{2,3})(?=\s|$)")
_PLAIN_PATH = re.compile(r"(?<=\s)(/[\w./-]+)(?=\s|$)")     # no globs: quoting one changes it
_SINGLE_QUOTED = re.compile(r"'([^'\"\\$`!\n]*)'")          # nothing the shell expands in double quotes

Rewrite = Callable[[str, random.Random], str]


def _unscope(text: str, rng: random.Random) -> str:
    return text.replace(SCOPE, rng.choice(("", "./")))


def _rename(text: str, rng: random.Random) -> str:
    return _FILE.sub(lambda m: f"{m[1]}{rng.choice(STEMS)}.{m[2]}", text)


def _reorder_flags(text: str, rng: random.Random) -> str:
    def reorder(match: re.Match[str]) -> str:
        letters = rng.sample(match[1], len(match[1]))
        return "-" + "".join(letters) if rng.random() < 0.5 else " ".join(f"-{c}" for c in letters)
    return _SHORT_FLAGS.sub(reorder, text)


def _requote(text: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return _PLAIN_PATH.sub(lambda m: f"'{m[1]}'", text)
    return _SINGLE_QUOTED.sub(lambda m: f'"{m[1]}"', text)


# Which rewrites keep each argument's meaning (and so the label).
REWRITES: dict[str, tuple[Rewrite, ...]] = {
    "cmd": (_unscope, _rename, _reorder_flags, _requote),
    "code": (_unscope, _rename, _requote),
    "path": (_unscope, _rename),
    "content": (_unscope, _rename),
    "old": (_unscope, _rename),
    "new": (_unscope, _rename),
}


def augment(example: Example, rng: random.Random, copies: int) -> list[Example]:
    """Up to ``copies`` distinct variants of the example, each with a random subset of the
    rewrites applied to each argument."""
    seen = {example.call.compact()}
    variants = []
    for _ in range(copies):
        args = dict(example.call.args)
        for key, rewrites in REWRITES.items():
            if isinstance(args.get(key), str):
                for rewrite in rewrites:
                    if rng.random() < 0.5:
                        args[key] = rewrite(args[key], rng)
        call = ToolCall(tool=example.call.tool, args=args)
        if call.compact() not in seen:
            seen.add(call.compact())
            variants.append(replace(example, call=call))
    return variants


# -- training and evaluation --------------------------------------------------------------

def fit(examples: list[Example], config: TPCConfig, *, epochs: int = 10, lr: float = 3e-3,
        batch_size: int = 64, smoothing: float = 0.05, seed: int = 0) -> tuple[ToolPolicyClassifier, list[float]]:
    """The trained model and its mean training loss per epoch."""
    torch.manual_seed(seed)
    model = ToolPolicyClassifier(config)
    call_bags = [call_ids(e.call, config.buckets) for e in examples]
    goal_bags = [goal_ids(e.goal, config.goal_buckets) for e in examples]
    labels = torch.tensor([e.label for e in examples])
    # Smoothed targets keep the model from certainty it has not earned on a small corpus; a
    # held-out benign call it has never seen the like of then does not score 0.999.
    targets = labels * (1 - 2 * smoothing) + smoothing
    # Both classes weigh the same, however many variants each got.
    positives = float(labels.sum())
    pos_weight = torch.tensor((len(examples) - positives) / max(positives, 1.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(examples)).split(batch_size):
            rows = batch.tolist()
            logits = model(*collate([call_bags[i] for i in rows]), *collate([goal_bags[i] for i in rows]))
            loss = F.binary_cross_entropy_with_logits(logits, targets[batch], pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        losses.append(total / len(examples))
        log.info("epoch %d/%d  loss %.4f", epoch + 1, epochs, losses[-1])
    return model, losses


def score(model: ToolPolicyClassifier, examples: list[Example]) -> list[float]:
    config = model.config
    model.eval()
    return predict(model, [call_ids(e.call, config.buckets) for e in examples],
                   [goal_ids(e.goal, config.goal_buckets) for e in examples])


def choose_threshold(benign_scores: list[float], max_fpr: float = MAX_FPR) -> float:
    """The lowest threshold, rounded up to two decimals, that flags (P > threshold) at most
    ``max_fpr`` of the benign scores."""
    allowed = math.floor(max_fpr * len(benign_scores))
    ranked = sorted(benign_scores, reverse=True)
    return math.ceil(ranked[allowed] * 100) / 100 if allowed < len(ranked) else 0.0


def auc(scores: list[float], labels: list[float]) -> float:
    """The probability that a dangerous example outscores a benign one (ties count half)."""
    positive = [s for s, y in zip(scores, labels) if y == 1.0]
    negative = [s for s, y in zip(scores, labels) if y == 0.0]
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def evaluate(scores: list[float], examples: list[Example], threshold: float) -> dict[str, float]:
    flagged = [s > threshold for s in scores]
    dangerous = [f for f, e in zip(flagged, examples) if e.label == 1.0]
    hard = [f for f, e in zip(flagged, examples) if e.hard]
    benign = [f for f, e in zip(flagged, examples) if e.label == 0.0]
    true_positives = sum(dangerous)
    return {
        "n_dangerous": len(dangerous),
        "n_benign": len(benign),
        "precision": true_positives / max(sum(flagged), 1),
        "recall": true_positives / max(len(dangerous), 1),
        "recall_hard_deny": sum(hard) / max(len(hard), 1),
        "fpr": sum(benign) / max(len(benign), 1),
        "auc": auc(scores, [e.label for e in examples]),
    }


def _half_rounded(model: ToolPolicyClassifier) -> ToolPolicyClassifier:
    """The model as the checkpoint stores it (half precision), so the threshold and the
    metrics are those of the shipped weights."""
    model.load_state_dict({name: t.half().float() for name, t in model.state_dict().items()})
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--card", type=Path, help="the model card (default: MODEL_CARD.md next to --out)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="holds dangerous.jsonl and benign.jsonl")
    parser.add_argument("--traces", type=Path, action="append", default=[], metavar="FILE",
                        help='JSONL of {"goal", "call", "label"}; repeatable')
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--copies", type=int, default=6, help="augmented variants per training example")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The model is tiny: more threads only add synchronisation (ten times slower on a busy
    # two-core machine, with the same result).
    torch.set_num_threads(1)

    started = time.perf_counter()
    corpus = load_corpus(args.corpus)
    traces = [e for path in args.traces for e in load_traces(path)]
    train, held = split(corpus + traces)
    rng = random.Random(args.seed)
    augmented = [variant for e in train for variant in (e, *augment(e, rng, args.copies))]
    log.info("train: %d examples (%d before augmentation), held out: %d", len(augmented), len(train), len(held))
    config = TPCConfig()
    model, losses = fit(augmented, config, epochs=args.epochs, seed=args.seed)
    model = _half_rounded(model)
    held_scores = score(model, held)
    benign = sorted(((s, e) for s, e in zip(held_scores, held) if e.label == 0.0), key=lambda pair: pair[0])
    threshold = choose_threshold([s for s, _ in benign])
    metrics = {"held_out": evaluate(held_scores, held, threshold),
               "top_benign": {"score": benign[-1][0], "call": canonical_text(benign[-1][1].call)},
               "corpus": evaluate(score(model, corpus), corpus, threshold),
               "final_loss": losses[-1], "train_seconds": time.perf_counter() - started}
    data = {"corpus": _counts(corpus), "traces": _counts(traces), "train": _counts(train),
            "train_augmented": _counts(augmented), "held_out": _counts(held), "copies": args.copies,
            "epochs": args.epochs, "seed": args.seed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "feature_version": FEATURE_VERSION,
                "config": asdict(config), "state_dict": {k: t.half() for k, t in model.state_dict().items()},
                "threshold": threshold, "metrics": metrics, "data": data}, args.out)
    card = args.card or args.out.with_name("MODEL_CARD.md")
    card.write_text(model_card(config, threshold, metrics, data), encoding="utf-8")
    log.info("threshold %.2f  held out %s  (%.1f s)", threshold,
             {k: round(v, 3) for k, v in metrics["held_out"].items()}, metrics["train_seconds"])
    log.info("wrote %s (%d bytes) and %s", args.out, args.out.stat().st_size, card)
    return 0


def _counts(examples: list[Example]) -> dict[str, int]:
    dangerous = sum(e.label == 1.0 for e in examples)
    return {"dangerous": dangerous, "benign": len(examples) - dangerous}


def model_card(config: TPCConfig, threshold: float, metrics: dict[str, Any], data: dict[str, Any]) -> str:
    held, corpus, top = metrics["held_out"], metrics["corpus"], metrics["top_benign"]

    def row(name: str, m: dict[str, float]) -> str:
        return (f"| {name} | {m['n_dangerous']} / {m['n_benign']} | {m['precision']:.3f} | {m['recall']:.3f} | "
                f"{m['recall_hard_deny']:.3f} | {m['fpr']:.3f} | {m['auc']:.3f} |")

    def counts(key: str) -> str:
        return f"{data[key]['dangerous']} dangerous, {data[key]['benign']} benign"

    return f"""# Model card: tool-policy classifier (TPC)

Generated by `hybrid_agent/models/tpc/train.py`; retrain rather than edit.

## Intended use

Estimates P(dangerous) for one tool call given the task's goal. The policy engine asks it
only about calls its rules **allow**, and only to raise `allow` to `approve` (a human
decides) when P > `thresholds.tpc` in the policy file. It never lowers a rule's decision and
is never the only safety layer: the parsed-command rules, the sandbox and the approvals
come first.

## Model

Hashed features (`features.py`, feature version {FEATURE_VERSION}): word unigrams and bigrams and byte
3-5-grams of the canonical call text `tool: <name> | <string args>` (lowercased)
into {config.buckets} buckets; the goal's words into a separate table of {config.goal_buckets}. Each side is
mean-pooled by an EmbeddingBag of dimension {config.dim}; the two vectors, concatenated, go through an MLP
(hidden {config.hidden}, ReLU, dropout {config.dropout}) to one logit. While training, the whole goal is dropped with
probability {config.goal_dropout}, so that the call itself must carry the verdict. Weights are stored in half
precision; the threshold and metrics below are those of the stored weights.

## Training data

- `tests/policies/corpus/dangerous.jsonl` (label 1) and `benign.jsonl` (label 0): {counts("corpus")}
  (synthetic, hand-written; see the corpus README).
- Traces (`--traces`): {counts("traces")}.
- Held out: {HELD_OUT:.0%} of each label, chosen by a hash of the call before augmentation: {counts("held_out")}.
- Trained on the rest, {counts("train")}, each with up to {data["copies"]} augmented variants
  ({counts("train_augmented")} in all): file names swapped for others, the corpus scope prefix
  `{SCOPE}` dropped or made `./`, combined short flags reordered or split (`-rf` -> `-fr`, `-r -f`),
  plain absolute paths quoted, single quotes made double where nothing would expand.
- AdamW (lr 3e-3, weight decay 0.01), class-balanced BCE on targets smoothed to 0.05 / 0.95,
  batch 64, {data["epochs"]} epochs, seed {data["seed"]}: {metrics["train_seconds"]:.0f} s on one CPU thread,
  final training loss {metrics["final_loss"]:.4f}. The smoothing keeps scores away from 0 and 1: read
  them as a ranking with a tested cut-off, not as calibrated probabilities.

## Threshold

**{threshold:.2f}** (flag when P > {threshold:.2f}): the lowest value, rounded up to two decimals, at which at
most {MAX_FPR:.0%} of the held-out benign calls are flagged. Put it in the policy's `thresholds.tpc`.
With {held["n_benign"]} held-out benign calls that allows {math.floor(MAX_FPR * held["n_benign"])}: the threshold
sits just above the highest-scoring one, `{top["call"]}` (P = {top["score"]:.3f}).
So few calls bound the true benign rate loosely: by the rule of three, up to about
{3 / held["n_benign"]:.0%} at 95% confidence.

## Metrics at the threshold

| split | dangerous / benign | precision | recall | recall (hard_deny) | benign FPR | AUC |
|---|---|---|---|---|---|---|
{row("held out", held)}
{row("whole corpus (mostly trained on)", corpus)}

The held-out numbers are the honest ones, and still optimistic: the corpus has many near
variants of the same dangerous commands, so a held-out call often has a cousin in training.

## Limitations

- Small and lexical: it sees words and byte n-grams, not what a command does. Renaming,
  encoding or building a command at run time can move its score; it can be gamed.
- Trained on a small synthetic corpus written with the scope `{SCOPE}`; real workspaces,
  tools and habits differ, and its false-positive rate on real traffic is unmeasured.
- The goal is an input: an alarming goal can raise the score of a harmless call.
- It only adds approvals; the rules remain what denies.

## Retraining

```
python -m hybrid_agent.models.tpc.train --out hybrid_agent/models/tpc/tpc.pt [--traces FILE ...]
```
"""


if __name__ == "__main__":
    raise SystemExit(main())
