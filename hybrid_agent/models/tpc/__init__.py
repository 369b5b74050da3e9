"""The tool-policy classifier: P(dangerous) for a (goal, tool call) pair. The policy engine
consults it only for calls its rules allow, and only to raise ``allow`` to ``approve``;
it is never the only safety layer. ``load_tpc()`` loads the checkpoint that ships with the
package (see MODEL_CARD.md); ``python -m hybrid_agent.models.tpc.train`` retrains it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from hybrid_agent.models.checkpoints import read_checkpoint

from hybrid_agent.models.tpc.features import FEATURE_VERSION, call_ids, collate, goal_ids
from hybrid_agent.models.tpc.model import TPCConfig, ToolPolicyClassifier
from hybrid_agent.policies.tool_schema import ToolCall

DEFAULT_CHECKPOINT = Path(__file__).with_name("tpc.pt")
CHECKPOINT_FORMAT = "hybrid-agent/tpc"
CHECKPOINT_VERSION = 1


class TPCError(ValueError):
    """The checkpoint is missing, unreadable, or not one this code can use."""


def predict(model: ToolPolicyClassifier, call_bags: Sequence[list[int]],
            goal_bags: Sequence[list[int]]) -> list[float]:
    """P(dangerous) for featurized examples; the model must be in eval mode (switching
    modes walks every submodule, which costs more than this tiny forward)."""
    with torch.inference_mode():
        logits = model(*collate(call_bags), *collate(goal_bags))
    return torch.sigmoid(logits).tolist()


class TPCScorer:
    """A loaded classifier; ``scorer(goal, call)`` is the engine's ``CallClassifier``."""

    def __init__(self, model: ToolPolicyClassifier, threshold: float, metrics: dict[str, Any]) -> None:
        self.model = model.eval()
        self.threshold = threshold    # the held-out choice: flag when P > threshold
        self.metrics = metrics

    def __call__(self, goal: str, call: ToolCall) -> float:
        return self.batch([(goal, call)])[0]

    def batch(self, pairs: Sequence[tuple[str, ToolCall]]) -> list[float]:
        config = self.model.config
        return predict(self.model, [call_ids(call, config.buckets) for _, call in pairs],
                       [goal_ids(goal, config.goal_buckets) for goal, _ in pairs])


def load_tpc(path: Path | None = None) -> TPCScorer:
    """The classifier saved at ``path`` (default: the shipped checkpoint), on the CPU."""
    path = path or DEFAULT_CHECKPOINT
    saved = read_checkpoint(path, fmt=CHECKPOINT_FORMAT, versions=(CHECKPOINT_VERSION, FEATURE_VERSION),
                            error=TPCError, train_module="hybrid_agent.models.tpc.train")
    try:
        config = TPCConfig(**{f.name: saved["config"][f.name] for f in fields(TPCConfig)})
        model = ToolPolicyClassifier(config)
        # Weights are stored in half precision to keep the file small; compute runs in float32.
        model.load_state_dict({name: t.float() for name, t in saved["state_dict"].items()})
        return TPCScorer(model, float(saved["threshold"]), dict(saved["metrics"]))
    except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise TPCError(f"{path} does not match the TPC model: {exc!r}") from exc
