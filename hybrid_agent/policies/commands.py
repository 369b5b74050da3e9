"""What common programs do with their arguments: which words are options, which are
operands, and which operands they write. This is knowledge of the programs, not policy;
the policy file says what is allowed."""

from __future__ import annotations

import re

from hybrid_agent.policies.shell import Command, find_start_paths

# Options that take the next word as their value, per program (so the value is not
# mistaken for an operand).
VALUE_OPTIONS: dict[str, frozenset[str]] = {
    "git": frozenset({"-C", "-c"}),
    "tar": frozenset({"-f", "--file", "-C", "--directory", "-T", "-X", "--exclude"}),
    "truncate": frozenset({"-s", "--size", "-r", "--reference"}),
    "cp": frozenset({"-t", "--target-directory", "-S"}),
    "mv": frozenset({"-t", "--target-directory", "-S"}),
    "ln": frozenset({"-t", "--target-directory", "-S"}),
    "install": frozenset({"-t", "--target-directory", "-m", "-o", "-g", "--mode", "--owner", "--group"}),
    "sed": frozenset({"-e", "-f", "--expression", "--file", "-l"}),
    "unzip": frozenset({"-d", "-x"}),
    "systemctl": frozenset({"-H", "-M", "-t", "--type", "-p", "--property", "-s", "--signal"}),
    "setfacl": frozenset({"-m", "-x", "-M", "-X", "--modify", "--remove"}),
    "chmod": frozenset({"--reference"}),
    "chown": frozenset({"--reference", "--from"}),
    "useradd": frozenset({"-d", "-g", "-G", "-s", "-u", "-c", "-p"}),
    "usermod": frozenset({"-d", "-g", "-G", "-s", "-u", "-c", "-p", "-l"}),
    "pip": frozenset({"-r", "--requirement", "-t", "--target", "-i", "--index-url", "-c"}),
    "apt-get": frozenset({"-o", "-t", "-c"}),
    "apt": frozenset({"-o", "-t", "-c"}),
}
WRITES_ALL_OPERANDS = frozenset({
    "rm", "rmdir", "unlink", "shred", "wipe", "srm", "touch", "mkdir", "truncate", "tee", "mkfifo",
    "mknod", "mv", "gzip", "gunzip", "bzip2", "xz", "chattr", "setfacl", "mkswap", "wipefs", "blkdiscard",
})
WRITES_AFTER_FIRST = frozenset({"chmod", "chown", "chgrp"})   # the first operand is the mode or owner
WRITES_LAST_OPERAND = frozenset({"cp", "ln", "install", "rsync", "scp", "link"})
IN_PLACE_EDITORS = frozenset({"sed", "perl"})
_NUMERIC = re.compile(r"^-\d+$")


def _value_options(command: Command) -> frozenset[str]:
    return VALUE_OPTIONS.get(command.program, frozenset())


def operands(command: Command) -> list[str]:
    """The words that are not options or option values; everything after ``--``."""
    takes_value = _value_options(command)
    found: list[str] = []
    args = command.argv[1:]
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return found + list(args[i + 1:])
        if word.startswith("-") and len(word) > 1 and not _NUMERIC.match(word):
            i += 2 if word in takes_value else 1
            continue
        found.append(word)
        i += 1
    return found


def option_value(command: Command, *names: str) -> str | None:
    """The value of the first of ``names`` present (``-f X``, ``--file=X``, ``-fX``)."""
    args = command.argv[1:]
    for i, word in enumerate(args):
        for name in names:
            if word == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def has_flag(command: Command, flag: str) -> bool:
    """Whether ``flag`` is given: ``-r`` also inside ``-rf``; long and find-style options
    exactly (or as ``--name=value``)."""
    for word in command.argv[1:]:
        if word == "--":
            return False
        if word == flag or (flag.startswith("--") and word.startswith(flag + "=")):
            return True
        if (len(flag) == 2 and flag[0] == "-" and word.startswith("-") and not word.startswith("--")
                and not _NUMERIC.match(word) and flag[1] in word[1:]):
            return True
    return False


def subcommand(command: Command) -> str | None:
    found = operands(command)
    return found[0] if found else None


def written_paths(command: Command) -> list[str]:
    """The paths the command writes, removes or changes, as written on the line; redirects
    included. A program not known here writes only through its redirects (the sandbox
    confines what else it does)."""
    program = command.program
    found = [redirect.target for redirect in command.redirects if redirect.writes and redirect.target]
    args = operands(command)
    if program in WRITES_ALL_OPERANDS:
        found += args
    elif program in WRITES_AFTER_FIRST:
        found += args[1:] if option_value(command, "--reference") is None else args
    elif program in WRITES_LAST_OPERAND:
        target = option_value(command, "-t", "--target-directory")
        found += [target] if target else args[-1:] if len(args) > 1 else []
    elif program == "dd":
        found += [arg[3:] for arg in command.argv[1:] if arg.startswith("of=")]
    elif program in IN_PLACE_EDITORS and (has_flag(command, "-i") or has_flag(command, "--in-place")):
        scripted = any(option_value(command, name) for name in ("-e", "--expression", "-f", "--file"))
        found += args if scripted or program == "perl" else args[1:]
    elif program == "tar":
        found += _tar_writes(command)
    elif program == "find" and has_flag(command, "-delete"):
        found += find_start_paths(command.argv)
    elif program == "unzip":
        found.append(option_value(command, "-d") or ".")
    elif program == "patch":
        found += args or ["."]
    return found


def _tar_writes(command: Command) -> list[str]:
    """tar writes its archive when creating and the target directory when extracting.
    The first word may be old-style bundled letters (``czf out.tgz``)."""
    first = command.argv[1] if len(command.argv) > 1 else ""
    letters = first.lstrip("-") if not first.startswith("--") else ""
    extracting = "x" in letters or has_flag(command, "--extract") or has_flag(command, "-x")
    creating = any(letter in letters for letter in "cru") or has_flag(command, "--create")
    archive = option_value(command, "-f", "--file")
    if archive is None and "f" in letters and not first.startswith("-"):
        rest = operands(command)[1:]
        archive = rest[0] if rest else None
    found = []
    if extracting:
        found.append(option_value(command, "-C", "--directory") or ".")
    if creating and archive:
        found.append(archive)
    return found


def mode_grants(mode: str) -> set[str]:
    """What a chmod mode grants that matters: setuid/setgid bits, write for everyone."""
    grants: set[str] = set()
    if re.fullmatch(r"[0-7]{3,4}", mode):
        digits = mode.zfill(4)
        if int(digits[0]) & 6:
            grants.add("setuid")
        if int(digits[3]) & 2:
            grants.add("world_writable")
        return grants
    for clause in mode.split(","):
        match = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if match is None or match.group(2) == "-":
            continue
        who, _, perms = match.groups()
        if "s" in perms:
            grants.add("setuid")
        if "w" in perms and (who == "" or "a" in who or "o" in who):
            grants.add("world_writable")
    return grants
