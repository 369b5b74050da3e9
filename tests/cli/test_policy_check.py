"""`hybrid-agent policy check` reads tool calls as JSONL on stdin and writes one decision
per call, in order, as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def policy_check(lines: list[str], *args: str, env_policy: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if env_policy is not None:
        env["HA_POLICY"] = str(env_policy)
    return subprocess.run([sys.executable, "-m", "hybrid_agent", "policy", "check", *args],
                          input="".join(line + "\n" for line in lines), capture_output=True, text=True,
                          env=env, timeout=60)


def test_one_decision_per_call_in_order(tmp_path):
    calls = [
        {"tool": "shell", "args": {"cmd": "ls -la"}},
        {"tool": "shell", "args": {"cmd": "rm -rf /"}},
        {"tool": "shell", "args": {"cmd": "rm notes.txt"}},
        {"tool": "write_file", "args": {"path": "a.txt", "content": "x"}},
    ]
    done = policy_check([json.dumps(c) for c in calls], "--scope", str(tmp_path))
    assert done.returncode == 0, done.stderr
    decisions = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["decision"] for d in decisions] == ["allow", "deny", "approve", "allow"]
    assert decisions[1]["risk"] == "critical" and decisions[1]["reasons"]
    assert all(set(d) >= {"decision", "risk", "reasons"} for d in decisions)


def test_a_line_that_is_not_json_gets_a_deny_naming_it_and_the_rest_go_on(tmp_path):
    done = policy_check(['{"tool": "shell"', json.dumps({"tool": "shell", "args": {"cmd": "pwd"}})],
                        "--scope", str(tmp_path))
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["decision"] == "deny" and "line 1" in first["reasons"][0]
    assert second["decision"] == "allow"


def test_the_scope_decides_what_is_outside(tmp_path):
    call = json.dumps({"tool": "shell", "args": {"cmd": f"touch {tmp_path}/x"}})
    inside = json.loads(policy_check([call], "--scope", str(tmp_path)).stdout)
    outside = json.loads(policy_check([call], "--scope", str(tmp_path / "sub")).stdout)
    assert inside["decision"] == "allow" and outside["decision"] == "deny"


def test_another_policy_comes_from_the_flag_or_HA_POLICY(tmp_path):
    text = (Path(__file__).parents[2] / "hybrid_agent/policies/default_policy.yaml").read_text()
    custom = tmp_path / "site.yaml"
    custom.write_text(text.replace('version: "', 'version: "site-', 1))
    call = [json.dumps({"tool": "shell", "args": {"cmd": "ls"}})]
    by_flag = json.loads(policy_check(call, "--policy", str(custom)).stdout)
    by_env = json.loads(policy_check(call, env_policy=custom).stdout)
    assert by_flag["policy_version"].startswith("site-") and by_env["policy_version"].startswith("site-")


def test_a_broken_policy_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: x\nnetwork: maybe\n")
    done = policy_check([], "--policy", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(bad) in done.stderr and len(done.stderr.strip().splitlines()) == 1
