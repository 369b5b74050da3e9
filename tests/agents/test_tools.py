"""The tool runner: every call becomes an observation, file tools stay inside the workspace,
commands (shell, python, run_tests) run in the sandbox."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from hybrid_agent.agents.sandbox import RlimitSandbox
from hybrid_agent.agents.tools import Observation, ToolRunner
from hybrid_agent.policies.tool_schema import STATE_CHANGING, TOOL_ARGS, ToolCall, call_schema, validate_call

MAX_OUTPUT = 400


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

    @pytest.mark.parametrize("path", ["../outside/secret.txt", "link/secret.txt"])
    def test_edit_outside_is_refused_and_changes_nothing(
        self, runner: ToolRunner, workspace: Path, outside: Path, path: str
    ) -> None:
        (workspace / "link").symlink_to(outside)
        observation = call(runner, "edit", path=path, old="secret", new="leaked")
        assert observation.output.startswith("error: path outside the workspace")
        assert not observation.changed
        assert (outside / "secret.txt").read_text() == "secret"

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


class TestReadFileLines:
    @pytest.fixture
    def numbered(self, workspace: Path) -> str:
        (workspace / "n.txt").write_text("one\ntwo\nthree\nfour\n")
        return "n.txt"

    @pytest.mark.parametrize("bounds,text", [
        ({"start_line": 2, "end_line": 3}, "two\nthree\n"),
        ({"start_line": 3}, "three\nfour\n"),
        ({"end_line": 2}, "one\ntwo\n"),
        ({"start_line": 4, "end_line": 4}, "four\n"),
        ({"start_line": 3, "end_line": 99}, "three\nfour\n"),
    ], ids=["middle", "to-the-end", "from-the-start", "last-line", "end-past-the-last-line"])
    def test_a_range_is_read_counting_from_one_both_ends_included(
        self, runner: ToolRunner, numbered: str, bounds: dict[str, int], text: str
    ) -> None:
        assert call(runner, "read_file", path=numbered, **bounds) == Observation(ok=True, output=text)

    def test_a_start_past_the_end_says_how_many_lines_there_are(self, runner: ToolRunner, numbered: str) -> None:
        observation = call(runner, "read_file", path=numbered, start_line=9)
        assert observation == Observation(ok=False, output="error: start_line 9 is past the end of n.txt (4 lines)")

    def test_an_end_before_the_start_is_an_error(self, runner: ToolRunner, numbered: str) -> None:
        observation = call(runner, "read_file", path=numbered, start_line=3, end_line=2)
        assert observation.output == "error: end_line 2 is before start_line 3"

    def test_a_line_number_below_one_is_invalid(self, runner: ToolRunner, numbered: str) -> None:
        observation = runner.run(ToolCall(tool="read_file", args={"path": numbered, "start_line": 0}))
        assert observation.output.startswith("error: read_file args: ('start_line',)")

    def test_a_long_range_keeps_head_and_tail_with_a_marker(self, runner: ToolRunner, workspace: Path) -> None:
        (workspace / "big.log").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
        output = call(runner, "read_file", path="big.log", start_line=10, end_line=900).output
        assert output.startswith("line 10\n")
        assert output.endswith("line 900\n")
        assert "[... output truncated: " in output
        assert len(output) <= MAX_OUTPUT


class TestEdit:
    @pytest.fixture
    def source(self, workspace: Path) -> Path:
        path = workspace / "app.py"
        path.write_text("a = 1\nb = 2\nc = 2\n")
        return path

    def test_the_one_occurrence_is_replaced_and_its_line_named(self, runner: ToolRunner, source: Path) -> None:
        observation = call(runner, "edit", path="app.py", old="b = 2", new="b = 20")
        assert observation == Observation(ok=True, output="edited app.py at line 2", changed=True)
        assert source.read_text() == "a = 1\nb = 20\nc = 2\n"

    def test_text_that_is_absent_is_an_error_and_changes_nothing(self, runner: ToolRunner, source: Path) -> None:
        observation = call(runner, "edit", path="app.py", old="d = 4", new="d = 5")
        assert observation == Observation(
            ok=False, output="error: old text not found in app.py; it must match the file exactly")
        assert source.read_text() == "a = 1\nb = 2\nc = 2\n"

    def test_text_that_occurs_more_than_once_is_an_error_saying_how_often(
        self, runner: ToolRunner, source: Path
    ) -> None:
        observation = call(runner, "edit", path="app.py", old=" = 2", new=" = 3")
        assert not observation.ok
        assert observation.output.startswith("error: old text occurs 2 times in app.py; include more")
        assert source.read_text() == "a = 1\nb = 2\nc = 2\n"

    def test_a_missing_file_is_named(self, runner: ToolRunner) -> None:
        assert call(runner, "edit", path="nope.py", old="x", new="y").output == "error: no such file: nope.py"

    def test_the_mode_and_bytes_outside_the_edit_are_kept(self, runner: ToolRunner, workspace: Path) -> None:
        script = workspace / "run.sh"
        script.write_bytes(b"#!/bin/sh\necho \xff old\n")
        script.chmod(0o755)
        assert call(runner, "edit", path="run.sh", old="old", new="new").ok
        assert script.read_bytes() == b"#!/bin/sh\necho \xff new\n"
        assert stat.S_IMODE(script.stat().st_mode) == 0o755


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


class TestTimeouts:
    def test_a_call_may_ask_for_less_time(self, workspace: Path) -> None:
        runner = ToolRunner(workspace, RlimitSandbox(MAX_OUTPUT), timeout_s=30, max_output_chars=MAX_OUTPUT)
        observation = call(runner, "shell", cmd="sleep 30", timeout_s=1)
        assert observation.output.startswith("error: timed out, killed after 1 s")

    def test_a_call_gets_no_more_than_the_maximum(self, workspace: Path) -> None:
        runner = ToolRunner(workspace, RlimitSandbox(MAX_OUTPUT), timeout_s=1, max_output_chars=MAX_OUTPUT,
                            max_timeout_s=2)
        observation = call(runner, "python", code="import time; time.sleep(30)", timeout_s=3600)
        assert observation.output.startswith("error: timed out, killed after 2 s")

    def test_without_a_maximum_a_call_cannot_raise_the_timeout(self, runner: ToolRunner) -> None:
        observation = call(runner, "run_tests", cmd="sleep 30", timeout_s=5)
        assert observation.output.startswith("error: timed out, killed after 1 s")


class TestPython:
    def test_the_code_runs_and_prints(self, runner: ToolRunner) -> None:
        observation = call(runner, "python", code="print(6 * 7)")
        assert observation == Observation(ok=True, output="42\n", exit_code=0, changed=True)

    def test_quotes_newlines_and_dollars_reach_python_intact(self, runner: ToolRunner) -> None:
        code = "s = 'it\\'s \"$HOME\"'\nprint(s)"
        assert call(runner, "python", code=code).output == "it's \"$HOME\"\n"

    def test_it_runs_in_the_workspace(self, runner: ToolRunner, workspace: Path) -> None:
        assert call(runner, "python", code="import os; print(os.getcwd())").output == f"{workspace}\n"

    def test_an_exception_is_a_failed_observation_with_its_traceback(self, runner: ToolRunner) -> None:
        observation = call(runner, "python", code="1 / 0")
        assert not observation.ok
        assert observation.exit_code == 1
        assert "ZeroDivisionError" in observation.output


class TestRunTests:
    @pytest.fixture
    def tests_runner(self, workspace: Path) -> ToolRunner:
        return ToolRunner(workspace, RlimitSandbox(MAX_OUTPUT), timeout_s=30, max_output_chars=MAX_OUTPUT,
                          test_cmd="python3 -m unittest -q")

    @staticmethod
    def _test_file(workspace: Path, expected: int) -> None:
        (workspace / "test_sum.py").write_text(
            "import unittest\n\n"
            "class TestSum(unittest.TestCase):\n"
            f"    def test_sum(self):\n        self.assertEqual(1 + 1, {expected})\n"
        )

    def test_passing_tests_are_ok(self, tests_runner: ToolRunner, workspace: Path) -> None:
        self._test_file(workspace, expected=2)
        observation = call(tests_runner, "run_tests")
        assert observation.ok
        assert observation.exit_code == 0
        assert "Ran 1 test" in observation.output

    def test_failing_tests_are_a_failed_observation_with_the_report(
        self, tests_runner: ToolRunner, workspace: Path
    ) -> None:
        self._test_file(workspace, expected=3)
        observation = call(tests_runner, "run_tests")
        assert not observation.ok
        assert observation.exit_code == 1
        assert "AssertionError: 2 != 3" in observation.output

    def test_a_command_in_the_call_replaces_the_configured_one(self, tests_runner: ToolRunner) -> None:
        assert call(tests_runner, "run_tests", cmd="echo custom; exit 5").render() == "exit=5\ncustom\n"


class TestFinishAndDispatch:
    def test_finish_echoes_the_summary(self, runner: ToolRunner) -> None:
        observation = call(runner, "finish", summary="rotated the logs", success=True)
        assert observation == Observation(ok=True, output="rotated the logs")

    def test_an_unknown_tool_is_an_observation(self, runner: ToolRunner) -> None:
        observation = runner.run(ToolCall(tool="browser", args={"url": "x"}))
        assert not observation.ok
        assert "unknown tool 'browser'" in observation.output

    def test_the_runner_says_what_isolates_its_commands(self, runner: ToolRunner) -> None:
        assert runner.isolation == "rlimit"

    def test_arguments_are_validated_even_without_validate_call(self, runner: ToolRunner) -> None:
        observation = runner.run(ToolCall(tool="read_file", args={}))
        assert not observation.ok
        assert observation.output.startswith("error: read_file args")


class TestSchema:
    def test_an_optional_argument_given_as_null_is_the_same_call_as_one_without_it(self) -> None:
        with_null = validate_call({"tool": "read_file", "args": {"path": "a", "start_line": None}})
        assert with_null == validate_call({"tool": "read_file", "args": {"path": "a"}})
        assert with_null.args == {"path": "a"}

    @pytest.mark.parametrize("tool,field", [("python", "code"), ("edit", "old"), ("edit", "new"),
                                            ("run_tests", "cmd"), ("shell", "cmd")])
    def test_strings_that_need_escapes_are_unbounded_in_the_decoding_schema(self, tool: str, field: str) -> None:
        prop = call_schema(frozenset({tool}))["properties"]["args"]["properties"][field]
        assert "maxLength" not in json.dumps(prop)

    def test_every_tool_but_those_that_only_look_or_finish_changes_state(self) -> None:
        assert STATE_CHANGING == set(TOOL_ARGS) - {"read_file", "list_dir", "finish"}


class TestRender:
    def test_without_an_exit_code_the_output_is_shown_as_is(self) -> None:
        assert Observation(ok=False, output="error: no such file: x").render() == "error: no such file: x"

    def test_empty_output_is_marked(self) -> None:
        assert Observation(ok=True, output="", exit_code=0).render() == "exit=0\n(no output)"
