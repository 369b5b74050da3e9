"""The tool runner: every call becomes an observation, file tools stay inside the workspace,
shell runs in the sandbox."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from hybrid_agent.agents.sandbox import RlimitSandbox
from hybrid_agent.agents.tools import Observation, ToolRunner
from hybrid_agent.policies.tool_schema import ToolCall, validate_call

MAX_OUTPUT = 400


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("secret")
    return path


@pytest.fixture
def runner(workspace: Path) -> ToolRunner:
    return ToolRunner(workspace, RlimitSandbox(max_output_chars=MAX_OUTPUT), timeout_s=1, max_output_chars=MAX_OUTPUT)


def call(runner: ToolRunner, tool: str, **args: Any) -> Observation:
    return runner.run(validate_call({"tool": tool, "args": args}))


class TestPathConfinement:
    @pytest.mark.parametrize("path", ["../x", "sub/../../x", "/etc/passwd"])
    def test_read_outside_is_refused(self, runner: ToolRunner, path: str) -> None:
        observation = call(runner, "read_file", path=path)
        assert not observation.ok
        assert observation.output.startswith("error: path outside the workspace")

    @pytest.mark.parametrize("path", ["../x", "/etc", ".."])
    def test_list_outside_is_refused(self, runner: ToolRunner, path: str) -> None:
        observation = call(runner, "list_dir", path=path)
        assert not observation.ok
        assert "outside the workspace" in observation.output

    @pytest.mark.parametrize("relative", [True, False], ids=["dotdot", "absolute"])
    def test_write_outside_is_refused_and_writes_nothing(
        self, runner: ToolRunner, outside: Path, relative: bool
    ) -> None:
        path = f"../{outside.name}/new.txt" if relative else str(outside / "new.txt")
        observation = call(runner, "write_file", path=path, content="x")
        assert not observation.ok
        assert observation.output.startswith("error: path outside the workspace")
        assert not observation.changed
        assert not (outside / "new.txt").exists()

    def test_a_symlink_to_a_file_outside_is_refused(self, runner: ToolRunner, workspace: Path, outside: Path) -> None:
        (workspace / "link").symlink_to(outside / "secret.txt")
        assert not call(runner, "read_file", path="link").ok
        assert not call(runner, "write_file", path="link", content="x").ok
        assert (outside / "secret.txt").read_text() == "secret"

    def test_a_symlinked_directory_outside_is_refused(
        self, runner: ToolRunner, workspace: Path, outside: Path
    ) -> None:
        (workspace / "dir").symlink_to(outside)
        assert not call(runner, "list_dir", path="dir").ok
        assert not call(runner, "read_file", path="dir/secret.txt").ok
        assert not call(runner, "write_file", path="dir/new.txt", content="x").ok
        assert not (outside / "new.txt").exists()

    def test_a_dangling_symlink_to_outside_is_not_written_through(
        self, runner: ToolRunner, workspace: Path, outside: Path
    ) -> None:
        (workspace / "link").symlink_to(outside / "created.txt")
        assert not call(runner, "write_file", path="link", content="x").ok
        assert not (outside / "created.txt").exists()

    def test_a_symlink_loop_is_an_error_not_an_exception(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "a").symlink_to(workspace / "b")
        (workspace / "b").symlink_to(workspace / "a")
        observation = call(runner, "read_file", path="a")
        assert not observation.ok
        assert observation.output.startswith("error: ")

    def test_an_absolute_path_inside_the_workspace_is_allowed(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "notes.txt").write_text("hello")
        assert call(runner, "read_file", path=str(workspace / "notes.txt")).output == "hello"

    def test_a_symlink_within_the_workspace_is_followed(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "real.txt").write_text("real")
        (workspace / "alias.txt").symlink_to("real.txt")
        assert call(runner, "write_file", path="alias.txt", content="new").ok
        assert (workspace / "real.txt").read_text() == "new"
        assert (workspace / "alias.txt").is_symlink()


class TestReadFile:
    def test_write_then_read_round_trip(self, runner: ToolRunner) -> None:
        assert call(runner, "write_file", path="a/b/notes.txt", content="line 1\nline 2\n").ok
        observation = call(runner, "read_file", path="a/b/notes.txt")
        assert observation == Observation(ok=True, output="line 1\nline 2\n")

    def test_a_missing_file_is_named(self, runner: ToolRunner) -> None:
        observation = call(runner, "read_file", path="nope.txt")
        assert observation == Observation(ok=False, output="error: no such file: nope.txt")

    def test_a_directory_is_not_read(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "sub").mkdir()
        assert call(runner, "read_file", path="sub").output == "error: not a regular file: sub"

    def test_invalid_utf8_is_replaced(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "bin").write_bytes(b"ok \xff\xfe end")
        assert call(runner, "read_file", path="bin").output == "ok \ufffd\ufffd end"

    @pytest.mark.parametrize("size", [MAX_OUTPUT + 50, 10 * MAX_OUTPUT])
    def test_a_large_file_keeps_head_and_tail_with_a_marker(
        self, runner: ToolRunner, workspace: Path, size: int
    ) -> None:
        body = "".join(chr(ord("a") + n % 26) for n in range(size - len("HEAD") - len("TAIL")))
        (workspace / "big.log").write_text(f"HEAD{body}TAIL")
        output = call(runner, "read_file", path="big.log").output
        assert output.startswith("HEAD")
        assert output.endswith("TAIL")
        assert "[... output truncated: " in output
        assert len(output) <= MAX_OUTPUT


class TestWriteFile:
    def test_reports_bytes_written_and_a_change(self, runner: ToolRunner, workspace: Path) -> None:
        observation = call(runner, "write_file", path="new/dir/f.txt", content="héllo")
        assert observation == Observation(ok=True, output="wrote 6 bytes to new/dir/f.txt", changed=True)
        assert (workspace / "new/dir/f.txt").read_text() == "héllo"

    def test_overwriting_keeps_the_mode_and_leaves_no_temp_file(self, runner: ToolRunner, workspace: Path) -> None:
        script = workspace / "run.sh"
        script.write_text("old")
        script.chmod(0o755)
        assert call(runner, "write_file", path="run.sh", content="echo new").ok
        assert script.read_text() == "echo new"
        assert stat.S_IMODE(script.stat().st_mode) == 0o755
        assert os.listdir(workspace) == ["run.sh"]

    def test_a_directory_is_not_overwritten(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "sub").mkdir()
        observation = call(runner, "write_file", path="sub", content="x")
        assert observation.output == "error: is a directory: sub"
        assert (workspace / "sub").is_dir()

    def test_an_os_error_is_an_observation_that_may_have_changed_state(
        self, runner: ToolRunner, workspace: Path
    ) -> None:
        (workspace / "file").write_text("")
        observation = call(runner, "write_file", path="file/child.txt", content="x")
        assert not observation.ok
        assert observation.output.startswith("error: ")
        assert observation.changed


class TestListDir:
    def test_entries_are_sorted_with_dirs_marked_and_file_sizes(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "src").mkdir()
        (workspace / "b.txt").write_text("12345")
        (workspace / "a.txt").write_text("")
        (workspace / "link").symlink_to("b.txt")
        observation = call(runner, "list_dir", path=".")
        assert observation == Observation(ok=True, output="a.txt  0 bytes\nb.txt  5 bytes\nlink -> b.txt\nsrc/")

    def test_an_empty_directory_says_so(self, runner: ToolRunner) -> None:
        assert call(runner, "list_dir", path=".").output == "(empty directory)"

    def test_a_missing_directory_is_named(self, runner: ToolRunner) -> None:
        assert call(runner, "list_dir", path="nope").output == "error: no such directory: nope"

    def test_a_file_is_not_listed(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "f").write_text("")
        assert call(runner, "list_dir", path="f").output == "error: not a directory: f"

    def test_a_long_listing_is_capped(self, runner: ToolRunner, workspace: Path) -> None:
        for n in range(200):
            (workspace / f"file{n:03}").write_text("")
        output = call(runner, "list_dir", path=".").output
        assert output.startswith("file000")
        assert output.endswith("file199  0 bytes")
        assert len(output) <= MAX_OUTPUT


class TestShell:
    def test_success_renders_exit_code_and_output(self, runner: ToolRunner) -> None:
        observation = call(runner, "shell", cmd="echo hi")
        assert observation.ok
        assert observation.changed
        assert observation.render() == "exit=0\nhi\n"

    def test_a_non_zero_exit_is_not_ok(self, runner: ToolRunner) -> None:
        observation = call(runner, "shell", cmd="echo failing >&2; exit 3")
        assert not observation.ok
        assert observation.exit_code == 3
        assert observation.output == "failing\n"

    def test_runs_in_the_workspace(self, runner: ToolRunner, workspace: Path) -> None:
        assert call(runner, "shell", cmd="pwd").output.strip() == str(workspace)

    def test_a_timeout_says_the_command_was_killed(self, runner: ToolRunner) -> None:
        observation = call(runner, "shell", cmd="echo started; sleep 30")
        assert not observation.ok
        assert observation.timed_out
        assert observation.exit_code is None
        assert observation.output.startswith("error: timed out, killed after 1 s")
        assert "started" in observation.output
        assert observation.changed


class TestFinishAndDispatch:
    def test_finish_echoes_the_summary(self, runner: ToolRunner) -> None:
        observation = call(runner, "finish", summary="rotated the logs", success=True)
        assert observation == Observation(ok=True, output="rotated the logs")

    def test_an_unknown_tool_is_an_observation(self, runner: ToolRunner) -> None:
        observation = runner.run(ToolCall(tool="python", args={"code": "1"}))
        assert not observation.ok
        assert "unknown tool 'python'" in observation.output

    def test_arguments_are_validated_even_without_validate_call(self, runner: ToolRunner) -> None:
        observation = runner.run(ToolCall(tool="read_file", args={}))
        assert not observation.ok
        assert observation.output.startswith("error: read_file args")


class TestRender:
    def test_without_an_exit_code_the_output_is_shown_as_is(self) -> None:
        assert Observation(ok=False, output="error: no such file: x").render() == "error: no such file: x"

    def test_empty_output_is_marked(self) -> None:
        assert Observation(ok=True, output="", exit_code=0).render() == "exit=0\n(no output)"
