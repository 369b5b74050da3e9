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
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from hybrid_agent.bus.messages import Event
from hybrid_agent.config import ABLATIONS, Settings
from hybrid_agent.startup_heap import startup_heap_frozen
from hybrid_agent.triggers.rules import RuleFile, RulesError, decide, load_rules

if TYPE_CHECKING:  # heavy imports only where a command needs them
    from hybrid_agent.eval.harness import EvalOptions
    from hybrid_agent.eval.run import PackSelection


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
    if getattr(args, "k", None):
        overrides["candidates"] = args.k
    if getattr(args, "queues", None):
        overrides["worker_queues"] = [queue.strip() for queue in args.queues.split(",") if queue.strip()]
    if getattr(args, "concurrency", None):
        overrides["worker_concurrency"] = args.concurrency
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
    worker.add_argument("--queues", help="comma-separated queues to serve, most important first "
                        "(default: HA_WORKER_QUEUES or default)")
    worker.add_argument("--concurrency", type=int, help="tasks run at once (default: HA_WORKER_CONCURRENCY or 1)")
    command("router", cmd_router, "run the event router (needs HA_NATS_URL)")
    command("triggers", cmd_triggers, "run the file and cron triggers of the rules file (needs HA_NATS_URL; one "
            "process of the cluster publishes, elected by a lease)")
    rules = command("rules", cmd_rules, "check the rules file, or show what it decides for an event")
    rules.add_argument("action", choices=["check", "test"], help="check: validate the file; test: decide an event")
    rules.add_argument("event", nargs="?", type=Path, help="test: an event as JSON ({source, kind, payload})")
    rules.add_argument("--rules", type=Path, help="rules file (default: HA_RULES_FILE or <data dir>/rules.yaml)")
    rules.add_argument("--json", action="store_true", help="print the decisions as JSON")

    submit = command("submit", cmd_submit, "submit a task to a running API")
    submit.add_argument("goal", help="what to achieve, in plain language")
    submit.add_argument("--workspace", help="directory to work in (under an allowed root)")
    submit.add_argument("--check", metavar="CMD",
                        help="shell command run in the workspace after every change; a change it fails is rolled back")
    submit.add_argument("--dry-run", action="store_true",
                        help="work on a scratch copy; the predicted change set waits for approval to be applied")
    submit.add_argument("--queue", default="default", help="the queue whose workers run it (default: default)")
    submit.add_argument("--priority", type=int, default=0, choices=range(10), metavar="0-9",
                        help="0-3 normal, 4-6 high, 7-9 urgent (default 0)")
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
    bench.add_argument("which", choices=["bus", "step", "snapshot", "load"],
                       help="bus: event -> router -> task -> consumer vs raw JetStream; "
                            "step: the whole agent step at K=1 and K=4 vs raw generation of the same tokens; "
                            "snapshot: our incremental snapshot vs cp -a vs git's incremental commit; "
                            "load: events -> router -> worker processes (model-free tool loop) at a fixed rate "
                            "and flat out vs raw JetStream")
    bench.add_argument("--events", type=int, help="bus, load: events to send (default: bus 5000; load 20000 in "
                                                   "each phase)")
    bench.add_argument("--database-url", help="bus: store for the benchmark (default: SQLite in a temp dir)")
    bench.add_argument("--steps", type=int, default=3, help="step: steps per goal")
    bench.add_argument("--ablation", choices=ABLATIONS, help="step: hybrid model parts to run (default: HA_ABLATION or full)")
    bench.add_argument("--files", type=int, default=2000, help="snapshot: files in the tree (1%% of them change)")
    bench.add_argument("--mb", type=float, default=50, help="snapshot: size of the tree in MB")
    bench.add_argument("--workers", type=int, default=3, help="load: worker processes")
    bench.add_argument("--rate", type=float, default=500, help="load: events/s in the fixed-rate phase "
                                                                "(--events in each phase)")
    bench.add_argument("--scratch-dir", type=Path,
                       help="load: where the run keeps its JetStream store, database and workspaces, in a "
                            "temporary folder (default: the data dir, HA_DATA_DIR, where the agent keeps them)")

    token = command("token", cmd_token, "create an API token (printed once) or revoke a name's tokens")
    token.add_argument("action", choices=["create", "revoke"])
    token.add_argument("--name", required=True, help="who or what holds it (shown in audits)")
    token.add_argument("--role", choices=["viewer", "operator", "approver", "admin"],
                       help="create: viewer < operator (submit, cancel) < approver (decide) < admin")

    snapshot = command("snapshot", cmd_snapshot, "take, list or garbage-collect snapshots of scopes")
    snapshot.add_argument("action", choices=["create", "list", "gc"],
                          help="create: snapshot --scope (last line JSON with its id); list: newest first; "
                               "gc: expire snapshots past HA_SNAPSHOT_RETENTION_DAYS and free their contents")
    snapshot.add_argument("--scope", type=Path, help="create: the directory (below an allowed workspace root)")
    snapshot.add_argument("--path", action="append", metavar="REL",
                          help="create: only this path below --scope (repeatable; default: all of it)")
    snapshot.add_argument("--task", help="list: only this task's snapshots")
    snapshot.add_argument("--limit", type=int, default=50, help="list: at most this many")
    snapshot.add_argument("--json", action="store_true", help="list: as a JSON array")
    rollback = command("rollback", cmd_rollback, "restore a snapshot's scope byte for byte and print what changed")
    rollback.add_argument("snapshot_id", help="a snapshot id (hybrid-agent snapshot list)")
    rollback.add_argument("--json", action="store_true", help="print the journaled restore as JSON")

    evaluate = command("eval", cmd_eval, "run a task pack through the agent loop and print success by family")
    _pack_arguments(evaluate, pack_required=False)
    evaluate.add_argument("--out", type=Path, help="per-task results JSONL (--swebench: the predictions JSONL)")
    evaluate.add_argument("--swebench", type=Path, metavar="INSTANCES",
                          help="SWE-bench-format instances JSONL instead of a pack: writes predictions to --out")
    evaluate.add_argument("--resume", action="store_true", help="--swebench: skip instances already in --out")
    collect = command("collect", cmd_collect, "run a pack with K>1 and write labelled traces for training")
    _pack_arguments(collect, default_split="train")
    collect.add_argument("--out", type=Path, required=True, help="directory for ebm/hrm/sft/playbook JSONL")
    collect.add_argument("--demonstrations", type=Path, metavar="SOLUTIONS.jsonl",
                         help="play these reference solutions ({id, solution} per line) through the loop instead "
                         "of the LLM: demonstration traces for train sft (the LLM alone, one candidate)")

    train = command("train", cmd_train, "train the EBM or the HRM (their own options follow), or the SFT adapter")
    train.add_argument("which", choices=["ebm", "hrm", "sft"])
    train.add_argument("args", nargs=argparse.REMAINDER,
                       help="the trainer's own options (`hybrid-agent train ebm --help`)")
    return parser


