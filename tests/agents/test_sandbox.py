"""Both sandboxes, bubblewrap and the rlimit fallback: what a command sees, what comes
back, the limits it runs under, that nothing it started survives its call, and how
``make_sandbox`` chooses. Escape attempts are in test_sandbox_escapes.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybrid_agent.agents.sandbox import (
    BwrapSandbox,
    HeadTailBuffer,
    RlimitSandbox,
    Sandbox,
    SandboxLimits,
    SandboxUnavailable,
    make_sandbox,
)
from hybrid_agent.agents.sandbox import cgroup
from hybrid_agent.agents.sandbox import factory
from tests.agents.sandbox_support import bash, make, marker, survivors

KINDS = ["rlimit", "bwrap"]


@pytest.fixture(params=KINDS)
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return make(request.param)


@pytest.fixture
def no_cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host where no pids cgroup can be made (not root, or a read-only cgroupfs)."""
    monkeypatch.setattr(cgroup, "V2_ROOT", tmp_path / "no-cgroup-v2")
    monkeypatch.setattr(cgroup, "V1_ROOT", tmp_path / "no-cgroup-v1")


def _own_cgroups() -> list[Path]:
    """The command cgroups this test process made that still exist."""
    parents = [cgroup.V2_ROOT / "hybrid-agent", cgroup.V1_ROOT / "hybrid-agent"]
    return [path for parent in parents for path in parent.glob(f"cmd-{os.getpid()}-*")]


