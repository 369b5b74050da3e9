"""Compensations: the undo of effects outside files, derived from the parsed command, run
newest first; a failing one is reported and the others still run."""

from __future__ import annotations

import pytest

from hybrid_agent.policies.shell import parse
from hybrid_agent.rollback.compensations import Compensation, run_compensations, undo_commands


def undo_of(line: str) -> list[str]:
    return undo_commands([(c.argv, "sudo" in c.via) for c in parse(line)])


@pytest.mark.parametrize("line, undo", [
    ("systemctl stop nginx", ["systemctl start nginx"]),
    ("systemctl --now enable cron.service", ["systemctl --now disable cron.service"]),
    ("sudo systemctl mask apt-daily.timer", ["sudo systemctl unmask apt-daily.timer"]),
    ("service postgresql stop", ["service postgresql start"]),
    ("docker stop web-1 && docker pause worker", ["docker start web-1", "docker unpause worker"]),
    ("useradd deploy", ["userdel deploy"]),
    ("iptables -A INPUT -p tcp --dport 8080 -j ACCEPT", ["iptables -D INPUT -p tcp --dport 8080 -j ACCEPT"]),
    ("iptables -I INPUT 1 -s 10.0.0.9 -j DROP", ["iptables -D INPUT -s 10.0.0.9 -j DROP"]),
])
def test_known_effects_have_an_inverse(line: str, undo: list[str]) -> None:
    assert undo_of(line) == undo


@pytest.mark.parametrize("line", [
    "systemctl restart nginx",          # no state to go back to
    "systemctl status nginx",
    "useradd -m -s /bin/bash deploy",   # options with values: the name is not certain
    "rm -rf build",                     # a file effect: the snapshot undoes it
    "ls -la",
])
def test_commands_without_a_known_inverse_register_nothing(line: str) -> None:
    assert undo_of(line) == []


def test_rollback_runs_them_newest_first_and_past_a_failure() -> None:
    registered = [Compensation("systemctl start a", "systemctl stop a", "t", 1),
                  Compensation("systemctl start b", "systemctl stop b", "t", 2),
                  Compensation("docker start c", "docker stop c", "t", 2)]
    ran: list[str] = []

    def run(cmd: str) -> tuple[bool, str]:
        ran.append(cmd)
        return cmd != "docker start c", "boom" if cmd == "docker start c" else ""

    results = run_compensations(registered, run)
    assert ran == ["docker start c", "systemctl start b", "systemctl start a"]
    assert [r.ok for r in results] == [False, True, True]
