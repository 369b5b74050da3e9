"""The ``hybrid-agent`` command. Each subcommand is a short function; errors a person can
fix are printed as one line (exit 2), never as a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from hybrid_agent.config import ABLATIONS, Settings


class CLIError(Exception):
    """A message for the person at the terminal."""


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args)
        sys.exit(args.handler(args, settings) or 0)
    except CLIError as exc:
        print(f"hybrid-agent: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def load_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "port", None):
        overrides["api_port"] = args.port
    if getattr(args, "ablation", None):
        overrides["ablation"] = args.ablation
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CLIError(f"bad setting HA_{str(first['loc'][0]).upper()}: {first['msg']}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybrid-agent", description="Event-driven autonomous operations agent.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler, help_: str) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--data-dir", type=Path, help="state directory (default: HA_DATA_DIR or ~/.hybrid-agent)")
        p.add_argument("-v", "--verbose", action="store_true", help="log progress")
        p.set_defaults(handler=handler)
        return p

    up = command("up", cmd_up, "run NATS (embedded unless HA_NATS_URL), the API, the router and a worker")
    up.add_argument("--port", type=int, help="API port (default: HA_API_PORT or 8600)")
    up.add_argument("--ablation", choices=ABLATIONS, help="hybrid model parts to run (default: HA_ABLATION or full)")
    api = command("api", cmd_api, "run the API server (needs HA_NATS_URL)")
    api.add_argument("--port", type=int)
    worker = command("worker", cmd_worker, "run a worker (needs HA_NATS_URL)")
    worker.add_argument("--ablation", choices=ABLATIONS, help="hybrid model parts to run (default: HA_ABLATION or full)")
    command("router", cmd_router, "run the event router (needs HA_NATS_URL)")

    submit = command("submit", cmd_submit, "submit a task to a running API")
    submit.add_argument("goal", help="what to achieve, in plain language")
    submit.add_argument("--workspace", help="directory to work in (under an allowed root)")
    submit.add_argument("--wait", action="store_true", help="print the trace as it happens and wait for the end")
    submit.add_argument("--json", action="store_true", help="print the task as JSON")
    submit.add_argument("--url", help="API URL (default: from HA_API_HOST/HA_API_PORT)")
    submit.add_argument("--token", help="API token (default: HA_TOKEN, else the data dir's admin.token)")
    submit.add_argument("--timeout", type=float, default=900.0, help="seconds to wait with --wait")

    policy = command("policy", cmd_policy_check, "check tool calls (JSONL on stdin) against the policy")
    policy.add_argument("action", choices=["check"], help="check: one JSON decision per input line, in order")
    policy.add_argument("--scope", type=Path, action="append",
                        help="the task's writable scope (repeatable; default: the current directory)")
    policy.add_argument("--policy", type=Path, help="policy YAML (default: HA_POLICY, else the shipped one)")
    policy.add_argument("--no-tpc", action="store_true", help="rules only, without the tool-policy classifier")

    bench = command("bench", cmd_bench, "run a benchmark and print its ratios")
    bench.add_argument("which", choices=["bus", "step"],
                       help="bus: event -> router -> task -> consumer vs raw JetStream; "
                            "step: the whole agent step at K=1 and K=4 vs raw generation of the same tokens")
    bench.add_argument("--events", type=int, default=5000, help="bus: events to send")
    bench.add_argument("--database-url", help="bus: store for the benchmark (default: SQLite in a temp dir)")
    bench.add_argument("--steps", type=int, default=3, help="step: steps per goal")
    bench.add_argument("--ablation", choices=ABLATIONS, help="step: hybrid model parts to run (default: HA_ABLATION or full)")
    return parser


def _run_services(settings: Settings, components: set[str], *, embedded_ok: bool) -> None:
    if not embedded_ok and not settings.nats_url:
        raise CLIError("HA_NATS_URL is not set: point it at NATS with JetStream, or run `hybrid-agent up`")
    from hybrid_agent import runtime  # heavy imports (torch) only for commands that serve

    if "worker" in components:
        _check_worker_setup(settings)

    async def serve(configured: Settings) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with runtime.services(configured, name="hybrid-agent-" + "-".join(sorted(components))) as svc:
            if "api" in components:
                from hybrid_agent.api.auth import ensure_admin_token
                await ensure_admin_token(svc.sessions, configured.admin_token_file)
                print(f"console: {configured.api_url}/   (admin token in {configured.admin_token_file})", flush=True)
            jobs = []
            if "api" in components:
                jobs.append(runtime.serve_api(configured, svc, stop))
            if "router" in components:
                jobs.append(runtime.run_router(svc, stop))
            if "worker" in components:
                jobs.append(runtime.run_worker(configured, svc, stop))
            await runtime.run_until_stopped(stop, *jobs)

    with runtime.nats_for(settings) as configured:
        if embedded_ok and not settings.nats_url:
            print(f"nats: embedded JetStream at {configured.nats_url} (store {settings.data_dir / 'jetstream'})", flush=True)
        asyncio.run(serve(configured))
    print("stopped", flush=True)


def _check_worker_setup(settings: Settings) -> None:
    """What a worker loads besides the LLM, checked before anything starts, so that a bad
    policy file or a missing sandbox is one line, not a traceback from a running stack."""
    from hybrid_agent.agents.sandbox import SandboxLimits, SandboxUnavailable, make_sandbox
    from hybrid_agent.models.tpc import TPCError, load_tpc
    from hybrid_agent.policies.policy_file import PolicyError, load_policy

    try:
        load_policy(settings.policy)
        if settings.tpc:
            load_tpc(settings.tpc_checkpoint)
        make_sandbox(settings.sandbox, max_output_chars=settings.max_output_chars,
                     limits=SandboxLimits.from_settings(settings), require_bwrap=settings.require_bwrap)
    except (PolicyError, TPCError, SandboxUnavailable, ValueError) as exc:
        raise CLIError(str(exc)) from exc


def cmd_up(args: argparse.Namespace, settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _run_services(settings, {"api", "router", "worker"}, embedded_ok=True)


def cmd_api(args: argparse.Namespace, settings: Settings) -> None:
    _run_services(settings, {"api"}, embedded_ok=False)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    _run_services(settings, {"worker"}, embedded_ok=False)


def cmd_router(args: argparse.Namespace, settings: Settings) -> None:
    _run_services(settings, {"router"}, embedded_ok=False)


def _client(args: argparse.Namespace, settings: Settings) -> httpx.Client:
    token = args.token or settings.token
    if not token:
        if not settings.admin_token_file.exists():
            raise CLIError(f"no token: pass --token, set HA_TOKEN, or run `hybrid-agent up` (writes {settings.admin_token_file})")
        token = settings.admin_token_file.read_text().strip()
    return httpx.Client(base_url=args.url or settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise CLIError(f"cannot reach the API at {client.base_url}: {exc} (is `hybrid-agent up` running?)") from exc
    if response.status_code >= 400:
        raise CLIError(f"{method} {path} -> {response.status_code}: {response.json().get('detail')}")
    return response.json()


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    workspace = str(Path(args.workspace).expanduser().absolute()) if args.workspace else None
    with _client(args, settings) as client:
        created = _request(client, "POST", "/api/tasks", json={"goal": args.goal, "workspace": workspace})
        if not args.wait:
            print(json.dumps(created) if args.json else f"task {created['id']} {created['status']}")
            return 0
        if not args.json:
            print(f"task {created['id']} queued", flush=True)
        task = _follow(client, created["id"], timeout_s=args.timeout, echo=not args.json)
    if args.json:
        print(json.dumps(task, indent=2))
    else:
        result = task.get("result") or {}
        print(f"{task['status']}: {result.get('summary') or task.get('error') or ''}")
    return 0 if task["status"] == "succeeded" else 1


def _follow(client: httpx.Client, task_id: str, *, timeout_s: float, echo: bool) -> dict[str, Any]:
    """Poll the task, printing each new step, until it ends or ``timeout_s`` passes."""
    shown, deadline, status = 0, time.monotonic() + timeout_s, ""
    while True:
        task = _request(client, "GET", f"/api/tasks/{task_id}")
        if echo and task["status"] != status:
            status = task["status"]
            print(f"  [{status}]", flush=True)
        for step in task["steps"][shown:]:
            if echo:
                print(_render_step(step), flush=True)
        shown = len(task["steps"])
        if task["status"] not in ("queued", "running"):
            return task
        if time.monotonic() > deadline:
            raise CLIError(f"task {task_id} still {task['status']} after {timeout_s:.0f}s")
        time.sleep(0.5)


def _render_step(step: dict[str, Any]) -> str:
    call = json.dumps(step["tool_call"]) if step["tool_call"] else "(no call)"
    mark = "ok" if step["ok"] else "FAILED"
    output = "\n".join("      " + line for line in step["observation"].splitlines()[:12])
    return f"  step {step['n']} {mark} ({step['duration_s']:.1f}s) {call}\n{output}"


def cmd_bench(args: argparse.Namespace, settings: Settings) -> None:
    if args.which == "step":
        _bench_step(args, settings)
        return
    from hybrid_agent.eval.bus_bench import run_bus_benchmark

    result = asyncio.run(run_bus_benchmark(events=args.events, database_url=args.database_url))
    print(json.dumps(result))


def _bench_step(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.eval.step_bench import load_bench_llm, run_step_benchmark, table
    from hybrid_agent.models.llm import LLMError

    if args.steps < 1:
        raise CLIError("--steps must be at least 1")
    try:
        llm = load_bench_llm(settings)
    except (ValueError, LLMError) as exc:
        raise CLIError(str(exc)) from exc
    result = run_step_benchmark(llm, settings, steps=args.steps)
    print(table(result))
    print(json.dumps(result.summary))


def cmd_policy_check(args: argparse.Namespace, settings: Settings) -> int:
    """Reads ``{"tool": ..., "args": {...}}`` lines; a line that is not JSON gets a deny
    naming the line, so output lines always match input lines."""
    from hybrid_agent.models.tpc import TPCError, load_tpc
    from hybrid_agent.policies.engine import PolicyEngine
    from hybrid_agent.policies.policy_file import PolicyError, load_policy

    try:
        policy = load_policy(args.policy or settings.policy)
        use_tpc = settings.tpc and not args.no_tpc
        classifier = load_tpc(settings.tpc_checkpoint) if use_tpc else None
    except (PolicyError, TPCError) as exc:
        raise CLIError(str(exc)) from exc
    scopes = [scope.expanduser().resolve() for scope in (args.scope or [Path.cwd()])]
    engine = PolicyEngine(policy, scopes=scopes, test_cmd=settings.test_cmd, classifier=classifier)
    for n, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            decision = engine.check(json.loads(line)).as_dict()
        except json.JSONDecodeError as exc:
            decision = {"decision": "deny", "risk": "low", "reasons": [f"line {n} is not JSON: {exc.msg}"],
                        "rules": ["schema"], "policy_version": policy.version}
        print(json.dumps(decision), flush=True)
    return 0
