"""As a new user would: `hybrid-agent up` on the embedded defaults (no external NATS or
database), then `hybrid-agent submit ... --wait`, then Ctrl-C stops everything cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hybrid_agent.bus.embedded import free_port

pytestmark = pytest.mark.llm
MODEL_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "models"


def wait_for_health(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError("the API did not come up")


def test_up_then_submit_wait_then_ctrl_c(tmp_path):
    data_dir, workspace, port = tmp_path / "data", tmp_path / "w", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HA_")}
    env |= {"HA_MODEL_CACHE": str(MODEL_CACHE), "HA_API_PORT": str(port)}
    cli = [sys.executable, "-m", "hybrid_agent"]
    up = subprocess.Popen([*cli, "up", "--data-dir", str(data_dir)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", up)
        assert (data_dir / "admin.token").stat().st_mode & 0o777 == 0o600
        submit = subprocess.run([*cli, "submit", "Create a file named hello.txt containing the word hello",
                                 "--workspace", str(workspace), "--wait", "--data-dir", str(data_dir)],
                                env=env, capture_output=True, text=True, timeout=600)
        print(submit.stdout, submit.stderr)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        assert "step 1" in submit.stdout and submit.stdout.strip().splitlines()[-1].startswith("succeeded")
        assert "hello" in (workspace / "hello.txt").read_text()
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    print(output)
    assert up.returncode == 0, output
    assert "console: http://127.0.0.1:" in output and output.strip().endswith("stopped")
    leftover = subprocess.run(["pgrep", "-f", str(data_dir / "jetstream")], capture_output=True, text=True)
    assert leftover.stdout == "", "the embedded nats-server outlived `up`"
