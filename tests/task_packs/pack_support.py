"""What both pack tests read: a pack, its reference solutions, and its generator module."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from hybrid_agent.eval.packs import Task, load_pack

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS_DIR = Path(__file__).resolve().parent / "solutions"


def pack_path(name: str) -> Path:
    return ROOT / "task_packs" / f"{name}.jsonl"


def solutions_path(name: str) -> Path:
    return SOLUTIONS_DIR / f"{name}.jsonl"


def tasks(name: str) -> dict[str, Task]:
    return {t.id: t for t in load_pack(pack_path(name))}


def solutions(name: str) -> dict[str, str]:
    rows = (json.loads(line) for line in solutions_path(name).read_text().splitlines() if line.strip())
    return {row["id"]: row["solution"] for row in rows}


def generator(name: str) -> ModuleType:
    """task_packs/generate_<name>.py, imported without putting task_packs on sys.path."""
    module_name = f"generate_{name}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "task_packs" / f"{module_name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module
