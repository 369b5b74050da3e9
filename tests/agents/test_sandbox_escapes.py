"""Escape attempts under bubblewrap: each is stopped, and comes back as a result the model
reads, never as an exception. Where the rlimit fallback does not stop an attempt, a test
says so: that is what bubblewrap is for, and it shows the attempt itself works."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_agent.agents.sandbox import Sandbox, SandboxLimits
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.policies.tool_schema import validate_call
from tests.agents.sandbox_support import bash, make, marker, survivors

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-test-only\n"


@pytest.fixture
def bwrap() -> Sandbox:
    return make("bwrap")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the workspace holding a private key, as a secret would lie."""
    path = tmp_path / "outside"
    path.mkdir()
    key = path / "id_ed25519"
    key.write_text(PRIVATE_KEY)
    key.chmod(0o600)
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on the host's loopback that accepts connections (as NATS on 4222 does)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _content(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _connect(port: int) -> str:
    return (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()\n"
        "    print('connected')\n"
        "except OSError as exc:\n"
        "    print('refused:', exc)\n"
    )


class TestNetwork:
    def test_the_hosts_loopback_is_unreachable(self, bwrap: Sandbox, workspace: Path, listener: int) -> None:
        result = bwrap.run(["python3", "-c", _connect(listener)], cwd=workspace, timeout_s=10)
        assert result.output.startswith("refused:")

    def test_the_rlimit_fallback_does_not_isolate_the_network(self, workspace: Path, listener: int) -> None:
        result = make("rlimit").run(["python3", "-c", _connect(listener)], cwd=workspace, timeout_s=10)
        assert result.output == "connected\n"

    def test_loopback_is_the_only_interface(self, bwrap: Sandbox, workspace: Path) -> None:
        lines = bash(bwrap, "cat /proc/net/dev", workspace).output.splitlines()[2:]   # two header lines
        assert [line.split(":")[0].strip() for line in lines] == ["lo"]

    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed; the socket test covers this")
    def test_curl_cannot_connect(self, bwrap: Sandbox, workspace: Path, listener: int) -> None:
        result = bash(bwrap, f"curl -sS --max-time 5 http://127.0.0.1:{listener}/", workspace)
        assert result.exit_code == 7   # curl: failed to connect


class TestWritesOutsideTheWorkspace:
    def test_an_absolute_path_outside_is_not_written(self, bwrap: Sandbox, workspace: Path, outside: Path) -> None:
        result = bash(bwrap, f"echo x > {outside}/new.txt", workspace)
        assert result.exit_code != 0
        assert not (outside / "new.txt").exists()

    def test_dotdot_does_not_reach_the_hosts_parent(self, bwrap: Sandbox, workspace: Path) -> None:
        bash(bwrap, "echo x > ../escaped.txt", workspace)
        assert not (workspace.parent / "escaped.txt").exists()

    def test_a_symlink_to_outside_is_not_written_through(self, bwrap: Sandbox, workspace: Path, outside: Path) -> None:
        (workspace / "link").symlink_to(outside)
        result = bash(bwrap, "echo x > link/new.txt", workspace)
        assert result.exit_code != 0
        assert not (outside / "new.txt").exists()

    @pytest.mark.parametrize("path", ["/new.txt", "/etc/new.txt", "/dev/new.txt"])
    def test_nothing_outside_tmp_and_the_workspace_is_writable_even_in_memory(
        self, bwrap: Sandbox, workspace: Path, path: str
    ) -> None:
        # bubblewrap builds the root and /dev in memory; writable, they would hold any
        # amount of data past the bound on /tmp.
        result = bash(bwrap, f"echo x > {path}", workspace)
        assert result.exit_code != 0
        assert "Read-only file system" in result.output

    @pytest.mark.parametrize("path", ["/usr/hybrid-agent-test", "/etc/passwd", "/var/log/hybrid-agent-test"])
    def test_the_system_and_the_read_paths_are_read_only(self, bwrap: Sandbox, workspace: Path, path: str) -> None:
        before = _content(Path(path))
        result = bash(bwrap, f"echo x >> {path}", workspace)
        assert "Read-only file system" in result.output
        assert _content(Path(path)) == before

    def test_the_workspace_is_writable(self, bwrap: Sandbox, workspace: Path) -> None:
        assert bash(bwrap, "mkdir sub && echo made > sub/f.txt", workspace).exit_code == 0
        assert (workspace / "sub/f.txt").read_text() == "made\n"

    @pytest.mark.parametrize("tool,args", [
        ("write_file", {"path": "link/new.txt", "content": "x"}),
        ("edit", {"path": "link/id_ed25519", "old": "BEGIN", "new": "END"}),
    ])
    def test_file_tools_refuse_the_symlink_too(
        self, bwrap: Sandbox, workspace: Path, outside: Path, tool: str, args: dict[str, str]
    ) -> None:
        (workspace / "link").symlink_to(outside)
        runner = ToolRunner(workspace, bwrap, timeout_s=10, max_output_chars=1000)
        observation = runner.run(validate_call({"tool": tool, "args": args}))
        assert not observation.ok
        assert "outside the workspace" in observation.output
        assert not (outside / "new.txt").exists()
        assert (outside / "id_ed25519").read_text() == PRIVATE_KEY


