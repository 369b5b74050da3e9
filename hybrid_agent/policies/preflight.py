"""Preflight: calls that certainly fail, found before they run (a program that does not
exist, a file to read that is not there), every command of a shell line included. The loop
drops such candidates and samples others instead of spending a step on them. This is not
the safety policy: it looks only for certain failure, and a line it cannot parse passes."""

from __future__ import annotations

import shutil
from pathlib import Path

from hybrid_agent.policies.shell import ShellParseError, parse
from hybrid_agent.policies.tool_schema import ToolCall

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
BUILTINS = frozenset(
    ". : [ [[ alias bg break builtin cd command continue declare echo eval exec exit export false fc fg getopts "
    "hash jobs kill let local printf pushd popd pwd read readonly return set shift source test times trap true "
    "type typeset ulimit umask unalias unset wait".split()
)


def preflight(call: ToolCall, workspace: Path) -> str | None:
    """Why ``call`` would certainly fail, or None."""
    if call.tool == "shell":
        return _missing_program(call.args["cmd"], workspace)
    if call.tool in ("read_file", "list_dir"):
        path = Path(call.args["path"])
        target = path if path.is_absolute() else workspace / path
        if not target.exists():
            return f"{call.args['path']} does not exist"
    return None


def _missing_program(cmd: str, workspace: Path) -> str | None:
    try:
        commands = parse(cmd)
    except ShellParseError:
        return None  # the shell will say what is wrong, better than we could
    for command in commands:
        name = command.argv[0]
        if name in BUILTINS or "$" in name or "`" in name:
            continue
        if "/" in name:
            path = Path(name) if name.startswith("/") else workspace / name
            if not path.is_file():
                return f"no program at {name!r}"
        elif shutil.which(name, path=SANDBOX_PATH) is None:
            return f"no program named {name!r}"
    return None
