"""A worker process for the chaos tests: the real ``Worker`` on the given store and NATS,
whose LLM is a fake (the boundary these tests are not about). Run as
``python -m tests.chaos.worker_process DATA_DIR DATABASE_URL NATS_URL REDIS_URL HANG``;
SIGTERM stops it, SIGKILL is what the tests are about."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from hybrid_agent import runtime
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.config import Settings
from hybrid_agent.models.llm.base import Candidate, Proposal

LOG = "log.txt"


class FakeChaosLLM:
    """Appends ``a`` then ``b`` to log.txt (each a step the test counts), looking between
    changes, then finishes; deciding from the workspace, so a resumed task asks the same.
    With ``hang``, appending ``b`` then hangs: the process is killed mid-action."""

    name = "fake-chaos"

    def __init__(self, workspace: Path, hang: bool) -> None:
        self.workspace, self.hang = workspace, hang

    def propose(self, messages, schema, k, *, exclude=()):
        allowed = json.dumps(schema)
        log = self.workspace / LOG
        lines = log.read_text().split() if log.exists() else []
        if '"shell"' in allowed and "a" not in lines:
            call = {"tool": "shell", "args": {"cmd": f"echo a >> {LOG}"}}
        elif '"shell"' in allowed and "b" not in lines:
            hang = " && sleep 300" if self.hang else ""
            call = {"tool": "shell", "args": {"cmd": f"echo b >> {LOG}{hang}", "timeout_s": 600}}
        elif '"finish"' in allowed and lines == ["a", "b"]:
            call = {"tool": "finish", "args": {"summary": "a and b appended", "success": True}}
        else:
            call = {"tool": "list_dir", "args": {"path": "."}}
        return Proposal(candidates=[Candidate(text=json.dumps(call), parsed=call, logprob=-1.0, tokens=5)],
                        prompt_tokens=10, seconds=0.0)


async def main(data_dir: str, database_url: str, nats_url: str, redis_url: str, hang: str) -> None:
    settings = Settings(data_dir=Path(data_dir), database_url=database_url, nats_url=nats_url, redis_url=redis_url,
                        ack_wait_s=3, experts=[], ablation="llm_only", tool_max_timeout_s=600)
    workspace = Path(data_dir).parent / "ws"
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with runtime.services(settings, name="chaos-worker") as svc:
        worker = Worker(settings=settings, bus=svc.bus, sessions=svc.sessions, llm=FakeChaosLLM(workspace, hang == "1"),
                        sandbox=make_sandbox("rlimit", max_output_chars=1000))
        print("ready", flush=True)
        await worker.run(stop)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
