"""Synthetic near-miss negatives of a good tool call: calls that look almost right and
fail, so that the energy model learns what separates them rather than what separates a
good call from noise. One negative per kind that applies:

- ``wrong_path``: the same call on a mutated name (a typo, another or no extension);
- ``wrong_argument``: another number, a sibling flag (``-l`` for ``-w``), altered or
  unbalanced text, ``old``/``new`` swapped, ``success`` flipped;
- ``wrong_tool``: another program or tool on the same arguments (``mv`` for ``cp``,
  ``read_file`` for ``write_file``);
- ``missing_flag``: one flag of a command dropped (``mkdir -p``, ``cp -r``, ``gzip -k``);
- ``stale_value``: a value seen in an earlier step (``earlier``) in place of one of the call's;
- ``destructive``: removal or overwrite in place of the intended change (``rm`` for ``mv``,
  ``>`` for ``>>``).

Shell commands are edited word by word (quoted strings stay whole words), which covers the
everyday one-liners the synthetic set uses; not a shell rewriter. Deterministic: the same
call, ``earlier`` and seed always give the same negatives."""

from __future__ import annotations

import json
import random
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_agent.models.ebm.features import is_value

KINDS = ("wrong_path", "wrong_argument", "wrong_tool", "missing_flag", "stale_value", "destructive")

Call = dict[str, Any]

_WORDS = re.compile(r"""'[^']*'|"[^"]*"|\S+""")
SEPARATORS = frozenset({"&&", "||", "|", ";"})
REDIRECTS = frozenset({">", ">>", "<", "2>", "2>>", "&>"})
# A program doing something else with the same operands.
OTHER_PROGRAM = {
    "cp": "mv", "mv": "cp", "wc": "cat", "gzip": "gunzip", "gunzip": "gzip", "head": "tail", "tail": "head",
    "mkdir": "touch", "touch": "mkdir", "echo": "cat", "printf": "cat", "sort": "uniq", "uniq": "sort",
    "grep": "wc", "rm": "rmdir", "cat": "ls", "ls": "cat", "tar": "zip", "zip": "tar",
}
# A flag meaning something else to the same program.
SIBLING_FLAG = {"-l": "-w", "-w": "-l", "-c": "-l", "-n": "-c", "-k": "-d", "-p": "-v", "-r": "-f",
                "-v": "-c", "-i": "-v", "-a": "-l"}
OTHER_EXTENSION = {"txt": "log", "log": "txt", "csv": "tsv", "md": "txt", "json": "yaml", "py": "txt",
                   "gz": "zip", "yaml": "json", "tsv": "csv"}
OTHER_TOOL = {"write_file": "read_file", "edit": "read_file", "read_file": "list_dir", "list_dir": "read_file",
              "python": "shell", "shell": "python"}


@dataclass(frozen=True)
class Negative:
    kind: str
    call: Call


def near_misses(call: Call, *, earlier: Sequence[str] = (), seed: int = 0,
                kinds: Sequence[str] = KINDS) -> list[Negative]:
    """Up to one negative per kind, each different from ``call`` and from the others.
    ``earlier``: texts of earlier steps (observations), where stale values come from."""
    # A string seed hashes with SHA-512, the same in every process (hash() is salted).
    rng = random.Random(f"{seed}:{_key(call)}")
    seen = {_key(call)}
    out = []
    for kind in kinds:
        made = MAKERS[kind](call, rng, earlier)
        if made is not None and _key(made) not in seen:
            seen.add(_key(made))
            out.append(Negative(kind, made))
    return out


def _key(call: Call) -> str:
    return json.dumps(call, sort_keys=True)


def _with(call: Call, **args: Any) -> Call:
    return {"tool": call["tool"], "args": {**call["args"], **args}}


def shell(cmd: str) -> Call:
    return {"tool": "shell", "args": {"cmd": cmd}}


# -- shell words ----------------------------------------------------------------------------

def _words(cmd: str) -> list[str]:
    return _WORDS.findall(cmd)


def _programs(words: list[str]) -> list[int]:
    """Indexes of the words that name a program: the first, and the first after a separator."""
    return [i for i, w in enumerate(words) if i == 0 or words[i - 1] in SEPARATORS]


def _operands(words: list[str]) -> list[int]:
    """Indexes of unquoted words that are neither programs, flags nor operators."""
    programs = set(_programs(words))
    return [i for i, w in enumerate(words)
            if i not in programs and w not in SEPARATORS | REDIRECTS and not w.startswith(("-", "'", '"'))]


def _paths(words: list[str]) -> list[int]:
    """Operands that look like paths; every operand when none does."""
    operands = _operands(words)
    return [i for i in operands if "." in words[i] or "/" in words[i]] or operands


def _replace(words: list[str], index: int, word: str) -> str:
    return " ".join(words[:index] + [word] + words[index + 1:])


# -- one maker per kind ---------------------------------------------------------------------

Maker = Callable[[Call, random.Random, Sequence[str]], Call | None]


def _mutate_name(path: str, rng: random.Random) -> str:
    """A typo, another extension or no extension in the last part of ``path``."""
    head, slash, name = path.rstrip("/").rpartition("/")
    trailing = "/" if path.endswith("/") else ""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    options = []
    if len(stem) >= 3:
        i = rng.randrange(1, len(stem) - 1)
        options.append(stem[:i - 1] + stem[i] + stem[i - 1] + stem[i + 1:] + dot + ext)   # swapped letters
        options.append(stem[:i] + stem[i + 1:] + dot + ext)                               # a dropped letter
    if ext in OTHER_EXTENSION:
        options.append(f"{stem}.{OTHER_EXTENSION[ext]}")
    if ext:
        options.append(stem)
    else:
        options.append(name + "s")
    return head + slash + rng.choice(options) + trailing


