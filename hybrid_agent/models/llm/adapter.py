"""Loading a LoRA adapter (made by ``sft.train_sft``) into a causal LM, merged into its
weights.

Merging (W + B·A·alpha/r, once at load) rather than keeping peft's wrapper means inference
costs exactly what the base model costs, and the backend's prompt KV cache and drafting
code see a plain transformers model, not a peft one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from transformers import PreTrainedModel

from .base import LLMError

ADAPTER_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes beside the weights
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # peft's current and older names


class AdapterError(LLMError):
    """A LoRA adapter directory is missing, malformed or does not fit the model."""


def load_adapter(model: PreTrainedModel, adapter_dir: Path) -> PreTrainedModel:
    """``model`` with the LoRA adapter in ``adapter_dir`` merged into its weights (in place:
    the model passed in is the one changed and returned, in eval mode). AdapterError, naming
    the directory, when it is not a LoRA adapter for this model."""
    adapter_dir = Path(adapter_dir)
    _check_dir(adapter_dir)
    # Imported here: peft takes a while to import, and only runs with an adapter need it.
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            # peft only warns when the checkpoint lacks some of the adapter's weights; those
            # would stay at their initial values (B = 0, a silent no-op): refuse instead.
            warnings.filterwarnings("error", message=".*missing adapter keys.*")
            wrapped = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
        merged = wrapped.merge_and_unload()
    except Exception as exc:
        raise AdapterError(f"cannot load the LoRA adapter in {adapter_dir}: {exc}") from exc
    return merged.eval()


def _check_dir(adapter_dir: Path) -> None:
    """The cheap checks, with messages that say what is wrong before peft gets a chance to
    say it less clearly (or to look the path up on the Hugging Face hub)."""
    if not adapter_dir.is_dir():
        raise AdapterError(f"no LoRA adapter at {adapter_dir}: not a directory")
    config_file = adapter_dir / ADAPTER_CONFIG
    if not config_file.is_file():
        raise AdapterError(f"{adapter_dir} is not a LoRA adapter: it has no {ADAPTER_CONFIG}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{config_file} is not readable JSON: {exc}") from exc
    kind = config.get("peft_type") if isinstance(config, dict) else None
    if kind != "LORA":
        # Only LoRA's update is a weight delta that merge_and_unload can fold in.
        raise AdapterError(f"{adapter_dir} holds a peft adapter of type {kind or 'unknown'}, not LORA")
    if not any((adapter_dir / name).is_file() for name in ADAPTER_WEIGHTS):
        # peft would take the path for a hub repository id and fail saying so.
        raise AdapterError(f"{adapter_dir} is not a LoRA adapter: it has no {ADAPTER_WEIGHTS[0]}")