class TestExitAndOutput:
    def test_exit_code_passes_through(self, sandbox: Sandbox, tmp_path: Path) -> None:
        result = bash(sandbox, "exit 7", tmp_path)
        assert result.exit_code == 7
        assert not result.timed_out

    def test_stdout_and_stderr_are_interleaved_in_order(self, sandbox: Sandbox, tmp_path: Path) -> None:
        result = bash(sandbox, "echo one; echo two >&2; echo three", tmp_path)
        assert result.output == "one\ntwo\nthree\n"
        assert result.exit_code == 0

    def test_runs_in_the_given_directory(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, "pwd", tmp_path).output.strip() == str(tmp_path)

    def test_a_program_is_found_on_the_path_with_its_arguments_intact(self, sandbox: Sandbox, tmp_path: Path) -> None:
        result = sandbox.run(["printf", "%s|", "two words", "$HOME", "'q'"], cwd=tmp_path, timeout_s=10)
        assert result.output == "two words|$HOME|'q'|"

    def test_death_by_signal_reads_as_the_shell_reports_it(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, "kill -9 $$", tmp_path).exit_code == 128 + 9

    def test_stdin_is_empty(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, "cat; echo done", tmp_path).output == "done\n"

    def test_result_names_the_sandbox(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, "true", tmp_path).isolation == sandbox.name == sandbox.isolation

    def test_a_command_that_cannot_start_is_a_result_not_an_exception(self, sandbox: Sandbox, tmp_path: Path) -> None:
        result = bash(sandbox, "true", tmp_path / "missing")
        assert result.exit_code is None
        assert not result.timed_out
        assert "cannot start" in result.output

    def test_a_nul_byte_in_the_command_is_a_result_not_an_exception(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert "cannot start" in bash(sandbox, "echo \0", tmp_path).output


class TestTruncation:
    @pytest.mark.parametrize("kind", KINDS)
    def test_long_output_keeps_head_and_tail_with_a_marker(self, kind: str, tmp_path: Path) -> None:
        result = bash(make(kind, max_output_chars=300), "echo FIRST; seq 1 100000; echo LAST", tmp_path)
        assert result.truncated
        assert result.output.startswith("FIRST\n")
        assert result.output.endswith("LAST\n")
        assert "[... output truncated: " in result.output
        assert len(result.output) <= 300

    def test_the_marker_counts_the_omitted_bytes(self) -> None:
        buffer = HeadTailBuffer(max_chars=300)
        buffer.feed(b"x" * 10_000)
        text, truncated = buffer.text()
        omitted = int(text.split("truncated: ")[1].split()[0])
        assert truncated
        assert omitted + text.count("x") == 10_000

    def test_output_within_the_limit_is_untouched(self, sandbox: Sandbox, tmp_path: Path) -> None:
        result = bash(sandbox, "seq 1 10", tmp_path)
        assert not result.truncated
        assert result.output == "".join(f"{n}\n" for n in range(1, 11))

    def test_output_just_over_the_limit_keeps_its_true_tail(self) -> None:
        buffer = HeadTailBuffer(max_chars=300)
        data = bytes(ord("a") + n % 26 for n in range(301))
        buffer.feed(data)
        text, truncated = buffer.text()
        assert truncated
        assert data.decode().endswith(text.rsplit("\n", 1)[1])


class TestEnvironment:
    def test_no_variable_of_the_agent_is_inherited(
        self, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HA_FAKE_SECRET", "hunter2")
        result = bash(sandbox, "env", tmp_path)
        assert "hunter2" not in result.output
        assert "HA_FAKE_SECRET" not in result.output

    def test_home_is_the_working_directory(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, 'echo "$HOME"', tmp_path).output.strip() == str(tmp_path)

    def test_path_is_the_system_one(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, 'echo "$PATH"', tmp_path).output.strip() == "/usr/local/bin:/usr/bin:/bin"


class TestLimits:
    def test_address_space_is_limited(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert int(bash(sandbox, "ulimit -v", tmp_path).output) == 2 * 1024 * 1024

    def test_file_size_is_limited(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert int(bash(sandbox, "ulimit -f", tmp_path).output) * 1024 == SandboxLimits().file_size_bytes

    def test_cpu_time_is_limited_beyond_the_timeout(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert int(bash(sandbox, "ulimit -t", tmp_path, timeout_s=2).output) == 2 + 5

    @pytest.mark.parametrize("kind", KINDS)
    def test_limits_come_from_the_settings_given(self, kind: str, tmp_path: Path) -> None:
        limits = SandboxLimits(memory_bytes=512 * 1024**2, file_size_bytes=3 * 1024**2)
        output = bash(make(kind, limits), "ulimit -v; ulimit -f", tmp_path).output
        assert output.split() == [str(512 * 1024), str(3 * 1024)]

    @pytest.mark.parametrize("kind", KINDS)
    def test_a_command_cannot_start_more_processes_than_allowed(self, kind: str, tmp_path: Path) -> None:
        code = (
            "import os, time\n"
            "started = 0\n"
            "try:\n"
            "    for _ in range(100):\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(30)\n"
            "            os._exit(0)\n"
            "        started += 1\n"
            "except BlockingIOError:\n"
            "    print('refused after', started)\n"
        )
        result = make(kind, SandboxLimits(max_processes=20)).run(["python3", "-c", code], cwd=tmp_path, timeout_s=20)
        assert result.output.startswith("refused after ")
        assert int(result.output.split()[-1]) < 20

    @pytest.mark.usefixtures("no_cgroups")
    def test_without_a_pids_cgroup_the_process_rlimit_stands_in_and_the_record_says_so(self, tmp_path: Path) -> None:
        sandbox = RlimitSandbox(1000, SandboxLimits(max_processes=77))
        result = bash(sandbox, "ulimit -u", tmp_path)
        assert sandbox.isolation == result.isolation == "rlimit, no pids cgroup"
        assert result.output.strip() == "77"


class TestPidsCgroup:
    def test_each_command_runs_in_a_cgroup_of_its_own_removed_afterwards(self, tmp_path: Path) -> None:
        sandbox = RlimitSandbox(1000)
        first, second = (bash(sandbox, "cat /proc/self/cgroup", tmp_path).output for _ in range(2))
        assert "hybrid-agent/cmd-" in first
        assert first != second
        assert _own_cgroups() == []

    @pytest.mark.parametrize("kind", KINDS)
    def test_no_cgroup_is_left_after_a_timeout(self, kind: str, tmp_path: Path) -> None:
        assert bash(make(kind), "sleep 60", tmp_path, timeout_s=1).timed_out
        assert _own_cgroups() == []


class TestTimeout:
    def test_a_timed_out_command_has_no_exit_code(self, sandbox: Sandbox, tmp_path: Path) -> None:
        result = bash(sandbox, "echo before; sleep 60", tmp_path, timeout_s=1)
        assert result.timed_out
        assert result.exit_code is None
        assert result.output == "before\n"

    def test_everything_dies_including_what_ignores_sigterm_or_left_the_group(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        # A child that ignores SIGTERM (and passes that on to its sleep), a background
        # grandchild, and a process in a session of its own.
        mark = marker()
        cmd = (
            f"bash -c 'trap \"\" TERM; sleep {mark}' & "
            f"(sleep {mark} & wait) & "
            f"setsid bash -c 'trap \"\" TERM; sleep {mark}' & "
            "wait"
        )
        result = bash(sandbox, cmd, tmp_path, timeout_s=1.5)
        assert result.timed_out
        assert survivors(mark) == []

    def test_background_jobs_do_not_outlive_a_finished_command(self, sandbox: Sandbox, tmp_path: Path) -> None:
        mark = marker()
        result = bash(sandbox, f"sleep {mark} >/dev/null 2>&1 &", tmp_path)
        assert result.exit_code == 0
        assert survivors(mark) == []

    def test_a_background_job_holding_the_output_does_not_hold_the_call(
        self, sandbox: Sandbox, tmp_path: Path
    ) -> None:
        # Without this the call would wait for the job and report a timeout after 60 s.
        mark = marker()
        result = bash(sandbox, f"sleep {mark} & echo started", tmp_path, timeout_s=60)
        assert not result.timed_out
        assert result.output == "started\n"
        assert survivors(mark) == []

    @pytest.mark.usefixtures("no_cgroups")
    def test_without_a_pids_cgroup_the_process_group_is_still_killed(self, tmp_path: Path) -> None:
        mark = marker()
        cmd = f"bash -c 'trap \"\" TERM; sleep {mark}' & (sleep {mark} & wait) & wait"
        assert bash(RlimitSandbox(1000), cmd, tmp_path, timeout_s=1.5).timed_out
        assert survivors(mark) == []

    def test_a_command_that_closes_its_output_still_runs_to_its_exit(self, sandbox: Sandbox, tmp_path: Path) -> None:
        assert bash(sandbox, "exec >&- 2>&-; sleep 0.3; exit 4", tmp_path).exit_code == 4


class TestMakeSandbox:
    @pytest.mark.parametrize("name", ["rlimit", "bwrap"])
    def test_by_name(self, name: str) -> None:
        assert make_sandbox(name, max_output_chars=500).name == name

    def test_auto_is_bubblewrap_where_it_works(self) -> None:
        assert isinstance(make_sandbox("auto", max_output_chars=500), BwrapSandbox)

    @pytest.mark.parametrize("found", [None, "/bin/false"], ids=["missing", "broken"])
    def test_auto_falls_back_to_rlimit_when_bubblewrap_is_missing_or_broken(
        self, found: str | None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(factory, "find_bwrap", lambda: found)
        assert isinstance(make_sandbox("auto", max_output_chars=500), RlimitSandbox)

    @pytest.mark.parametrize("name", ["auto", "bwrap"])
    def test_requiring_bubblewrap_where_it_is_missing_is_an_error_naming_the_setting(
        self, name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(factory, "find_bwrap", lambda: None)
        with pytest.raises(SandboxUnavailable, match="HA_REQUIRE_BWRAP.*no bwrap on PATH"):
            make_sandbox(name, max_output_chars=500, require_bwrap=True)

    def test_naming_bubblewrap_where_it_is_broken_is_an_error_saying_why(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(factory, "find_bwrap", lambda: "/bin/false")
        with pytest.raises(SandboxUnavailable, match="HA_SANDBOX is bwrap.*/bin/false failed"):
            make_sandbox("bwrap", max_output_chars=500)

    def test_requiring_bubblewrap_contradicts_choosing_rlimit(self) -> None:
        with pytest.raises(SandboxUnavailable, match="HA_REQUIRE_BWRAP"):
            make_sandbox("rlimit", max_output_chars=500, require_bwrap=True)

    def test_unknown_name_lists_the_valid_ones(self) -> None:
        with pytest.raises(ValueError, match="auto, bwrap, rlimit"):
            make_sandbox("docker", max_output_chars=500)
