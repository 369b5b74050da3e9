"""Compensations: for an action whose effect lies outside files (a service stopped, a user
added, a firewall rule appended), the command that undoes it. A snapshot cannot bring such
an effect back, so the action registers its compensation once it has succeeded, and a
rollback runs the registered ones newest first. Only success registers: the undo of a
``useradd`` that failed because the user existed would delete someone else's user."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

Argv = tuple[str, ...]

# program -> {verb: inverse verb}, for tools whose verb is their first operand.
_VERB_INVERSES: dict[str, dict[str, str]] = {
    "systemctl": {"start": "stop", "stop": "start", "enable": "disable", "disable": "enable",
                  "mask": "unmask", "unmask": "mask"},
    "docker": {"start": "stop", "stop": "start", "pause": "unpause", "unpause": "pause"},
    "podman": {"start": "stop", "stop": "start", "pause": "unpause", "unpause": "pause"},
}
_CREATE_INVERSES = {"useradd": "userdel", "groupadd": "groupdel"}
_IPTABLES = frozenset({"iptables", "ip6tables"})


@dataclass(frozen=True)
class Compensation:
    """A registered undo: ``command`` undoes ``undoes``, done at ``step`` of ``task_id``."""

    command: str
    undoes: str
    task_id: str | None = None
    step: int | None = None
    snapshot_id: str | None = None
    id: int | None = None             # the journal's id, once stored
    registered_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class CompensationResult:
    compensation: Compensation
    ok: bool
    output: str

    def record(self) -> dict[str, object]:
        c = self.compensation
        return {"command": c.command, "task_id": c.task_id, "step": c.step, "ok": self.ok, "output": self.output[:2000]}


def undo_commands(commands: Sequence[tuple[Argv, bool]]) -> list[str]:
    """The commands that undo ``commands`` (each its argv and whether it ran under sudo),
    in the order those ran (a rollback runs them in reverse); a command with no known
    inverse adds none."""
    undos = []
    for argv, sudo in commands:
        inverse = _inverse(argv)
        if inverse is not None:
            undos.append(shlex.join(("sudo", *inverse) if sudo else inverse))
    return undos


def _inverse(argv: Argv) -> Argv | None:
    if not argv:
        return None
    program, rest = argv[0].rsplit("/", 1)[-1], argv[1:]
    if program == "service" and len(rest) == 2 and rest[1] in ("start", "stop"):
        return (program, rest[0], "stop" if rest[1] == "start" else "start")
    verbs = _VERB_INVERSES.get(program)
    if verbs is not None:
        verb_at = next((i for i, word in enumerate(rest) if not word.startswith("-")), None)
        if verb_at is not None and rest[verb_at] in verbs and len(rest) > verb_at + 1:
            return (program, *rest[:verb_at], verbs[rest[verb_at]], *rest[verb_at + 1:])
        return None
    if program in _CREATE_INVERSES:
        names = [word for word in rest if not word.startswith("-")]
        # Only a bare "useradd NAME": options with values would be mistaken for the name.
        return (_CREATE_INVERSES[program], names[0]) if len(names) == 1 and len(rest) == 1 else None
    if program in _IPTABLES:
        for i, word in enumerate(rest):
            if word in ("-A", "--append", "-I", "--insert"):
                chain_args = rest[i + 1:]
                if word in ("-I", "--insert") and len(chain_args) > 1 and chain_args[1].isdigit():
                    chain_args = (chain_args[0], *chain_args[2:])   # -I CHAIN N RULE: delete by the rule
                return (program, *rest[:i], "-D", *chain_args)
    return None


def run_compensations(compensations: Sequence[Compensation],
                      run: Callable[[str], tuple[bool, str]]) -> list[CompensationResult]:
    """Run ``compensations`` newest first; a failing one is reported and the rest still run."""
    results = []
    in_order = sorted(compensations, key=lambda c: (c.step or 0, c.registered_at, c.id or 0))
    for compensation in reversed(in_order):
        ok, output = run(compensation.command)
        results.append(CompensationResult(compensation, ok, output))
    return results
