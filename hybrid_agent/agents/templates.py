"""What a task template does around the agent's loop: ``prepare`` the workspace before the
first step (and add what it found to the goal), ``conclude`` after the loop (verify, and
propose a change set a person approves), and ``apply`` an approved change set.

Repository code (a CI task's tests) runs only through the task's sandboxed runner; the
worker itself runs git, with a timeout, to fetch the repository and to write the branch."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hybrid_agent.rollback.task import CommandRunner
from hybrid_agent.triggers.templates import CiRemediation, DiskPressure, ServiceHealth, template_params

GIT_TIMEOUT_S = 300.0
OUTPUT_CHARS = 3000
TEST_FILE_MARKS = ("test_", "_test.py", "tests/", "conftest.py")


class TemplateFailed(Exception):
    """The template cannot go on (e.g. the failure does not reproduce); the task fails."""


class NothingToDo(Exception):
    """The template found nothing to do (e.g. the probe passes); the task succeeds."""


@dataclass(frozen=True)
class Outcome:
    """What a template makes of a loop that finished."""

    success: bool
    summary: str
    result: dict[str, Any] = field(default_factory=dict)
    change_set: dict[str, Any] | None = None   # a person approves this before it is applied


@dataclass(frozen=True)
class Prepared:
    """What preparing found: a note for the goal, and facts kept for ``conclude`` (the
    journal holds them, so a task resumed by another worker still has them)."""

    note: str
    facts: dict[str, Any] = field(default_factory=dict)


class TemplateRun(Protocol):
    def prepare(self, workspace: Path, run: CommandRunner) -> Prepared: ...
    def conclude(self, workspace: Path, run: CommandRunner, facts: dict[str, Any]) -> Outcome: ...


def template_run(name: str, params: dict[str, Any], *, task_id: str) -> TemplateRun:
    checked = template_params(name, params)
    if isinstance(checked, CiRemediation):
        return CiRemediationRun(checked, task_id)
    if isinstance(checked, DiskPressure):
        return DiskPressureRun(checked)
    assert isinstance(checked, ServiceHealth)
    return ServiceHealthRun(checked)


def git(*args: str, cwd: Path) -> str:
    """Run git (not through the shell); raises TemplateFailed with git's own message."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin",
                                   "HOME": str(cwd)})
    except subprocess.TimeoutExpired as exc:
        raise TemplateFailed(f"git {args[0]} timed out after {GIT_TIMEOUT_S:.0f}s") from exc
    if done.returncode != 0:
        raise TemplateFailed(f"git {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()[:500]}")
    return done.stdout


class CiRemediationRun:
    def __init__(self, params: CiRemediation, task_id: str) -> None:
        self.params = params
        self.task_id = task_id

    def prepare(self, workspace: Path, run: CommandRunner) -> Prepared:
        """Clone the repository at the failing commit and reproduce the failure."""
        if not (workspace / ".git").exists():
            git("clone", "--quiet", "--no-hardlinks", "--", self.params.repo, ".", cwd=workspace)
            if self.params.commit:
                git("checkout", "--quiet", "--detach", self.params.commit, cwd=workspace)
        ok, output = run(self.params.test_cmd)
        if ok:
            raise TemplateFailed(f"the failure does not reproduce: `{self.params.test_cmd}` passes at "
                                 f"{self.params.commit or 'HEAD'}")
        return Prepared(f"\n\nReproduced: `{self.params.test_cmd}` fails here:\n{output[-OUTPUT_CHARS:]}",
                        {"reproduced": True})

    def conclude(self, workspace: Path, run: CommandRunner, facts: dict[str, Any]) -> Outcome:
        """Verify by running the tests again; the fix (a patch) waits for approval."""
        ok, output = run(self.params.test_cmd)
        if not ok:
            return Outcome(False, f"the tests still fail after the agent's changes:\n{output[-OUTPUT_CHARS:]}")
        git("add", "--all", cwd=workspace)
        changed = git("diff", "--cached", "--name-only", cwd=workspace).split()
        touched_tests = [path for path in changed if any(mark in path for mark in TEST_FILE_MARKS)]
        if not changed:
            return Outcome(False, "the tests pass but nothing was changed (flaky failure?)")
        if touched_tests:
            return Outcome(False, f"the fix edits tests ({', '.join(touched_tests)}); not proposed")
        patch = git("diff", "--cached", "--binary", cwd=workspace)
        branch = f"{self.params.branch_prefix}{self.task_id[:12]}"
        change_set = {"apply": "git_branch", "repo": self.params.repo, "commit": self.params.commit,
                      "branch": branch, "files": [{"path": p, "change": "modified"} for p in changed],
                      "commands": [], "diff": patch}
        return Outcome(True, f"the tests pass with the fix; approve to write it as branch {branch}",
                       {"verified": self.params.test_cmd, "files": changed}, change_set)


