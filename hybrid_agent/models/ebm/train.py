"""Trains the energy model on groups (a state, its candidates, which one succeeded, each
one's outcome), calibrates it on held-out groups and writes the checkpoint:

    python -m hybrid_agent.models.ebm.train --out hybrid_agent/models/ebm/ebm.pt [--traces FILE ...]

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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hybrid_agent.models.ebm import calibration
from hybrid_agent.models.ebm.data import HELD_NAMES, TRAIN_NAMES, Group, load_traces, split_traces, synthetic_groups
from hybrid_agent.models.ebm.features import FEATURE_VERSION, Encoded, batch, encode
from hybrid_agent.models.ebm.losses import ebm_loss, pad_groups
from hybrid_agent.models.ebm.model import EBMConfig, EnergyModel
from hybrid_agent.models.ebm.reranker import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, DEFAULT_CHECKPOINT

log = logging.getLogger(__name__)

HELD_OUT_TRACES = 0.2


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


def fit(examples: list[Example], config: EBMConfig, *, epochs: int = 12, lr: float = 3e-3,
        batch_groups: int = 32, logistic_weight: float = 0.5, seed: int = 0,
        progress: Callable[[int, float, EnergyModel], None] | None = None) -> tuple[EnergyModel, list[float]]:
    """The trained model and its mean training loss per epoch; ``progress(epoch, loss,
    model)`` after each epoch."""
    torch.manual_seed(seed)
    model = EnergyModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--traces", type=Path, action="append", default=[], metavar="FILE",
                        help="JSONL trace groups (format in data.py); repeatable")
    parser.add_argument("--synthetic", type=int, default=1500, help="synthetic training groups")
    parser.add_argument("--held-out", type=int, default=600, help="synthetic held-out groups")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The model is tiny: more threads only add synchronisation on a busy two-core machine.
    torch.set_num_threads(1)

    started = time.perf_counter()
    traces = [g for path in args.traces for g in load_traces(path)]
    train_traces, held_traces = split_traces(traces, HELD_OUT_TRACES)
    train = synthetic_groups(args.synthetic, names=TRAIN_NAMES, seed=args.seed) + train_traces
    held = synthetic_groups(args.held_out, names=HELD_NAMES, seed=args.seed + 1) + held_traces
    cal, test = held[0::2], held[1::2]
    config = EBMConfig()
    train_x, cal_x, test_x = (featurize(groups, config) for groups in (train, cal, test))
    log.info("groups: train %d (%d from traces), calibration %d, test %d; %.1f s to build and featurize",
             len(train), len(train_traces), len(cal), len(test), time.perf_counter() - started)

    def progress(epoch: int, loss: float, model: EnergyModel) -> None:
        m = ranking_metrics(energies(model, test_x), test)
        log.info("epoch %d/%d  loss %.4f  held-out AUC %.3f  top-1 %.3f", epoch, args.epochs, loss, m["auc"], m["top1"])

    model, losses = fit(train_x, config, epochs=args.epochs, seed=args.seed, progress=progress)
    test_energies = energies(model, test_x)
    mapping, calibrated = calibrate(energies(model, cal_x), cal, test_energies, test)
    metrics = {"test": ranking_metrics(test_energies, test) | calibrated,
               "llm_only_test": ranking_metrics(llm_energies(test), test),
               "final_loss": losses[-1], "train_seconds": time.perf_counter() - started}
    data = {"train_groups": len(train), "train_trace_groups": len(train_traces), "calibration_groups": len(cal),
            "test_groups": len(test), "epochs": args.epochs, "seed": args.seed,
            "traces": [str(p) for p in args.traces]}
    save_checkpoint(args.out, model, mapping, metrics, data)
    test_m, llm = metrics["test"], metrics["llm_only_test"]
    log.info("held out (%d groups, %d pairs): AUC %.3f  top-1 %.3f  (LLM only: AUC %.3f  top-1 %.3f)",
             test_m["groups"], test_m["pairs"], test_m["auc"], test_m["top1"], llm["auc"], llm["top1"])
    log.info("calibration %s on %d pairs: ECE %.3f -> %.3f", calibrated["method"], calibrated["fitted_on_pairs"],
             calibrated["ece_before"], calibrated["ece_after"])
    log.info("negatives ranked below the good call: %s",
             "  ".join(f"{k} {v:.2f}" for k, v in test_m["beaten_by_kind"].items()))
    params = sum(p.numel() for p in model.parameters())
    log.info("wrote %s (%d parameters, %d bytes) in %.1f s", args.out, params, args.out.stat().st_size,
             metrics["train_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
