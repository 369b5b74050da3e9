"""The SWE-bench adapter: local SWE-bench-format instances become agent tasks, and the
agent's changes become predictions in the official schema of ``swebench.harness.run_evaluation``
(docs/swebench.md).

An instance is a line of JSONL with the official fields plus our ``repo_path`` (a local git
checkout of the repo) and optional ``test_cmd``. Each instance gets a fresh clone at its
``base_commit`` with every later commit removed (the fix must not be one ``git log --all``
away); the gold ``patch`` and the ``test_patch`` are never shown to the agent. The agent
runs through an injected ``solve(goal, workspace)``; the prediction is the diff of the
workspace against ``base_commit``, one JSONL line per instance, written as soon as it is
known. The official harness needs Docker; :func:`check_locally` is a small stand-in
(apply, run the failing tests) for tests and quick looks."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from tqdm import tqdm

from hybrid_agent.eval.packs import read_records, run_script
from hybrid_agent.policies.preflight import SANDBOX_PATH
from hybrid_agent.policies.tool_schema import DEFAULT_TEST_CMD

logger = logging.getLogger(__name__)

PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")
# The loop's whole prompt is built to about 6000 characters (agents/prompt.py) and the API
# takes goals of up to 4000: a longer issue would leave no room for the steps taken.
STATEMENT_MAX = 2000      # characters of the problem statement the goal shows
TESTS_CHARS = 1200        # characters of FAIL_TO_PASS ids the goal names; the rest are counted
GIT_TIMEOUT_S = 600       # a clone or gc of a large repository takes a while
# Written by running tests or installing the package; never part of a fix.
JUNK = ("__pycache__/", "*.py[cod]", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/",
        ".tox/", ".eggs/", "*.egg-info/", ".coverage", ".coverage.*")
_PYTEST_ID = re.compile(r"^[\w./-]+\.py(::.+)?$")
_TEST_PATCH_SOURCE = re.compile(r"^--- a/(.+)$", re.MULTILINE)


class SweBenchError(Exception):
    """The SWE-bench adapter cannot go on; the message says with what."""


class InstanceError(SweBenchError, ValueError):
    """An instances file that cannot be used; the message names the file, line and field."""


class WorkspaceError(SweBenchError):
    """A git step on a workspace failed; the message has git's own words."""


class Instance(BaseModel):
    """One SWE-bench task. Unknown fields of the official dataset are ignored; ``patch``
    (the gold fix) is kept only so a file round-trips, and nothing here shows it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    instance_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    base_commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    problem_statement: str = Field(min_length=1)
    fail_to_pass: tuple[str, ...] = Field(alias="FAIL_TO_PASS", min_length=1)
    pass_to_pass: tuple[str, ...] = Field(default=(), alias="PASS_TO_PASS")
    hints_text: str = ""
    test_patch: str = ""
    version: str | None = None
    environment_setup_commit: str | None = None
    created_at: str | None = None
    patch: str = Field(default="", repr=False)
    repo_path: Path
    test_cmd: str = Field(default=DEFAULT_TEST_CMD, min_length=1)

    @field_validator("fail_to_pass", "pass_to_pass", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        # The official dataset stores these lists as JSON text.
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"a list of test ids, or a string holding a JSON list ({exc.msg})") from exc

    @field_validator("fail_to_pass", "pass_to_pass")
    @classmethod
    def _no_blank_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not test.strip() for test in value):
            raise ValueError("test ids must not be blank")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("repo_path")
    @classmethod
    def _relative_to_file(cls, value: Path, info: ValidationInfo) -> Path:
        # A relative repo_path is read from the instances file's folder, not the cwd.
        base = (info.context or {}).get("base")
        return value if value.is_absolute() or base is None else Path(base) / value


def load_instances(path: Path) -> list[Instance]:
    """The file's instances in order; a bad line raises :class:`InstanceError` naming it."""
    return read_records(path, parse=_parse_line, key=lambda instance: instance.instance_id, error=InstanceError,
                        names=("instances file", "instance_id", "instances"))


def _parse_line(path: Path, number: int, line: str) -> Instance:
    try:
        return Instance.model_validate(json.loads(line), context={"base": path.parent})
    except json.JSONDecodeError as exc:
        raise InstanceError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "line"
        hint = " (a local git checkout of the repo: our extension)" if field == "repo_path" else ""
        raise InstanceError(f"{path}:{number}: field {field!r}: {first['msg']}{hint}") from exc