def apply_git_branch(change_set: dict[str, Any], workspace: Path, *, patches_dir: Path, task_id: str) -> dict[str, Any]:
    """Commit the fix on a new branch and push it to a local repository; a remote one
    (a URL: no credentials here) gets a patch file instead."""
    branch = change_set["branch"]
    repo = change_set["repo"]
    if not Path(repo).is_dir():
        patches_dir.mkdir(parents=True, exist_ok=True)
        patch_file = patches_dir / f"{task_id}.patch"
        patch_file.write_text(change_set["diff"])
        return {"patch_file": str(patch_file), "branch": None}
    git("checkout", "--quiet", "-B", branch, cwd=workspace)
    git("add", "--all", cwd=workspace)
    git("-c", "user.name=hybrid-agent", "-c", "user.email=hybrid-agent@localhost", "commit", "--quiet",
        "--no-verify", "-m", f"Fix CI failure\n\nProposed by hybrid-agent task {task_id}.", cwd=workspace)
    commit = git("rev-parse", "HEAD", cwd=workspace).strip()
    git("push", "--quiet", "--", str(Path(repo).resolve()), f"{branch}:refs/heads/{branch}", cwd=workspace)
    return {"branch": branch, "commit": commit, "repo": repo}


def _usage(root: Path, *, top: int = 10) -> tuple[int, list[tuple[int, str]]]:
    """Bytes used under ``root`` (files, not following links) and the largest files."""
    sizes: list[tuple[int, str]] = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                sizes.append((path.stat().st_size, str(path.relative_to(root))))
        except OSError:
            continue
    sizes.sort(reverse=True)
    return sum(size for size, _ in sizes), sizes[:top]


class DiskPressureRun:
    def __init__(self, params: DiskPressure) -> None:
        self.params = params

    def prepare(self, workspace: Path, run: CommandRunner) -> Prepared:
        before, largest = _usage(workspace)
        rows = "\n".join(f"  {size:>12,d}  {path}" for size, path in largest)
        return Prepared(f"\n\n{before:,d} bytes are used here; the largest files:\n{rows}", {"bytes_before": before})

    def conclude(self, workspace: Path, run: CommandRunner, facts: dict[str, Any]) -> Outcome:
        after, _ = _usage(workspace)
        before = int(facts.get("bytes_before", after))
        return Outcome(True, f"freed {before - after:,d} bytes ({before:,d} -> {after:,d})",
                       {"bytes_before": before, "bytes_after": after, "freed_bytes": before - after})


class ServiceHealthRun:
    def __init__(self, params: ServiceHealth) -> None:
        self.params = params

    def prepare(self, workspace: Path, run: CommandRunner) -> Prepared:
        ok, output = run(self.params.probe)
        if ok:
            raise NothingToDo(f"the probe `{self.params.probe}` passes; nothing to do")
        return Prepared(f"\n\nThe probe's output:\n{output[-OUTPUT_CHARS:]}")

    def conclude(self, workspace: Path, run: CommandRunner, facts: dict[str, Any]) -> Outcome:
        ok, output = run(self.params.probe)
        if ok:
            return Outcome(True, "the probe passes again", {"probe": "passes"})
        return Outcome(False, f"the probe still fails:\n{output[-OUTPUT_CHARS:]}", {"probe": "fails"})
