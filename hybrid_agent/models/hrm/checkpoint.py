"""Building either variant by name, and what a checkpoint holds: the weights, the model's
configuration, the names behind its outputs, the feature layout and text encoder its
inputs came from, and its training metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hybrid_agent.models.checkpoints import read_checkpoint
from hybrid_agent.models.hrm.flat import FlatConfig, FlatTransformer
from hybrid_agent.models.hrm.model import HRM, HRMConfig
from hybrid_agent.models.hrm.state import FEATURE_VERSION

FORMAT = "hybrid-agent/hrm"
VERSION = 1
VARIANTS = {"hrm": (HRMConfig, HRM), "flat": (FlatConfig, FlatTransformer)}
Model = HRM | FlatTransformer


class HRMError(ValueError):
    """A checkpoint that is missing, unreadable, or not one this code can use."""


def build_model(variant: str, **config: Any) -> Model:
    """A fresh model of ``variant`` ("hrm" or "flat"); ``config`` fills its config class."""
    if variant not in VARIANTS:
        raise HRMError(f"unknown HRM variant {variant!r}; expected one of {sorted(VARIANTS)}")
    config_class, model_class = VARIANTS[variant]
    return model_class(config_class(**config))


@dataclass
class Checkpoint:
    variant: str
    model: Model
    tools: list[str]          # the tool head's outputs, in order
    experts: list[str]        # the expert head's outputs, in order
    encoder: str              # the TextEncoder's name its inputs came from
    max_segments: int         # deep supervision's segment count: the planner's limit
    metrics: dict[str, Any]


def save(checkpoint: Checkpoint, path: Path) -> None:
    """Weights are stored as float16, so the shipped HRM and flat checkpoints stay small;
    ``load_state_dict`` casts them back to the model's float32 on load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint.model.state_dict().items()}
    torch.save({"format": FORMAT, "version": VERSION, "feature_version": FEATURE_VERSION,
                "variant": checkpoint.variant, "config": asdict(checkpoint.model.config),
                "state_dict": weights, "tools": checkpoint.tools,
                "experts": checkpoint.experts, "encoder": checkpoint.encoder,
                "max_segments": checkpoint.max_segments, "metrics": checkpoint.metrics}, path)


def load(path: Path) -> Checkpoint:
    """The checkpoint at ``path``, its model in eval mode on the CPU."""
    saved = read_checkpoint(path, fmt=FORMAT, versions=(VERSION, FEATURE_VERSION), error=HRMError,
                            train_module="hybrid_agent.models.hrm.train")
    try:
        config_class = VARIANTS[saved["variant"]][0]
        model = build_model(saved["variant"], **{f.name: saved["config"][f.name] for f in fields(config_class)})
        model.load_state_dict(saved["state_dict"])
        return Checkpoint(saved["variant"], model.eval(), list(saved["tools"]), list(saved["experts"]),
                          str(saved["encoder"]), int(saved["max_segments"]), dict(saved["metrics"]))
    except (KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise HRMError(f"{path} does not match the HRM code: {exc!r}") from exc


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