# --- git -------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    """No system or user git config (their hooks, rewrites and pagers stay out of it), and
    no transport but local paths: nothing here may reach the network."""
    return {"PATH": SANDBOX_PATH, "HOME": "/nonexistent", "LC_ALL": "C.UTF-8", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_ALLOW_PROTOCOL": "file", "GIT_TERMINAL_PROMPT": "0"}


def _git(args: Sequence[str], cwd: Path, *, stdin: str | None = None) -> str:
    """git's stdout; a failure raises :class:`WorkspaceError` with git's stderr."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=_git_env(), input=stdin, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WorkspaceError(f"git {args[0]} in {cwd} did not run: {exc}") from exc
    if done.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args[:3])} in {cwd} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def prepare_workspace(instance: Instance, root: Path) -> Path:
    """A fresh clone of ``repo_path`` under ``root`` at ``base_commit`` (a new folder each
    call), holding no commit after it. The original checkout is only read."""
    source, root = instance.repo_path.resolve(), root.resolve()
    if not source.is_dir():
        raise WorkspaceError(f"repo_path {source} of {instance.instance_id} is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=f"{instance.instance_id}.", dir=root))
    try:
        _git(["clone", "--quiet", "--no-hardlinks", "--", str(source), str(workspace)], cwd=root)
        _git(["checkout", "-q", "--detach", instance.base_commit], cwd=workspace)
        _forget_future(workspace)
        # So that the agent's own commits work without a user config.
        _git(["config", "user.name", "hybrid-agent"], cwd=workspace)
        _git(["config", "user.email", "hybrid-agent@localhost"], cwd=workspace)
    except WorkspaceError:
        shutil.rmtree(workspace, ignore_errors=True)  # our own half-made folder
        raise
    return workspace


def _forget_future(workspace: Path) -> None:
    """Drop every ref but the detached HEAD and prune what only they reached: later
    commits (the real fix among them) must not be in the agent's workspace."""
    _git(["remote", "remove", "origin"], cwd=workspace)
    refs = _git(["for-each-ref", "--format=%(refname)"], cwd=workspace).split()
    if refs:
        _git(["update-ref", "--stdin"], cwd=workspace, stdin="".join(f"delete {ref}\n" for ref in refs))
    _git(["reflog", "expire", "--expire=now", "--all"], cwd=workspace)
    _git(["gc", "--quiet", "--prune=now"], cwd=workspace)


def model_patch(workspace: Path, base_commit: str) -> str:
    """Every change in ``workspace`` against ``base_commit`` as a ``git apply``-able diff
    (committed or not, new files included, build and test junk left out); ``""`` when
    nothing changed.

    The workspace's own ``.git`` was writable by the agent, so its config (fsmonitor,
    filters, external diff: all commands) is never read: the diff is made with a
    throwaway git dir of ours that borrows only the workspace's objects, with
    ``git add -A`` then ``git diff --cached <base_commit>`` on an index that starts
    from ``base_commit``."""
    objects = workspace / ".git" / "objects"
    if not objects.is_dir():
        raise WorkspaceError(f"{workspace} has no .git/objects: not a workspace from prepare_workspace")
    with tempfile.TemporaryDirectory(prefix="swebench-diff-") as scratch:
        git_dir = Path(scratch) / "git"
        _git(["init", "--quiet", "--bare", str(git_dir)], cwd=Path(scratch))
        (git_dir / "objects" / "info" / "alternates").write_text(f"{objects.resolve()}\n")
        (git_dir / "info").mkdir(exist_ok=True)
        (git_dir / "info" / "exclude").write_text("\n".join(JUNK) + "\n")
        git = [f"--git-dir={git_dir}", f"--work-tree={workspace.resolve()}"]
        # Starting from base_commit keeps its tracked files tracked even where .gitignore matches them.
        _git([*git, "read-tree", base_commit], cwd=workspace)
        _git([*git, "add", "-A"], cwd=workspace)
        return _git([*git, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                     base_commit, "--"], cwd=workspace)


# --- the goal ----------------------------------------------------------------------------


def task_goal(instance: Instance, *, statement_max: int = STATEMENT_MAX) -> str:
    """What the agent is asked: the issue (bounded), the tests that must pass, and to
    change source files, not tests. Hints, the gold patch and the test patch stay out."""
    return (f"Resolve this issue of the repository {instance.repo}; the workspace is a checkout of it.\n\n"
            f"Issue:\n{_bounded(instance.problem_statement.strip(), statement_max)}\n\n"
            "These tests must pass once it is fixed (some may not exist yet: they are added to check "
            f"the fix):\n{_listed(instance.fail_to_pass)}\n\n"
            f"Change the source files; do not add, edit or delete tests. The tests run with: {instance.test_cmd}\n"
            "When the fix is done, call finish with a short summary.")


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[problem statement cut: first {limit} of {len(text)} characters]"


def _listed(tests: Sequence[str], budget: int = TESTS_CHARS) -> str:
    lines: list[str] = []
    for shown, test in enumerate(tests):
        if sum(len(line) + 1 for line in lines) + len(test) + 2 > budget:
            lines.append(f"- ... and {len(tests) - shown} more")
            break
        lines.append(f"- {test}")
    return "\n".join(lines)


# --- running the agent over instances ---------------------------------------------------


class SolveOutcome(Protocol):
    """What ``solve`` returns; the agent loop's ``AgentExit`` has both."""

    success: bool
    summary: str


Solver = Callable[[str, Path], SolveOutcome]


@dataclass(frozen=True)
class InstanceRecord:
    instance_id: str
    patch_chars: int
    seconds: float
    workspace: str | None = None     # kept ones only
    success: bool | None = None      # the agent's own word, not the harness's verdict
    summary: str | None = None
    error: str | None = None

    @property
    def patched(self) -> bool:
        return self.patch_chars > 0


@dataclass(frozen=True)
class RunSummary:
    instances: int                   # run now; ``skipped`` were already in the file
    patched: int
    errors: int
    skipped: int
    records: list[InstanceRecord]

    def as_dict(self) -> dict[str, Any]:
        return {"instances": self.instances, "patched": self.patched, "errors": self.errors,
                "skipped": self.skipped, "records": [asdict(r) for r in self.records]}


def run_instances(instances: Sequence[Instance], *, solve: Solver, model_name: str, root: Path, out: Path,
                  progress: bool = True, resume: bool = False, keep_workspaces: bool = False) -> RunSummary:
    """Solve each instance in its own workspace under ``root`` and append its prediction to
    ``out`` (JSONL), flushed at once so a crash loses nothing. One instance's failure (its
    workspace, ``solve`` raising, its diff) is recorded with an empty patch and the run goes
    on. ``out`` must be new or empty unless ``resume``, which skips the ids it holds. A
    workspace is a whole clone, so it is removed once its patch is out unless kept."""
    if not model_name.strip() or "\n" in model_name:
        raise SweBenchError(f"model_name {model_name!r} must be one non-blank line")
    done = _predicted_ids(out) if resume else _must_be_empty(out)
    todo = [i for i in instances if i.instance_id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    records: list[InstanceRecord] = []
    with out.open("a") as sink, tqdm(todo, desc="SWE-bench", unit="instance", disable=not progress) as bar:
        for instance in bar:
            record, patch = _run_one(instance, solve, root)
            _write_prediction(sink, instance.instance_id, model_name, patch)
            if record.workspace and not keep_workspaces:
                shutil.rmtree(record.workspace, ignore_errors=True)
                record = replace(record, workspace=None)
            records.append(record)
            bar.set_postfix(patched=sum(r.patched for r in records), errors=sum(bool(r.error) for r in records))
    return RunSummary(instances=len(records), patched=sum(r.patched for r in records),
                      errors=sum(bool(r.error) for r in records), skipped=len(instances) - len(todo),
                      records=records)


def _run_one(instance: Instance, solve: Solver, root: Path) -> tuple[InstanceRecord, str]:
    start = time.monotonic()
    name = instance.instance_id
    try:
        workspace = prepare_workspace(instance, root)
    except SweBenchError as exc:
        logger.warning("%s: no workspace: %s", name, exc)
        return InstanceRecord(name, 0, time.monotonic() - start, error=f"workspace: {exc}"), ""
    try:
        outcome = solve(task_goal(instance), workspace)
        success, summary = bool(outcome.success), str(outcome.summary)
    except Exception as exc:  # one instance's failure must not end a long run
        logger.warning("%s: solve raised", name, exc_info=True)
        return InstanceRecord(name, 0, time.monotonic() - start, str(workspace),
                              error=f"solve raised {type(exc).__name__}: {exc}"), ""
    try:
        patch = model_patch(workspace, instance.base_commit)
    except SweBenchError as exc:
        logger.warning("%s: no patch: %s", name, exc)
        return InstanceRecord(name, 0, time.monotonic() - start, str(workspace), success, summary,
                              error=f"patch: {exc}"), ""
    return InstanceRecord(name, len(patch), time.monotonic() - start, str(workspace), success, summary), patch


def _write_prediction(sink: IO[str], instance_id: str, model_name: str, patch: str) -> None:
    line = dict(zip(PREDICTION_KEYS, (instance_id, model_name, patch), strict=True))
    sink.write(json.dumps(line) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


def _must_be_empty(out: Path) -> set[str]:
    if out.exists() and out.stat().st_size > 0:
        raise SweBenchError(f"{out} already holds predictions: resume it, or write to a new file")
    return set()


def _predicted_ids(out: Path) -> set[str]:
    """The instance ids ``out`` already has a prediction for."""
    if not out.exists():
        return set()
    ids: set[str] = set()
    for number, line in enumerate(out.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(json.loads(line)["instance_id"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SweBenchError(f"{out}:{number}: not a prediction line; cannot resume from it") from exc
    return ids


# --- the local stand-in for the harness ---------------------------------------------------


@dataclass(frozen=True)
class LocalCheck:
    passed: bool
    stage: str      # where it ended: "patch", "apply", "test_patch" or "tests"
    output: str


def check_locally(instance: Instance, patch: str, root: Path, *, timeout_s: float = 900) -> bool:
    """Whether ``patch`` makes the instance's failing tests pass here (see :func:`local_check`)."""
    return local_check(instance, patch, root, timeout_s=timeout_s).passed


def local_check(instance: Instance, patch: str, root: Path, *, timeout_s: float = 900) -> LocalCheck:
    """Apply ``patch`` to a fresh copy at ``base_commit``, then ``test_patch`` over the test
    files reset to ``base_commit`` (as the harness does), then run ``test_cmd``, on the
    FAIL_TO_PASS ids when it is pytest and they are pytest node ids. An empty patch fails
    unrun, as in the harness. Weaker than the harness: no PASS_TO_PASS, no pinned
    environment, and the patched code runs on this machine, outside any sandbox."""
    if not patch.strip():
        return LocalCheck(False, "patch", "empty patch: nothing to check")
    workspace = prepare_workspace(instance, root)
    try:
        return _check_in(workspace, instance, patch, timeout_s)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _check_in(workspace: Path, instance: Instance, patch: str, timeout_s: float) -> LocalCheck:
    try:
        _git(["apply", "--whitespace=nowarn", "-"], cwd=workspace, stdin=patch)
    except WorkspaceError as exc:
        return LocalCheck(False, "apply", str(exc))
    if instance.test_patch.strip():
        try:
            _apply_test_patch(workspace, instance)
        except WorkspaceError as exc:
            return LocalCheck(False, "test_patch", str(exc))
    result = run_script(local_test_cmd(instance), workspace, timeout_s=timeout_s)
    return LocalCheck(result.ok, "tests", result.output)


def _apply_test_patch(workspace: Path, instance: Instance) -> None:
    # The harness first resets the files the test patch changes, whatever the model did to them.
    changed = sorted(set(_TEST_PATCH_SOURCE.findall(instance.test_patch)))
    if changed:
        _git(["checkout", "-q", instance.base_commit, "--", *changed], cwd=workspace)
    _git(["apply", "--whitespace=nowarn", "-"], cwd=workspace, stdin=instance.test_patch)


def local_test_cmd(instance: Instance) -> str:
    """``test_cmd``, narrowed to the FAIL_TO_PASS ids when both are pytest's."""
    if "pytest" in instance.test_cmd and all(_PYTEST_ID.match(t) for t in instance.fail_to_pass):
        return " ".join([instance.test_cmd, *(shlex.quote(t) for t in instance.fail_to_pass)])
    return instance.test_cmd