def _pack_arguments(p: argparse.ArgumentParser, *, default_split: str | None = None, pack_required: bool = True) -> None:
    p.add_argument("--pack", type=Path, required=pack_required, help="task pack JSONL (task_packs/os.jsonl, code.jsonl)")
    p.add_argument("--split", choices=["train", "test"], default=default_split, help="only this split")
    p.add_argument("--family", action="append", default=[], help="only this family (repeatable)")
    p.add_argument("--limit", type=int, help="the first N tasks")
    p.add_argument("--per-family", type=int, help="the first N tasks of each family")
    p.add_argument("--ablation", choices=ABLATIONS, help="hybrid model parts to run (default: HA_ABLATION or full)")
    p.add_argument("--approve", choices=["all", "none"], default="none",
                   help="how held calls are decided (default: none, every one refused and counted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, help="LLM candidates per step (default: HA_CANDIDATES; collect: 4)")
    p.add_argument("--playbook", type=Path, help="playbook.jsonl from collect, for the playbook expert")
    p.add_argument("--keep-workspaces", action="store_true", help="leave each task's workspace for inspection")


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
                jobs.append(runtime.run_router(configured, svc, stop))
            if "triggers" in components:
                jobs.append(runtime.run_triggers(configured, svc, stop))
            if components & {"api", "triggers"}:   # events they stored while the bus was down
                jobs.append(runtime.run_outbox(configured, svc, stop))
            if "worker" in components:
                jobs.append(runtime.run_worker(configured, svc, stop))
            with startup_heap_frozen():
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
    _rules(settings.rules_path, sources=settings.triggers)
    _run_services(settings, {"api", "router", "worker"} | ({"triggers"} if settings.triggers else set()),
                  embedded_ok=True)


def cmd_api(args: argparse.Namespace, settings: Settings) -> None:
    _run_services(settings, {"api"}, embedded_ok=False)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    _run_services(settings, {"worker"}, embedded_ok=False)


def cmd_router(args: argparse.Namespace, settings: Settings) -> None:
    _rules(settings.rules_path)   # a bad rules file is one line, before anything starts
    _run_services(settings, {"router"}, embedded_ok=False)


def cmd_triggers(args: argparse.Namespace, settings: Settings) -> None:
    _rules(settings.rules_path, sources=True)
    _run_services(settings, {"triggers"}, embedded_ok=False)


def _rules(path: Path | None, *, sources: bool = False) -> RuleFile:
    """The rules file, checked; with ``sources``, its watches and schedules too."""
    try:
        rules = load_rules(path)
        if sources:
            from hybrid_agent.triggers.service import check_sources
            check_sources(rules)
    except (RulesError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    return rules


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    path = args.rules or settings.rules_path
    rules = _rules(path)
    if args.action == "check":
        print(f"{path or '(no rules file)'}: {len(rules.rules)} rules, {len(rules.schedules)} schedules, "
              f"{len(rules.watches)} watches; valid")
        return 0
    if args.event is None:
        raise CLIError("rules test needs an event file: hybrid-agent rules test EVENT.json")
    event = _event_file(args.event)
    decisions = decide(event, rules)
    if args.json:
        print(json.dumps([{**d.record(), "task": d.task, "cooldown": d.cooldown and {
            "resource": d.cooldown[0], "until": d.cooldown[1].isoformat()}} for d in decisions], indent=2, default=str))
    else:
        print(f"event {event.source}.{event.kind} ({path or 'no rules file'}); nothing is run, cooldowns are not "
              "consulted")
        for d in decisions:
            print(f"  {'MATCH' if d.matched else 'no   '}  {d.rule:<24} {'; '.join(d.why)}")
            if d.task:
                print(f"         -> task {d.task['id']}: {d.task['goal'][:200]}")
                extras = {k: d.task.get(k) for k in ("template", "workspace", "queue", "priority", "dry_run")}
                print("            " + ", ".join(f"{k}={v}" for k, v in extras.items() if v not in (None, False)))
    return 0 if any(d.matched for d in decisions) else 1


def _event_file(path: Path) -> Event:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CLIError(f"cannot read event file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CLIError(f"event file {path} is not JSON: {exc}") from exc
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise CLIError(f"event file {path}: {where}: {first['msg']}") from exc


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
        created = _request(client, "POST", "/api/tasks", json={"goal": args.goal, "workspace": workspace,
                                                              "check": args.check, "dry_run": args.dry_run,
                                                              "queue": args.queue, "priority": args.priority})
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
    if args.which == "snapshot":
        _bench_snapshot(args, settings)
        return
    if args.which == "load":
        _bench_load(args, settings)
        return
    from hybrid_agent.eval.bus_bench import run_bus_benchmark

    result = asyncio.run(run_bus_benchmark(events=args.events or 5000, database_url=args.database_url))
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


def _bench_snapshot(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.eval.snapshot_bench import SnapshotBenchError, run_snapshot_benchmark, table

    if args.files < 1 or args.mb <= 0:
        raise CLIError("--files must be at least 1 and --mb above 0")
    try:
        result = run_snapshot_benchmark(files=args.files, total_mb=args.mb)
    except SnapshotBenchError as exc:
        raise CLIError(str(exc)) from exc
    print(table(result))
    print(json.dumps(result.summary))


def _bench_load(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.eval.load_bench import LoadBenchError, run_load_benchmark, table

    events = 20000 if args.events is None else args.events
    if args.workers < 1 or events < 1 or args.rate <= 0:
        raise CLIError("--workers and --events must be at least 1 and --rate above 0")
    try:
        result = asyncio.run(run_load_benchmark(workers=args.workers, events=events, rate=args.rate,
                                                database_url=args.database_url,
                                                scratch_dir=args.scratch_dir or settings.data_dir))
    except LoadBenchError as exc:
        raise CLIError(str(exc)) from exc
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


def _with_store(settings: Settings, work):  # type: ignore[no-untyped-def]
    """Run ``work(sessions)`` against the settings' database (migrated first)."""
    from hybrid_agent.store.db import make_engine, make_sessionmaker, migrate

    async def run():  # type: ignore[no-untyped-def]
        engine = make_engine(settings.database)
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    migrate(settings.database)
    return asyncio.run(run())


def cmd_token(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.api.auth import create_token
    from hybrid_agent.store import queries

    if args.action == "create":
        if args.role is None:
            raise CLIError("token create needs --role (viewer, operator, approver or admin)")
        token = _with_store(settings, lambda sessions: create_token(sessions, name=args.name, role=args.role))
        print(token)   # shown this once: only its hash is stored
        return

    async def revoke(sessions):  # type: ignore[no-untyped-def]
        async with sessions.begin() as session:
            return await queries.revoke_tokens(session, name=args.name)

    revoked = _with_store(settings, revoke)
    if not revoked:
        raise CLIError(f"no active token named {args.name!r}")
    print(f"revoked {revoked} token{'s' * (revoked > 1)} of {args.name}")


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.rollback import journal, operations
    from hybrid_agent.rollback.errors import RollbackError
    from hybrid_agent.rollback.snapshots import SnapshotStore
    from hybrid_agent.store import queries

    store = SnapshotStore(settings.rollback_dir)
    if args.action == "create":
        scope = _snapshot_scope(args.scope, settings)

        async def create(sessions):  # type: ignore[no-untyped-def]
            snap = await asyncio.to_thread(store.create, scope, paths=args.path)
            async with sessions.begin() as session:
                await journal.save(session, snap)
            return snap

        try:
            snap = _with_store(settings, create)
        except RollbackError as exc:
            raise CLIError(f"--path: {exc}") from exc
        print(f"snapshot {snap.id} of {snap.scope}: {snap.entries} entries, {snap.files_read} files read, "
              f"{snap.bytes_stored} bytes stored in {snap.duration_s:.3f}s")
        print(json.dumps({"id": snap.id, "scope": snap.scope, "entries": snap.entries, "files_read": snap.files_read,
                          "bytes_stored": snap.bytes_stored, "duration_s": snap.duration_s}))
    elif args.action == "list":
        async def listed(sessions):  # type: ignore[no-untyped-def]
            async with sessions() as session:
                return await queries.list_snapshots(session, task_id=args.task, limit=args.limit)

        _print_snapshots(_with_store(settings, listed), as_json=args.json)
    else:
        expired, report = _with_store(settings, lambda sessions: operations.collect_garbage(
            sessions, store, retention_days=settings.snapshot_retention_days))
        print(json.dumps({"expired_snapshots": expired, "objects_removed": report.objects_removed,
                          "bytes_freed": report.bytes_freed, "objects_kept": report.objects_kept}))


def _snapshot_scope(scope: Path | None, settings: Settings) -> Path:
    from hybrid_agent.agents.workspace import WorkspaceNotAllowed, check_workspace

    if scope is None:
        raise CLIError("snapshot create needs --scope DIR")
    try:
        path = check_workspace(str(scope), roots=settings.allowed_roots)
    except WorkspaceNotAllowed as exc:
        raise CLIError(f"--scope: {exc} (set HA_WORKSPACE_ROOTS to allow others)") from exc
    if not path.is_dir():
        raise CLIError(f"--scope {scope}: no such directory")
    return path


def _print_snapshots(rows: list[Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"id": r.id, "task_id": r.task_id, "step": r.step, "scope": r.scope, "entries": r.entries,
                           "created_at": r.created_at.isoformat(), "expired": r.expired_at is not None} for r in rows]))
        return
    print(f"{'id':<26} {'task':<34} {'step':>4} {'entries':>7}  {'created (UTC)':<19}  scope")
    for r in rows:
        mark = " (expired)" if r.expired_at else ""
        print(f"{r.id:<26} {r.task_id or '-':<34} {r.step if r.step is not None else '-':>4} {r.entries:>7}  "
              f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.scope}{mark}")


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from hybrid_agent.agents.assembly import sandboxed_commands
    from hybrid_agent.rollback.errors import ScopeBusy, SnapshotMissing
    from hybrid_agent.rollback.operations import roll_back_on_demand
    from hybrid_agent.rollback.snapshots import SnapshotStore
    from hybrid_agent.store import queries

    async def work(sessions):  # type: ignore[no-untyped-def]
        async with sessions() as session:
            row = await queries.get_snapshot(session, snapshot_id=args.snapshot_id)
        if row is None:
            raise CLIError(f"no snapshot {args.snapshot_id!r} (hybrid-agent snapshot list)")
        return await roll_back_on_demand(sessions, SnapshotStore(settings.rollback_dir), snapshot_id=row.id,
                                         requested_by=f"cli:{getpass.getuser()}",
                                         run=sandboxed_commands(settings, Path(row.scope)))

    try:
        restore = _with_store(settings, work)
    except (ScopeBusy, SnapshotMissing) as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print(json.dumps({"snapshot_id": restore.snapshot_id, "ok": restore.ok, "report": restore.report,
                          "error": restore.error}))
    else:
        print(restore.describe())
        for kind, paths in ((restore.report or {}).get("paths") or {}).items():
            for path in paths:
                print(f"  {kind:<9} {path}")
    return 0 if restore.ok else 1


def cmd_eval(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.eval.run import evaluate

    if args.swebench is not None:
        _swebench(args, settings)
        return
    if args.pack is None:
        raise CLIError("give --pack FILE (a task pack) or --swebench FILE (SWE-bench instances)")
    selection, options = _pack_options(args)
    print(json.dumps(evaluate(settings, selection, options, out=args.out, playbook=args.playbook)))


def cmd_collect(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.eval.run import collect, collect_demonstrations

    selection, options = _pack_options(args)
    if args.demonstrations is not None:
        if not args.demonstrations.is_file():
            raise CLIError(f"--demonstrations {args.demonstrations}: no such file")
        print(json.dumps(collect_demonstrations(settings, selection, options, solutions=args.demonstrations,
                                                out_dir=args.out)))
        return
    if args.k is None:
        settings = settings.model_copy(update={"candidates": 4})
    print(json.dumps(collect(settings, selection, options, out_dir=args.out, playbook=args.playbook)))


def _swebench(args: argparse.Namespace, settings: Settings) -> None:
    from hybrid_agent.eval.run import swebench
    from hybrid_agent.eval.swebench import SweBenchError

    if args.pack is not None or args.out is None:
        raise CLIError("--swebench takes --out PREDICTIONS.jsonl and no --pack")
    try:
        print(json.dumps(swebench(settings, args.swebench, out=args.out, resume=args.resume, playbook=args.playbook,
                                  keep_workspaces=args.keep_workspaces)))
    except SweBenchError as exc:
        raise CLIError(str(exc)) from exc


def _pack_options(args: argparse.Namespace) -> tuple[PackSelection, EvalOptions]:
    from hybrid_agent.eval.harness import EvalOptions
    from hybrid_agent.eval.packs import PackError
    from hybrid_agent.eval.run import PackSelection

    for flag in ("limit", "per_family"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.playbook is not None and not args.playbook.is_file():
        raise CLIError(f"--playbook {args.playbook}: no such file")
    selection = PackSelection(args.pack, split=args.split, limit=args.limit, families=tuple(args.family),
                              per_family=args.per_family)
    try:
        tasks = selection.tasks()
    except PackError as exc:
        raise CLIError(str(exc)) from exc
    if not tasks:
        raise CLIError(f"no tasks in {args.pack} match --split {args.split} --family {','.join(args.family) or '*'}")
    options = EvalOptions(approve=args.approve, seed=args.seed, keep_workspaces=args.keep_workspaces,
                          progress=True)
    return selection, options


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    """The EBM and HRM trainers parse their own options; each records its command line in
    its model card."""
    argv = [a for a in args.args if a != "--"]
    if args.which == "sft":
        _train_sft(argv, settings)
        return 0
    if args.which == "ebm":
        from hybrid_agent.models.ebm.train import main as train_main
    else:
        from hybrid_agent.models.hrm.train import main as train_main
    return train_main(argv)


def _check_torch_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise CLIError(f"--device {device}: {exc}") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {device}: no CUDA device on this machine")


def _train_sft(argv: list[str], settings: Settings) -> None:
    from hybrid_agent.models.llm import LLMError
    from hybrid_agent.models.llm.sft import run_sft

    parser = argparse.ArgumentParser(prog="hybrid-agent train sft", description="LoRA on the default LLM from "
                                     "the successful steps collect wrote (sft.jsonl)")
    parser.add_argument("--data", type=Path, required=True, help="sft.jsonl from collect")
    parser.add_argument("--out", type=Path, required=True, help="adapter directory (HA_LLM_ADAPTER)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha is twice it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="the first N examples")
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        raise CLIError(f"--data {args.data}: no such file")
    _check_torch_device(args.device)
    try:
        report = run_sft(args.data, args.out, cache_dir=settings.model_cache_dir, epochs=args.epochs, lr=args.lr,
                         rank=args.rank, seed=args.seed, limit=args.limit, device=args.device,
                         command="hybrid-agent " + " ".join(sys.argv[1:]))
    except (ValueError, LLMError) as exc:
        raise CLIError(str(exc)) from exc
    before, after = report.val_before, report.val_after
    print(json.dumps({"adapter": str(report.adapter_dir), "steps": report.steps, "val_loss_before": before.loss,
                      "val_loss_after": after.loss, "val_token_accuracy_before": before.token_accuracy,
                      "val_token_accuracy_after": after.token_accuracy}))
