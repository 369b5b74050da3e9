"""Shell command lines parsed into the simple commands they would run (bashlex builds the
tree). Quoting, variables in assignments, pipes, lists, subshells, command and process
substitution, ``bash -c``/``sh -c`` strings, ``eval``, ``xargs``, ``find -exec`` and wrappers
such as ``sudo``, ``env``, ``nohup`` and ``timeout`` are all seen through, so that a check
on the commands cannot be dodged by how the line is written. Used by preflight now and by
the policy engine."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import bashlex
import bashlex.ast
import bashlex.errors

MAX_DEPTH = 4  # nested bash -c / eval strings followed before giving up
SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh"})
# Wrapper -> options that take a value; everything after the options is the wrapped command.
WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"}),
    "env": frozenset({"-u", "-C", "-S"}),
    "nohup": frozenset(),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "ionice": frozenset({"-c", "-n", "-p"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "time": frozenset({"-f", "-o"}),
    "command": frozenset(),
    "builtin": frozenset(),
    "exec": frozenset({"-a"}),
    "xargs": frozenset({"-a", "-d", "-E", "-e", "-I", "-i", "-L", "-l", "-n", "-P", "-s", "--delimiter", "--max-args"}),
    "chroot": frozenset(),
    "doas": frozenset({"-u"}),
}
# Wrappers whose first operand is not the command (timeout's duration, chroot's root).
LEADING_OPERANDS = {"timeout": 1, "chroot": 1}


class ShellParseError(ValueError):
    """The line is not something the parser understands; treat it as unknown, never as safe."""


@dataclass(frozen=True)
class Command:
    """One simple command: its program (basename) and arguments, and how it was reached."""

    argv: tuple[str, ...]
    via: tuple[str, ...] = ()

    @property
    def program(self) -> str:
        return posixpath.basename(self.argv[0])


def parse(line: str) -> list[Command]:
    """Every simple command ``line`` would run, nested ones included, in source order."""
    return _parse(line, via=(), depth=0)


def _parse(line: str, *, via: tuple[str, ...], depth: int) -> list[Command]:
    if depth > MAX_DEPTH:
        raise ShellParseError(f"nested shells deeper than {MAX_DEPTH}")
    try:
        trees = bashlex.parse(line)
    # bashlex raises NotImplementedError for constructs it does not model (case, select,
    # coproc, $((...))) and, on some malformed input, IndexError or AttributeError from
    # its own internals: all of them mean "not understood".
    except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError) as exc:
        raise ShellParseError(f"cannot parse {line!r}: {exc}") from exc
    collector = _Collector()
    for tree in trees:
        collector.visit(tree)
    commands: list[Command] = []
    for argv in collector.argvs:
        commands.extend(_expand(tuple(argv), via=via, depth=depth))
    return commands


class _Collector(bashlex.ast.nodevisitor):
    """Collects the words of each command node; the visitor descends into substitutions."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def visitcommand(self, node, parts):  # type: ignore[no-untyped-def]
        words = [part.word for part in parts if part.kind == "word"]
        if words:
            self.argvs.append(words)


def _expand(argv: tuple[str, ...], *, via: tuple[str, ...], depth: int) -> list[Command]:
    """The command itself, then what it runs: a wrapped command, a -c string, eval's text,
    find's -exec commands."""
    found = [Command(argv, via)]
    program = posixpath.basename(argv[0])
    if program in SHELLS and "-c" in argv[1:]:
        script_at = argv.index("-c") + 1
        if script_at < len(argv):
            found += _parse(argv[script_at], via=via + (f"{program} -c",), depth=depth + 1)
    elif program == "eval" and len(argv) > 1:
        found += _parse(" ".join(argv[1:]), via=via + ("eval",), depth=depth + 1)
    elif program == "find":
        found += _find_exec(argv, via=via, depth=depth)
    elif program in WRAPPERS:
        inner = _unwrap(program, argv[1:])
        if inner:
            found += _expand(inner, via=via + (program,), depth=depth)
    return found


def _unwrap(wrapper: str, args: tuple[str, ...]) -> tuple[str, ...]:
    takes_value = WRAPPERS[wrapper]
    i = 0
    while i < len(args) and (args[i].startswith("-") or (wrapper == "env" and "=" in args[i])):
        i += 2 if args[i] in takes_value else 1
    return args[i + LEADING_OPERANDS.get(wrapper, 0):]


def _find_exec(argv: tuple[str, ...], *, via: tuple[str, ...], depth: int) -> list[Command]:
    found: list[Command] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("-exec", "-execdir", "-ok", "-okdir"):
            end = next((j for j in range(i + 1, len(argv)) if argv[j] in (";", "+")), len(argv))
            if end > i + 1:
                found += _expand(argv[i + 1:end], via=via + (f"find {argv[i]}",), depth=depth)
            i = end
        i += 1
    return found