class TestSecrets:
    def test_a_private_key_beside_the_workspace_cannot_be_read(
        self, bwrap: Sandbox, workspace: Path, outside: Path
    ) -> None:
        result = bash(bwrap, f"cat {outside}/id_ed25519; cat ../outside/id_ed25519; ls {outside}", workspace)
        assert "PRIVATE KEY" not in result.output
        assert "No such file or directory" in result.output

    @pytest.mark.parametrize("tool,args", [
        ("python", {"code": "print(open('../outside/id_ed25519').read())"}),
        ("run_tests", {"cmd": "cat ../outside/id_ed25519"}),
    ])
    def test_python_and_tests_run_in_the_same_sandbox(
        self, bwrap: Sandbox, workspace: Path, outside: Path, tool: str, args: dict[str, str]
    ) -> None:
        runner = ToolRunner(workspace, bwrap, timeout_s=10, max_output_chars=1000)
        observation = runner.run(validate_call({"tool": tool, "args": args}))
        assert not observation.ok
        assert "PRIVATE KEY" not in observation.output
        assert runner.isolation == "bwrap"

    def test_the_rlimit_fallback_does_not_hide_it(self, workspace: Path, outside: Path) -> None:
        assert "PRIVATE KEY" in bash(make("rlimit"), f"cat {outside}/id_ed25519", workspace).output

    @pytest.mark.parametrize("path", ["/root", "/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/ssl/private"])
    def test_system_secrets_do_not_exist_inside(self, bwrap: Sandbox, workspace: Path, path: str) -> None:
        assert Path(path).exists()   # on the host, so their absence inside means something
        result = bash(bwrap, f"test -e {path} && echo visible || echo absent", workspace)
        assert result.output == "absent\n"

    def test_other_processes_are_invisible(self, bwrap: Sandbox, workspace: Path) -> None:
        result = bash(bwrap, "ls /proc | grep -c '^[0-9]'", workspace)
        assert int(result.output) <= 4   # bubblewrap's init, bash, ls, grep

    def test_the_agents_environment_is_not_there(
        self, bwrap: Sandbox, workspace: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HA_TOKEN", "s3cr3t-token")
        assert "s3cr3t-token" not in bash(bwrap, "env; cat /proc/1/environ", workspace).output


class TestResourceExhaustion:
    @pytest.mark.parametrize("kind", ["bwrap", "rlimit"])
    def test_a_fork_bomb_is_stopped_and_nothing_of_it_survives(self, kind: str, workspace: Path) -> None:
        mark = marker()
        bomb = f": {mark}; bomb() {{ bomb | bomb & }}; bomb; sleep {mark}"
        result = bash(make(kind, SandboxLimits(max_processes=32)), bomb, workspace, timeout_s=3)
        assert result.timed_out
        assert "Resource temporarily unavailable" in result.output   # the pids limit refused forks
        assert survivors(mark) == []

    @pytest.mark.parametrize("kind", ["bwrap", "rlimit"])
    def test_a_file_cannot_grow_past_the_file_size_limit(self, kind: str, workspace: Path) -> None:
        sandbox = make(kind, SandboxLimits(file_size_bytes=1024**2))
        result = bash(sandbox, "dd if=/dev/zero of=big bs=1M count=8", workspace)
        assert result.exit_code == 128 + 25   # SIGXFSZ
        assert (workspace / "big").stat().st_size <= 1024**2

    @pytest.mark.parametrize("directory", ["/tmp", "/dev/shm"])
    def test_the_private_memory_filesystems_cannot_grow_past_their_size(self, workspace: Path, directory: str) -> None:
        sandbox = make("bwrap", SandboxLimits(tmp_bytes=2 * 1024**2, file_size_bytes=64 * 1024**2))
        result = bash(sandbox, f"dd if=/dev/zero of={directory}/big bs=1M count=8", workspace)
        assert result.exit_code != 0
        assert "No space left on device" in result.output

    def test_tmp_is_private(self, bwrap: Sandbox, workspace: Path) -> None:
        mark = marker()
        assert bash(bwrap, f"echo x > /tmp/{mark}; ls /tmp", workspace).exit_code == 0
        assert not Path("/tmp", mark).exists()

    @pytest.mark.parametrize("kind", ["bwrap", "rlimit"])
    def test_memory_is_bounded(self, kind: str, workspace: Path) -> None:
        sandbox = make(kind, SandboxLimits(memory_bytes=512 * 1024**2))
        result = sandbox.run(["python3", "-c", "b = bytearray(1024**3)"], cwd=workspace, timeout_s=20)
        assert result.exit_code != 0
        assert "MemoryError" in result.output


class TestTimeouts:
    def test_a_sleep_past_the_timeout_is_killed(self, bwrap: Sandbox, workspace: Path) -> None:
        mark = marker()
        result = bash(bwrap, f"sleep {mark}", workspace, timeout_s=1)
        assert result.timed_out
        assert result.exit_code is None
        assert survivors(mark) == []

    def test_a_detached_child_ignoring_sigterm_is_killed_anyway(self, bwrap: Sandbox, workspace: Path) -> None:
        mark = marker()
        cmd = f"setsid bash -c 'trap \"\" TERM; sleep {mark}' & sleep {mark}"
        result = bash(bwrap, cmd, workspace, timeout_s=1.5)
        assert result.timed_out
        assert survivors(mark) == []
