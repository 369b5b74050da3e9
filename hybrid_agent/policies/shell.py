"""Shell command lines parsed into the simple commands they would run (bashlex builds the
tree). Quoting, literal variable assignments, pipes, lists, subshells, loops, functions,
command and process substitution, redirections, ``cd``, ``bash -c``/``sh -c`` strings,
``eval``, ``xargs``, ``find -exec`` and wrappers such as ``sudo``, ``env``, ``nohup`` and
``timeout`` are all seen through, so that a check on the commands cannot be dodged by how
the line is written. Used by preflight and by the policy engine."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import bashlex
import bashlex.errors

MAX_DEPTH = 4  # nested bash -c / eval strings followed before giving up
SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "ash"})
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
    "setsid": frozenset(),
    "unbuffer": frozenset(),
    "watch": frozenset({"-n", "-d", "--interval"}),
    "flock": frozenset({"-w", "-E", "-c"}),
    "busybox": frozenset(),
}
# Wrappers whose first operand is not the command (timeout's duration, chroot's root).
LEADING_OPERANDS = {"timeout": 1, "chroot": 1, "flock": 1}
PYTHON = re.compile(r"python[\d.]*")
DECLARERS = frozenset({"export", "declare", "local", "readonly", "typeset"})
_PARAMETER = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
XARGS_INPUT = "$XARGS_INPUT"   # what xargs substitutes: known only when it runs
MAX_LOOP_VALUES = 8           # a for loop's body is read once per listed value, up to this many
# bashlex keeps the quotes of a quoted here-document delimiter and then never finds its end.
_QUOTED_HEREDOC = re.compile(r"<<(-?)\s*(['\"])(\w+)\2")
# bashlex does not know the ``time`` keyword; as a prefix it changes nothing the policy sees.
_TIME_PREFIX = re.compile(r"(^|[;&|(]\s*)time(\s+-p)?\s+")
_OUTPUT_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})


class ShellParseError(ValueError):
    """The line is not something the parser understands; treat it as unknown, never as safe."""


@dataclass(frozen=True)
class Redirect:
    op: str        # ">", ">>", "<", "<<<", "&>" ...
    target: str    # the file (or here-string text); "" for a descriptor copy such as 2>&1

    @property
    def writes(self) -> bool:
        return self.op in _OUTPUT_REDIRECTS


@dataclass(frozen=True)
class Command:
    """One simple command: its words after quote removal and literal variable expansion,
    how it was reached, and where it runs."""

    argv: tuple[str, ...]
    via: tuple[str, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    stdin_from: tuple[Command, ...] = ()   # earlier commands of its pipeline (its input)
    cwd: str | None = None                 # a literal ``cd`` earlier in the line; None: the scope
    in_loop: bool = False
    background: bool = False
    function: str | None = None            # the shell function whose body holds it

    @cached_property   # asked by every rule of the policy
    def program(self) -> str:
        return posixpath.basename(self.argv[0])


@dataclass
class Script:
    commands: list[Command] = field(default_factory=list)
    self_calling: set[str] = field(default_factory=set)   # functions that call themselves


def parse(line: str) -> list[Command]:
    """Every simple command ``line`` would run, nested ones included, in the order they
    run (a substitution before the command whose word holds it)."""
    return parse_script(line).commands


def parse_script(line: str) -> Script:
    script = Script()
    _parse_into(script, line, base=Command(argv=("",)), env={}, depth=0)
    return script


def _parse_into(script: Script, line: str, *, base: Command, env: dict[str, str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ShellParseError(f"nested shells deeper than {MAX_DEPTH}")
    line = _QUOTED_HEREDOC.sub(r"<<\1\3", line)
    try:
        trees = _bashlex_parse(line)
    # bashlex raises NotImplementedError for constructs it does not model (case, select,
    # coproc, $((...))) and, on some malformed input, IndexError or AttributeError from
    # its own internals: all of them mean "not understood".
    except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError) as exc:
        raise ShellParseError(f"cannot parse {line!r}: {exc}") from exc
    walker = _Walker(script, line, env, depth)
    for tree in trees:
        walker.walk(tree, base)


def _bashlex_parse(line: str) -> list[Any]:
    try:
        return bashlex.parse(line)
    except (bashlex.errors.ParsingError, NotImplementedError):
        without_time = _TIME_PREFIX.sub(r"\1", line)
        if without_time == line:
            raise
        return bashlex.parse(without_time)


class _Walker:
    """Walks the tree in source order, carrying the context (pipeline input, loop,
    function, background) down and the shell state (variables, directory) along."""

    def __init__(self, script: Script, line: str, env: dict[str, str], depth: int) -> None:
        self.script = script
        self.line = line
        self.env = env
        self.aliases: dict[str, str] = {}
        self.depth = depth
        self.cwd: str | None = None

    def walk(self, node: Any, ctx: Command) -> None:
        kind = node.kind
        if kind == "command":
            self._command(node, ctx)
        elif kind == "pipeline":
            self._pipeline(node, ctx)
        elif kind == "list":
            self._list(node.parts, ctx)
        elif kind == "compound":
            self._list(node.list, ctx)
            for redirect in getattr(node, "redirects", []):
                self.walk(redirect, ctx)
        elif kind == "for":
            self._for(node, replace(ctx, in_loop=True))
        elif kind in ("while", "until"):
            for part in node.parts:
                self.walk(part, replace(ctx, in_loop=True))
        elif kind == "function":
            name = node.parts[0].word
            for part in node.parts[1:]:
                self.walk(part, replace(ctx, function=name))
        elif kind in ("commandsubstitution", "processsubstitution"):
            self.walk(node.command, replace(ctx, stdin_from=(), background=False))
        else:
            for child in getattr(node, "parts", []):
                self.walk(child, ctx)

    def _for(self, node: Any, ctx: Command) -> None:
        """The body once per listed value, the loop variable bound to it, so that
        ``for d in /etc /usr; do rm -rf $d; done`` shows what it removes."""
        parts = node.parts
        name = parts[1].word
        values = [self._expand(p.word) for p in parts[3:] if p.kind == "word"] if len(parts) > 2 \
            and getattr(parts[2], "word", "") == "in" else []
        body = [p for p in parts if p.kind not in ("reservedword", "word")]
        for value in values[:MAX_LOOP_VALUES] or [None]:
            if value is None or "$" in value:
                self.env.pop(name, None)
            else:
                self.env[name] = value
            for part in body:
                self.walk(part, ctx)

    def _list(self, parts: list[Any], ctx: Command) -> None:
        for i, part in enumerate(parts):
            if part.kind in ("operator", "reservedword", "pipe"):
                continue
            following = parts[i + 1] if i + 1 < len(parts) else None
            background = following is not None and following.kind == "operator" and following.op == "&"
            self.walk(part, replace(ctx, background=ctx.background or background))

    def _pipeline(self, node: Any, ctx: Command) -> None:
        upstream: list[Command] = list(ctx.stdin_from)
        for part in node.parts:
            if part.kind == "pipe":
                continue
            before = len(self.script.commands)
            self.walk(part, replace(ctx, stdin_from=tuple(upstream)))
            upstream.extend(self.script.commands[before:])

    def _command(self, node: Any, ctx: Command) -> None:
        words: list[str] = []
        redirects: list[Redirect] = []
        for part in node.parts:
            if part.kind == "assignment":
                self._assign(part.word)
            elif part.kind == "word":
                words.extend(self._word(part))
            elif part.kind == "redirect":
                redirects.append(self._redirect(part))
            self._walk_substitutions(part, ctx)
        if not words and not redirects:
            return
        words = words or [":"]   # a bare redirect ("> file") is the no-op command with it
        if words[0] in self.aliases:
            self._nested(" ".join([self.aliases[words[0]], *words[1:]]), replace(ctx, argv=tuple(words)),
                         f"alias {words[0]}")
            return
        if words[0] == "alias":
            for word in words[1:]:
                name, sep, value = word.partition("=")
                if sep:
                    self.aliases[name] = value
        if words[0] in DECLARERS:
            for word in words[1:]:
                self._assign(word)
        command = replace(ctx, argv=tuple(words), redirects=tuple(redirects), cwd=self.cwd)
        if ctx.function is not None and command.program == ctx.function:
            self.script.self_calling.add(ctx.function)
        self._expand_command(command)
        if command.program in ("cd", "pushd") and len(words) > 1:
            self.cwd = words[-1]

    def _walk_substitutions(self, part: Any, ctx: Command) -> None:
        """Commands inside a word (``$(...)``, ``<(...)``) or a redirect target."""
        children = list(getattr(part, "parts", []))
        output = getattr(part, "output", None)
        if output is not None and not isinstance(output, int):
            children.append(output)
        for child in children:
            if child.kind in ("commandsubstitution", "processsubstitution"):
                self.walk(child, ctx)
            else:
                self._walk_substitutions(child, ctx)

    def _redirect(self, node: Any) -> Redirect:
        target = node.output
        if isinstance(target, int) or target is None:
            return Redirect(node.type, "")
        return Redirect(node.type, self._expand(target.word))

    def _assign(self, word: str) -> None:
        """Record ``NAME=value`` when its value is known; a value that needs running
        something (a substitution) makes the name unknown."""
        name, sep, value = word.partition("=")
        if not sep or not name.isidentifier():
            return
        value = self._expand(value)
        if "$" in value or "`" in value:
            self.env.pop(name, None)
        else:
            self.env[name] = value

    def _word(self, node: Any) -> list[str]:
        """A word after expansion; an unquoted expansion is split at spaces, as bash does."""
        expanded = self._expand(node.word)
        source = self.line[node.pos[0]:node.pos[1]]
        if expanded != node.word and "$" in source and not any(q in source for q in "'\""):
            return expanded.split() or [expanded]
        return [expanded]

    def _expand(self, word: str) -> str:
        return _PARAMETER.sub(lambda m: self.env.get(m.group(1) or m.group(2), m.group(0)), word)

    def _expand_command(self, command: Command) -> None:
        """The command itself, then what it runs: a wrapped command, a -c string, eval's
        text, find's -exec commands."""
        self.script.commands.append(command)
        argv, program = command.argv, command.program
        script_at = _shell_script_index(argv) if program in SHELLS else None
        if script_at is not None:
            self._nested(argv[script_at], command, f"{program} -c")
        elif program == "eval" and len(argv) > 1:
            self._nested(" ".join(argv[1:]), command, "eval")
        elif program == "find":
            for inner, how in _find_exec(argv):
                self._expand_command(replace(command, argv=inner, via=command.via + (how,), redirects=()))
        elif PYTHON.fullmatch(program) and len(argv) > 2 and argv[1] == "-m":
            self._expand_command(replace(command, argv=argv[2:], via=command.via + ("python -m",), redirects=()))
        elif program in WRAPPERS:
            inner = _unwrap(program, argv[1:])
            if program == "xargs":
                inner = _xargs_placeholders(argv, inner)
            if inner:
                self._expand_command(replace(command, argv=inner, via=command.via + (program,), redirects=()))

    def _nested(self, text: str, outer: Command, how: str) -> None:
        base = replace(outer, via=outer.via + (how,), redirects=())
        _parse_into(self.script, text, base=base, env=dict(self.env), depth=self.depth + 1)


