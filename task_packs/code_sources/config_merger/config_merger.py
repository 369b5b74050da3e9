"""Layered configuration: defaults < config file < environment, merged deeply."""

from typing import Any


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict in which override's values win; nested dicts are merged, not replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def from_env(environ: dict[str, str], prefix: str = "APP_") -> dict:
    """APP_DB__HOST=x becomes {"db": {"host": "x"}}: a double underscore nests."""
    result: dict = {}
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        path = name[len(prefix):].lower().split("__")
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return result


def layered(*layers: dict) -> dict:
    """All layers merged; later layers win."""
    merged: dict = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    return merged


def get_path(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
