"""CI remediation end to end: a signed GitHub ``workflow_run`` failure arrives over HTTP;
a rule makes a ci_remediation task; the worker clones the repository at the failing
commit, reproduces the failure, repairs the code (the code-edit expert's verified fix),
verifies, and waits for approval; approving writes the fix as a new branch of the
repository, on which the tests pass."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from hybrid_agent import runtime
from hybrid_agent.agents.experts import make_experts
from hybrid_agent.agents.hybrid import load_hybrid
from hybrid_agent.agents.sandbox import make_sandbox
from hybrid_agent.agents.worker import Worker
from hybrid_agent.api.auth import create_token
from hybrid_agent.bus.embedded import free_port
from hybrid_agent.models.llm.base import Candidate, Proposal
from hybrid_agent.triggers.router import Router
from hybrid_agent.triggers.rules import parse_rules

PAYLOADS = Path(__file__).parents[1] / "triggers" / "payloads"
SECRET = "s3cret-for-tests"

AGES = "def is_adult(age):\n    return age > 18\n"
TEST_AGES = ("from ages import is_adult\n\n\ndef test_eighteen_is_adult():\n    assert is_adult(18)\n\n\n"
             "def test_seventeen_is_not():\n    assert not is_adult(17)\n")


class FakeFinishingLLM:
    """The LLM boundary, which this test is not about: it offers nothing usable until
    ``finish`` is allowed (after a change), then finishes. The repair is the code-edit
    expert's."""

    name = "fake-finishing"

    def propose(self, messages, schema, k, *, exclude=()):
        if '"finish"' in json.dumps(schema):
            text = json.dumps({"tool": "finish", "args": {"summary": "fixed the comparison", "success": True}})
        else:
            text = "I am not sure."
        return Proposal(candidates=[Candidate(text=text, parsed=_json(text), logprob=-1.0, tokens=8,
                                              error=None if _json(text) else "not JSON")],
                        prompt_tokens=50, seconds=0.01)


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def failing_repo(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "repos" / "octo-repo"
    repo.mkdir(parents=True)
    (repo / "ages.py").write_text(AGES)
    (repo / "test_ages.py").write_text(TEST_AGES)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", "ages", cwd=repo)
    return repo, git("rev-parse", "HEAD", cwd=repo)


def workflow_run_failure(repo: Path, commit: str) -> bytes:
    payload = json.loads((PAYLOADS / "github_workflow_run_failure.json").read_text())
    payload["workflow_run"]["head_sha"] = commit
    payload["workflow_run"]["conclusion"] = "failure"
    payload["repository"]["name"] = repo.name
    return json.dumps(payload).encode()


def signed(body: bytes, delivery: str) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "workflow_run", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json"}


async def test_a_ci_failure_webhook_ends_in_an_approved_fix_branch_whose_tests_pass(
        settings, embedded_nats, failing_repo, tmp_path):
    repo, commit = failing_repo
    rules = parse_rules({"rules": [{
        "name": "ci-fix", "when": {"source": "github", "kind": "ci_failure"},
        "then": {"template": "ci_remediation", "params": {
            "repo": f"{repo.parent}/{{{{ payload.github.repository.name }}}}", "commit": "{{ payload.commit }}",
            "test_cmd": "python3 -m pytest -q -p no:cacheprovider"}}}]})
    configured = settings.model_copy(update={
        "nats_url": embedded_nats, "api_port": free_port(), "webhook_secret_github": SecretStr(SECRET),
        "ablation": "no_hrm", "experts": ["code_edit"], "max_steps": 6})
    async with runtime.services(configured, name="ci-test") as svc:
        stop = asyncio.Event()
        worker = Worker(settings=configured, bus=svc.bus, sessions=svc.sessions, llm=FakeFinishingLLM(),
                        sandbox=make_sandbox("rlimit", max_output_chars=4000),
                        hybrid=load_hybrid("no_hrm", experts=make_experts(["code_edit"])))
        jobs = [asyncio.create_task(Router(svc.bus, svc.sessions, rules=rules).run(stop)),
                asyncio.create_task(worker.run(stop)),
                asyncio.create_task(runtime.serve_api(configured, svc, stop))]
        approver = await create_token(svc.sessions, name="lead", role="approver")
        try:
            async with httpx.AsyncClient(base_url=configured.api_url, headers={"Authorization": f"Bearer {approver}"},
                                         timeout=30) as http:
                await _until_serving(http)
                body = workflow_run_failure(repo, commit)
                answer = await http.post("/hooks/github", content=body, headers=signed(body, "delivery-1"))
                assert answer.status_code == 202, answer.text
                task = await _until(http, lambda t: t["status"] != "queued" and t["status"] != "running")
                assert task["status"] == "awaiting_approval", task
                assert task["template"] == "ci_remediation" and task["rule"] == "ci-fix"
                assert "Reproduced" in _prepared_goal(task) and "assert is_adult(18)" in _prepared_goal(task)
                (approval,) = (await http.get("/api/approvals", params={"status": "pending"})).json()
                assert approval["kind"] == "change_set" and "+    return age >= 18" in approval["diff"]
                assert [f["path"] for f in approval["change_set"]["files"]] == ["ages.py"]

                decided = await http.post(f"/api/approvals/{approval['id']}/decision", json={"decision": "approve"})
                assert decided.status_code == 200, decided.text
                task = await _until(http, lambda t: t["status"] == "succeeded" or t["status"] == "failed")
        finally:
            stop.set()
            await asyncio.gather(*jobs)
    assert task["status"] == "succeeded", task
    branch = task["result"]["branch"]
    assert branch.startswith("ha/fix-") and git("rev-parse", branch, cwd=repo) == task["result"]["commit"]
    assert git("rev-parse", f"{branch}~1", cwd=repo) == commit
    assert git("rev-parse", "HEAD", cwd=repo) == commit   # the repository's own checkout is untouched
    checkout = tmp_path / "checkout"
    git("clone", "-q", "-b", branch, str(repo), str(checkout), cwd=tmp_path)
    assert (checkout / "test_ages.py").read_text() == TEST_AGES
    tests = subprocess.run(["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=checkout,
                           capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout


def _prepared_goal(task: dict) -> str:
    return next(entry["detail"]["goal"] for entry in task["journal"] if entry["kind"] == "task.prepared")


async def _until_serving(http: httpx.AsyncClient) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def _until(http: httpx.AsyncClient, done, timeout_s: float = 180) -> dict:
    """The first task, once ``done(task)``."""
    async with asyncio.timeout(timeout_s):
        while True:
            tasks = (await http.get("/api/tasks")).json()
            if tasks:
                task = (await http.get(f"/api/tasks/{tasks[0]['id']}")).json()
                if done(task):
                    return task
            await asyncio.sleep(0.2)
