"""Reading the checkpoints the models save: a dict with a format name, a checkpoint version
and a feature version, loaded without unpickling code (``weights_only``). Each model
checks its own config and weights; what is common is refusing a file that is missing,
unreadable, of another model, or of another version, with a message that says how to
make a good one."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


def read_checkpoint(path: Path, *, fmt: str, versions: tuple[int, int], error: type[Exception],
                    train_module: str) -> dict[str, Any]:
    """The saved dict at ``path``; ``error`` (the model's own exception) when it cannot be used.
    ``versions`` is (checkpoint version, feature version) as this code writes them."""
    what = fmt.rsplit("/", 1)[-1].upper()
    if not path.is_file():
        raise error(f"no {what} checkpoint at {path}; train one with `python -m {train_module} --out {path}`")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise error(f"{path} is not a readable {what} checkpoint: {exc}") from exc
    if not isinstance(saved, dict) or saved.get("format") != fmt:
        raise error(f"{path} is not a {what} checkpoint (no format {fmt!r})")
    found = (saved.get("version"), saved.get("feature_version"))
    if found != versions:
        raise error(f"{path} has checkpoint/feature version {found}, this code reads {versions}: retrain it")
    return saved
