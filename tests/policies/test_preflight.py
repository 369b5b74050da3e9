"""Preflight finds calls that certainly fail (a program that does not exist, a missing file
to read) and passes everything else, including what it cannot read."""

import pytest

from hybrid_agent.policies.preflight import preflight
from hybrid_agent.policies.tool_schema import ToolCall


@pytest.mark.parametrize("cmd", ["count -n 1 count.txt", "ls && append done s.txt", "copy-to-backup.csv",
                                 "echo $(frobnicate)", "bash -c 'nosuchtool x'", "sudo nosuchtool"])
def test_a_command_naming_no_program_fails_preflight(cmd, tmp_path):
    assert "no program named" in preflight(ToolCall(tool="shell", args={"cmd": cmd}), tmp_path)


@pytest.mark.parametrize("cmd", ["cp a b", "echo hi > x", "cd sub; ls", "./run.sh", "/bin/ls -l", "rm -rf junk",
                                 'echo "open', "$EDITOR x"])
def test_ordinary_commands_pass(cmd, tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    assert preflight(ToolCall(tool="shell", args={"cmd": cmd}), tmp_path) is None


@pytest.mark.parametrize("cmd", ["files/data.csv", "./missing.sh", "/opt/nothing/here"])
def test_a_path_to_no_program_fails_preflight(cmd, tmp_path):
    assert "no program at" in preflight(ToolCall(tool="shell", args={"cmd": cmd}), tmp_path)


def test_reading_a_missing_file_fails_preflight_and_an_existing_one_passes(tmp_path):
    (tmp_path / "here.txt").write_text("x")
    assert preflight(ToolCall(tool="read_file", args={"path": "gone.txt"}), tmp_path) == "gone.txt does not exist"
    assert preflight(ToolCall(tool="read_file", args={"path": "here.txt"}), tmp_path) is None
    assert preflight(ToolCall(tool="write_file", args={"path": "new.txt", "content": ""}), tmp_path) is None
