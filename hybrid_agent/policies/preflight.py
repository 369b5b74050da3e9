"""Preflight: calls that certainly fail, found before they run (a program that does not
exist, a file to read that is not there). The loop drops such candidates and samples
others instead of spending a step on them. This is not the safety policy: it looks only
for certain failure, and a command it cannot read passes through to the policy."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from hybrid_agent.policies.tool_schema import ToolCall

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
SHELL_WORDS = frozenset(
    "! [ [[ { } ( ) . : alias bg break builtin case cd command continue declare do done echo elif else esac eval exec "
    "exit export false fc fg fi for function getopts hash if in let local printf pwd read readonly return select set "
    "shift source test then time times trap true type typeset ulimit umask unalias unset until wait while".split()
)
OPERATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")", ";;", "|&"})
KEYWORDS = frozenset({"if", "then", "else", "elif", "while", "until", "do", "!", "{", "time"})


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
    for program in command_names(cmd):
        if program in SHELL_WORDS or "$" in program:
            continue
        if "/" in program:
            path = Path(program) if program.startswith("/") else workspace / program
            if not path.is_file():
                return f"no program at {program!r}"
        elif shutil.which(program, path=SANDBOX_PATH) is None:
            return f"no program named {program!r}"
    return None


def command_names(cmd: str) -> list[str]:
    """The first word of each simple command (after assignments), as far as shlex reads it."""
    lexer = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: the shell will say so itself
        return []
    names, expect_command, skip_next = [], True, False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in OPERATORS:
            expect_command = True
        elif set(token) <= set("<>&|0123456789") and any(c in token for c in "<>"):
            skip_next = True  # a redirection's target is not a command
        elif expect_command and "=" in token and not token.startswith("="):
            continue  # VAR=value before the command
        elif expect_command and token in KEYWORDS:
            continue  # a command follows
        elif expect_command:
            names.append(token)
            expect_command = False
    return names