def _shell_script_index(argv: tuple[str, ...]) -> int | None:
    """Where a shell's ``-c`` script is: after ``-c`` or a bundle such as ``-lc``."""
    for i, word in enumerate(argv[1:], start=1):
        if not word.startswith("-") or word.startswith("--"):
            continue
        if "c" in word[1:]:
            return i + 1 if i + 1 < len(argv) else None
    return None


def _xargs_placeholders(argv: tuple[str, ...], inner: tuple[str, ...]) -> tuple[str, ...]:
    """xargs -I X replaces X in the command with input lines: unknown until it runs."""
    placeholder = None
    for i, word in enumerate(argv[1:], start=1):
        if word == "-I" and i + 1 < len(argv):
            placeholder = argv[i + 1]
        elif word.startswith("-I") and len(word) > 2:
            placeholder = word[2:]
        elif word == "-i" or word.startswith("--replace"):
            placeholder = "{}"
    if placeholder is None:
        return inner
    return tuple(word.replace(placeholder, XARGS_INPUT) for word in inner)


def _unwrap(wrapper: str, args: tuple[str, ...]) -> tuple[str, ...]:
    takes_value = WRAPPERS[wrapper]
    i = 0
    while i < len(args) and (args[i].startswith("-") or (wrapper == "env" and "=" in args[i])):
        i += 2 if args[i] in takes_value else 1
    return args[i + LEADING_OPERANDS.get(wrapper, 0):]


def find_start_paths(argv: tuple[str, ...]) -> list[str]:
    """find's starting points: the operands before the first expression word."""
    paths = []
    for word in argv[1:]:
        if word.startswith(("-", "(", "!")) or word in ("(", ")", "!"):
            break
        paths.append(word)
    return paths or ["."]


def _find_exec(argv: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    """Each ``-exec``'s command, with ``{}`` replaced by find's starting points (what it
    will be called on is below them)."""
    starts = find_start_paths(argv)
    found = []
    i = 0
    while i < len(argv):
        if argv[i] in ("-exec", "-execdir", "-ok", "-okdir"):
            end = next((j for j in range(i + 1, len(argv)) if argv[j] in (";", "+", "\\;")), len(argv))
            if end > i + 1:
                for start in starts:
                    inner = tuple(word.replace("{}", start) for word in argv[i + 1:end])
                    found.append((inner, f"find {argv[i]}"))
            i = end
        i += 1
    return found
