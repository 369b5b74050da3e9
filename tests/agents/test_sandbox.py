"""The rlimit sandbox: what a command sees, what comes back, and that nothing it started
survives a timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hybrid_agent.agents.sandbox import CommandResult, HeadTailBuffer, RlimitSandbox, make_sandbox


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (where PID 1 does not reap orphans,
    a killed process stays a zombie, which is dead for our purposes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _survivors(pids: list[int]) -> list[int]:
    """The pids still alive once SIGKILL has had time to land (delivery is asynchronous:
    a killed process may still be exiting when the call returns)."""
    end = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


@pytest.fixture
def sandbox() -> RlimitSandbox:
    return RlimitSandbox(max_output_chars=1000)


def run(sandbox: RlimitSandbox, cmd: str, cwd: Path, timeout_s: float = 10) -> CommandResult:
    return sandbox.run(cmd, cwd=cwd, timeout_s=timeout_s)


class TestExitAndOutput:
    def test_exit_code_passes_through(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        result = run(sandbox, "exit 7", tmp_path)
        assert result.exit_code == 7
        assert not result.timed_out

    def test_stdout_and_stderr_are_interleaved_in_order(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        result = run(sandbox, "echo one; echo two >&2; echo three", tmp_path)
        assert result.output == "one\ntwo\nthree\n"
        assert result.exit_code == 0

    def test_runs_in_the_given_directory(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert run(sandbox, "pwd", tmp_path).output.strip() == str(tmp_path)

    def test_death_by_signal_reads_as_the_shell_reports_it(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert run(sandbox, "kill -9 $$", tmp_path).exit_code == 128 + 9

    def test_stdin_is_empty(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        result = run(sandbox, "cat; echo done", tmp_path)
        assert result.output == "done\n"

    def test_result_names_the_isolation(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert run(sandbox, "true", tmp_path).isolation == "rlimit"

    def test_a_command_that_cannot_start_is_a_result_not_an_exception(
        self, sandbox: RlimitSandbox, tmp_path: Path
    ) -> None:
        result = run(sandbox, "true", tmp_path / "missing")
        assert result.exit_code is None
        assert not result.timed_out
        assert "cannot start" in result.output

    def test_a_nul_byte_in_the_command_is_a_result_not_an_exception(
        self, sandbox: RlimitSandbox, tmp_path: Path
    ) -> None:
        assert "cannot start" in run(sandbox, "echo \0", tmp_path).output


class TestTruncation:
    def test_long_output_keeps_head_and_tail_with_a_marker(self, tmp_path: Path) -> None:
        sandbox = RlimitSandbox(max_output_chars=300)
        result = run(sandbox, "echo FIRST; seq 1 100000; echo LAST", tmp_path)
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

    def test_output_within_the_limit_is_untouched(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        result = run(sandbox, "seq 1 10", tmp_path)
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
        self, sandbox: RlimitSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HA_FAKE_SECRET", "hunter2")
        result = run(sandbox, "env", tmp_path)
        assert "hunter2" not in result.output
        assert "HA_FAKE_SECRET" not in result.output

    def test_home_is_the_working_directory(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert run(sandbox, 'echo "$HOME"', tmp_path).output.strip() == str(tmp_path)

    def test_path_is_the_system_one(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert run(sandbox, 'echo "$PATH"', tmp_path).output.strip() == "/usr/local/bin:/usr/bin:/bin"


class TestLimits:
    def test_address_space_is_limited(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        kib = int(run(sandbox, "ulimit -v", tmp_path).output)
        assert kib == 2 * 1024 * 1024

    def test_file_size_is_limited(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert run(sandbox, "ulimit -f", tmp_path).output.strip() != "unlimited"

    def test_cpu_time_is_limited_beyond_the_timeout(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        assert int(run(sandbox, "ulimit -t", tmp_path, timeout_s=2).output) == 2 + 5


class TestTimeout:
    def test_a_timed_out_command_has_no_exit_code(self, sandbox: RlimitSandbox, tmp_path: Path) -> None:
        result = run(sandbox, "echo before; sleep 60", tmp_path, timeout_s=1)
        assert result.timed_out
        assert result.exit_code is None
        assert result.output == "before\n"

    def test_the_whole_group_dies_including_processes_that_ignore_sigterm(
        self, sandbox: RlimitSandbox, tmp_path: Path
    ) -> None:
        # A child that ignores SIGTERM (and passes that on to its sleep) and a background
        # grandchild; each writes its pid before the timeout hits.
        cmd = (
            "bash -c 'trap \"\" TERM; echo $$ >> pids; sleep 60' & "
            "(sleep 60 & echo $! >> pids; wait) & "
            "wait"
        )
        result = run(sandbox, cmd, tmp_path, timeout_s=1.5)
        pids = _pids(tmp_path / "pids")
        assert result.timed_out
        assert len(pids) == 2
        assert _survivors(pids) == []

    def test_background_jobs_do_not_outlive_a_finished_command(
        self, sandbox: RlimitSandbox, tmp_path: Path
    ) -> None:
        result = run(sandbox, "sleep 60 >/dev/null 2>&1 & echo $! > pids", tmp_path)
        assert result.exit_code == 0
        assert _survivors(_pids(tmp_path / "pids")) == []

    def test_a_background_job_holding_the_output_does_not_hold_the_call(
        self, sandbox: RlimitSandbox, tmp_path: Path
    ) -> None:
        # Without this the call would wait for the job and report a timeout after 60 s.
        result = run(sandbox, "sleep 60 & echo $! > pids; echo started", tmp_path, timeout_s=60)
        assert not result.timed_out
        assert result.output == "started\n"
        assert _survivors(_pids(tmp_path / "pids")) == []

    def test_a_command_that_closes_its_output_still_runs_to_its_exit(
        self, sandbox: RlimitSandbox, tmp_path: Path
    ) -> None:
        result = run(sandbox, "exec >&- 2>&-; sleep 0.3; exit 4", tmp_path)
        assert result.exit_code == 4


class TestMakeSandbox:
    def test_rlimit_by_name(self) -> None:
        assert make_sandbox("rlimit", max_output_chars=500).name == "rlimit"

    def test_unknown_name_lists_the_valid_ones(self) -> None:
        with pytest.raises(ValueError, match="rlimit"):
            make_sandbox("docker", max_output_chars=500)