def wrong_path(call: Call, rng: random.Random, earlier: Sequence[str]) -> Call | None:
    args = call["args"]
    if isinstance(args.get("path"), str):
        return _with(call, path=_mutate_name(args["path"], rng))
    if call["tool"] == "shell":
        words = _words(args["cmd"])
        paths = _paths(words)
        if paths:
            i = rng.choice(paths)
            return shell(_replace(words, i, _mutate_name(words[i], rng)))
    return None


def _alter_text(text: str) -> str:
    """Other words: the last word dropped, or one doubled when there is a single word."""
    words = text.split(" ")
    if len(words) > 1:
        return " ".join(words[:-1])
    return f"{text} {text}"


def _break_python(code: str) -> str:
    """The code with its last closing bracket dropped: a syntax error."""
    cut = max(code.rfind(")"), code.rfind("]"))
    return code[:cut] + code[cut + 1:] if cut >= 0 else code + ":"


def wrong_argument(call: Call, rng: random.Random, earlier: Sequence[str]) -> Call | None:
    tool, args = call["tool"], call["args"]
    if tool == "finish":
        return _with(call, success=not args["success"])
    if tool == "edit":
        return _with(call, old=args["new"], new=args["old"]) if args["new"] else None
    if tool == "python":
        return _with(call, code=_break_python(args["code"]))
    if tool == "write_file":
        content = args["content"]
        if args["path"].endswith(".py"):
            return _with(call, content=_break_python(content))
        return _with(call, content=_alter_text(content.rstrip("\n")) + "\n")
    if tool != "shell":
        return None
    words = _words(args["cmd"])
    options: list[str] = []
    for i, w in enumerate(words):
        if w.isdigit():
            options.append(_replace(words, i, str(int(w) * 10 if int(w) < 10 else int(w) + 1)))
        elif w in SIBLING_FLAG:
            options.append(_replace(words, i, SIBLING_FLAG[w]))
        elif w[:1] in "'\"" and len(w) > 2:
            quote = w[0]
            options.append(_replace(words, i, quote + _alter_text(w[1:-1]) + quote))
            options.append(_replace(words, i, w[:-1]))   # unbalanced: the shell cannot parse it
    return shell(rng.choice(options)) if options else None


def wrong_tool(call: Call, rng: random.Random, earlier: Sequence[str]) -> Call | None:
    tool, args = call["tool"], call["args"]
    if tool == "shell":
        words = _words(args["cmd"])
        swappable = [i for i in _programs(words) if words[i] in OTHER_PROGRAM]
        if swappable:
            i = rng.choice(swappable)
            return shell(_replace(words, i, OTHER_PROGRAM[words[i]]))
        return {"tool": "python", "args": {"code": args["cmd"]}}
    other = OTHER_TOOL.get(tool)
    if other == "shell":
        return shell(args["code"])
    if other in ("read_file", "list_dir"):
        return {"tool": other, "args": {"path": args["path"]}}
    return None


def missing_flag(call: Call, rng: random.Random, earlier: Sequence[str]) -> Call | None:
    if call["tool"] != "shell":
        return None
    words = _words(call["args"]["cmd"])
    flags = [i for i, w in enumerate(words) if w.startswith("-") and len(w) > 1 and w not in REDIRECTS]
    if not flags:
        return None
    i = rng.choice(flags)
    return shell(" ".join(words[:i] + words[i + 1:]))


def _earlier_values(earlier: Sequence[str], used: str) -> list[str]:
    """Values (paths, names, numbers) of earlier steps that the call does not use."""
    present = {w.rstrip("/") for w in _WORDS.findall(used)}
    values = []
    for text in earlier:
        for word in _WORDS.findall(text):
            if is_value(word) and word.rstrip("/") not in present and word not in values:
                values.append(word)
    return values


def stale_value(call: Call, rng: random.Random, earlier: Sequence[str]) -> Call | None:
    args = call["args"]
    if isinstance(args.get("path"), str):
        values = _earlier_values(earlier, args["path"])
        return _with(call, path=rng.choice(values)) if values else None
    if call["tool"] != "shell":
        return None
    words = _words(args["cmd"])
    values = _earlier_values(earlier, args["cmd"])
    targets = _paths(words)
    if not values or not targets:
        return None
    return shell(_replace(words, rng.choice(targets), rng.choice(values)))


def destructive(call: Call, rng: random.Random, earlier: Sequence[str]) -> Call | None:
    tool, args = call["tool"], call["args"]
    if tool == "edit":
        return {"tool": "write_file", "args": {"path": args["path"], "content": args["new"]}}   # the rest is lost
    if tool in ("write_file", "read_file", "list_dir"):
        return shell(f"rm -rf {shlex.quote(args['path'])}")
    if tool != "shell":
        return None
    words = _words(args["cmd"])
    if ">>" in words:
        return shell(_replace(words, words.index(">>"), ">"))       # append becomes overwrite
    paths = _paths(words)
    if not paths:
        return None
    target = words[paths[0]]
    if words[0] == "rm":
        return shell(f"rm -rf {target.rpartition('/')[0] or '.'}")   # the folder, not the file
    return shell(f"rm -rf {target}")


MAKERS: dict[str, Maker] = {
    "wrong_path": wrong_path,
    "wrong_argument": wrong_argument,
    "wrong_tool": wrong_tool,
    "missing_flag": missing_flag,
    "stale_value": stale_value,
    "destructive": destructive,
}
