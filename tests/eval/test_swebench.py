"""The SWE-bench adapter on a small local git repository: a module with a bug, a failing
pytest test, and a later commit with the fix that no workspace may hold. The agent is
replaced at its boundary by scripted solvers that edit the workspace; the patches they
leave are checked with plain git and with the local stand-in for the harness, run by the
system python3 (PATH=/usr/local/bin:/usr/bin:/bin)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybrid_agent.eval.swebench import (
    PREDICTION_KEYS,
    Instance,
    InstanceError,
    SweBenchError,
    check_locally,
    load_instances,
    local_check,
    local_test_cmd,
    model_patch,
    prepare_workspace,
    run_instances,
    task_goal,
)

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": "/dev/null",
       "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8"}
BUGGY = "def add(a, b):\n    return a - b\n\n\ndef neg(a):\n    return -a\n"
FIXED = BUGGY.replace("a - b", "a + b")
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
GOLD = "GOLD-PATCH-MARKER"
# The official shape: the failing test arrives with the test patch, so it is not in the repo yet.
TEST_PATCH = ("diff --git a/tests/test_more.py b/tests/test_more.py\nnew file mode 100644\n"
              "--- /dev/null\n+++ b/tests/test_more.py\n@@ -0,0 +1,5 @@\n+from calc import add\n+\n+\n"
              "+def test_add_negative():\n+    assert add(-1, -1) == -2\n")


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, env=ENV,
                          input=stdin, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass(frozen=True)
class Repo:
    path: Path
    base: str      # the buggy commit the instances start from
    fix: str       # the later commit with the fix: the future no workspace may see


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "calc-repo"
    (path / "tests").mkdir(parents=True)
    (path / "calc.py").write_text(BUGGY)
    (path / "tests" / "test_calc.py").write_text(TEST_CALC)
    (path / "README.md").write_text("calc\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    base = git(path, "rev-parse", "HEAD")
    (path / "calc.py").write_text(FIXED)
    git(path, "commit", "-q", "-am", "fix add")
    return Repo(path, base, git(path, "rev-parse", "HEAD"))


def instance_line(repo: Repo, instance_id: str, **fields: object) -> dict[str, object]:
    line: dict[str, object] = {
        "instance_id": instance_id, "repo": "example/calc", "base_commit": repo.base,
        "problem_statement": "add(2, 3) returns -1 instead of 5.",
        "FAIL_TO_PASS": json.dumps(["tests/test_calc.py::test_add"]),  # JSON text, as in the official dataset
        "PASS_TO_PASS": "[]", "patch": GOLD, "version": 1.0, "repo_path": str(repo.path),
        "some_official_extra": {"ignored": True},
    }
    return {**line, **fields}


def write_instances(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def instances(repo: Repo, tmp_path: Path) -> list[Instance]:
    """Two instances: the failing test in the repo, and the failing test in a test patch."""
    return load_instances(write_instances(tmp_path / "instances.jsonl", [
        instance_line(repo, "example__calc-1"),
        instance_line(repo, "example__calc-2", FAIL_TO_PASS=["tests/test_more.py::test_add_negative"],
                      test_patch=TEST_PATCH),
    ]))


@dataclass(frozen=True)
class Outcome:
    success: bool
    summary: str


class ScriptedFixSolver:
    """The agent's place: fixes calc.py in the workspace it is given, and keeps the goals."""

    def __init__(self) -> None:
        self.goals: list[str] = []

    def __call__(self, goal: str, workspace: Path) -> Outcome:
        self.goals.append(goal)
        source = workspace / "calc.py"
        source.write_text(source.read_text().replace("a - b", "a + b"))
        return Outcome(success=True, summary="add adds")


class NothingSolver:
    def __call__(self, goal: str, workspace: Path) -> Outcome:
        return Outcome(success=False, summary="gave up")


class ReadmeSolver:
    """Changes a file, but not the bug."""

    def __call__(self, goal: str, workspace: Path) -> Outcome:
        (workspace / "README.md").write_text("calc, improved\n")
        return Outcome(success=True, summary="docs")


class FailsFirstSolver(ScriptedFixSolver):
    def __call__(self, goal: str, workspace: Path) -> Outcome:
        if not self.goals:
            self.goals.append(goal)
            raise RuntimeError("model server went away")
        return super().__call__(goal, workspace)


def snapshot(repo: Repo) -> tuple[str, str, str, str]:
    return (git(repo.path, "rev-parse", "HEAD"), git(repo.path, "status", "--porcelain", "--ignored"),
            git(repo.path, "for-each-ref"), (repo.path / "calc.py").read_text())


def applies_to_fresh_clone(repo: Repo, patch: str, tmp_path: Path) -> bool:
    clone = tmp_path / "fresh-clone"
    git(tmp_path, "clone", "-q", str(repo.path), str(clone))
    git(clone, "checkout", "-q", repo.base)
    try:
        git(clone, "apply", "--check", "-", stdin=patch)
    except subprocess.CalledProcessError:
        return False
    return True


def read_predictions(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_scripted_fix_becomes_an_official_prediction_that_passes(repo: Repo, instances: list[Instance],
                                                                    tmp_path: Path) -> None:
    before = snapshot(repo)
    out = tmp_path / "preds.jsonl"
    solver = ScriptedFixSolver()
    summary = run_instances(instances[:1], solve=solver, model_name="hybrid-agent/test", root=tmp_path / "ws",
                            out=out, progress=False)

    [prediction] = read_predictions(out)
    assert tuple(prediction) == PREDICTION_KEYS
    assert prediction["instance_id"] == "example__calc-1" and prediction["model_name_or_path"] == "hybrid-agent/test"
    patch = prediction["model_patch"]
    assert "-    return a - b" in patch and "+    return a + b" in patch and patch.endswith("\n")
    assert applies_to_fresh_clone(repo, patch, tmp_path)
    assert check_locally(instances[0], patch, tmp_path / "check")
    assert snapshot(repo) == before
    assert list((tmp_path / "ws").iterdir()) == [] and list((tmp_path / "check").iterdir()) == []

    assert (summary.instances, summary.patched, summary.errors, summary.skipped) == (1, 1, 0, 0)
    [record] = summary.records
    assert record.success is True and record.summary == "add adds" and record.error is None
    assert json.loads(json.dumps(summary.as_dict()))["records"][0]["patch_chars"] == len(patch)


def test_the_goal_has_the_issue_and_tests_but_never_the_fix(repo: Repo, instances: list[Instance],
                                                            tmp_path: Path) -> None:
    solver = ScriptedFixSolver()
    run_instances(instances, solve=solver, model_name="m", root=tmp_path / "ws", out=tmp_path / "p.jsonl",
                  progress=False)
    first, second = solver.goals
    assert "add(2, 3) returns -1 instead of 5." in first and "tests/test_calc.py::test_add" in first
    assert "tests/test_more.py::test_add_negative" in second
    for goal in solver.goals:
        assert GOLD not in goal and "test_add_negative():" not in goal and "finish" in goal

    many = tuple(f"tests/test_calc.py::test_case_{n:03d}[{'p' * 40}]" for n in range(100))
    huge = instances[0].model_copy(update={"problem_statement": "x" * 7000, "fail_to_pass": many})
    goal = task_goal(huge)
    assert "x" * 2000 in goal and "x" * 2001 not in goal and "first 2000 of 7000 characters" in goal
    assert many[0] in goal and many[-1] not in goal and "more" in goal
    assert len(goal) <= 4000  # what the API takes
    assert "x" * 5000 in task_goal(huge, statement_max=5000)


def test_the_workspace_is_at_base_and_holds_no_later_commit(repo: Repo, instances: list[Instance],
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(repo)
    monkeypatch.chdir(tmp_path)
    workspace = prepare_workspace(instances[0], Path("ws"))
    assert workspace.is_absolute() and workspace.parent == tmp_path / "ws"
    assert git(workspace, "rev-parse", "HEAD") == repo.base
    assert (workspace / "calc.py").read_text() == BUGGY
    with pytest.raises(subprocess.CalledProcessError):
        git(workspace, "cat-file", "-e", repo.fix)
    assert git(workspace, "remote") == ""
    assert prepare_workspace(instances[0], tmp_path / "ws") != workspace  # a fresh one each time
    assert snapshot(repo) == before


def test_doing_nothing_gives_an_empty_patch_that_fails(instances: list[Instance], tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    summary = run_instances(instances[:1], solve=NothingSolver(), model_name="m", root=tmp_path / "ws", out=out,
                            progress=False)
    [prediction] = read_predictions(out)
    assert prediction["model_patch"] == "" and summary.patched == 0 and summary.errors == 0
    assert summary.records[0].success is False
    assert not check_locally(instances[0], "", tmp_path / "check")


def test_a_patch_beside_the_bug_fails_the_tests(instances: list[Instance], tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    run_instances(instances[:1], solve=ReadmeSolver(), model_name="m", root=tmp_path / "ws", out=out,
                  progress=False)
    patch = read_predictions(out)[0]["model_patch"]
    assert "README.md" in patch
    check = local_check(instances[0], patch, tmp_path / "check")
    assert not check.passed and check.stage == "tests" and "1 failed" in check.output
    stale = patch.replace("-calc", "-calculator")  # its context no longer matches
    check = local_check(instances[0], stale, tmp_path / "check")
    assert not check.passed and check.stage == "apply" and "patch does not apply" in check.output


def test_a_raising_solver_is_recorded_and_the_next_instance_runs(instances: list[Instance],
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    summary = run_instances(instances, solve=FailsFirstSolver(), model_name="m", root=tmp_path / "ws", out=out,
                            progress=True)
    first, second = read_predictions(out)
    assert first["instance_id"] == "example__calc-1" and first["model_patch"] == ""
    assert second["instance_id"] == "example__calc-2" and second["model_patch"]
    assert (summary.instances, summary.patched, summary.errors) == (2, 1, 1)
    assert "RuntimeError: model server went away" in (summary.records[0].error or "")
    assert summary.records[0].workspace is None and summary.records[1].workspace is None  # removed
    # The second instance's failing test only exists once the test patch is applied.
    check = local_check(instances[1], second["model_patch"], tmp_path / "check")
    assert check.passed and check.stage == "tests", check.output


def test_a_full_file_needs_resume_which_skips_what_it_holds(instances: list[Instance], tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    run_instances(instances[:1], solve=ScriptedFixSolver(), model_name="m", root=tmp_path / "ws", out=out,
                  progress=False)
    with pytest.raises(SweBenchError, match="already holds predictions"):
        run_instances(instances, solve=ScriptedFixSolver(), model_name="m", root=tmp_path / "ws", out=out,
                      progress=False)
    summary = run_instances(instances, solve=ScriptedFixSolver(), model_name="m", root=tmp_path / "ws", out=out,
                            progress=False, resume=True, keep_workspaces=True)
    assert (summary.instances, summary.skipped) == (1, 1)
    kept = Path(summary.records[0].workspace or "")
    assert kept.parent == tmp_path / "ws" and (kept / "calc.py").read_text() == FIXED
    assert [p["instance_id"] for p in read_predictions(out)] == ["example__calc-1", "example__calc-2"]


def test_the_patch_has_new_and_committed_changes_but_no_junk(instances: list[Instance], tmp_path: Path) -> None:
    workspace = prepare_workspace(instances[0], tmp_path / "ws")
    assert model_patch(workspace, instances[0].base_commit) == ""
    ScriptedFixSolver()("goal", workspace)
    git(workspace, "commit", "-q", "-am", "the agent commits")
    (workspace / "helpers.py").write_text("X = 1\n")
    (workspace / "__pycache__").mkdir()
    (workspace / "__pycache__" / "calc.cpython-311.pyc").write_bytes(b"\x00junk")
    (workspace / ".pytest_cache").mkdir()
    (workspace / ".pytest_cache" / "README.md").write_text("cache\n")
    patch = model_patch(workspace, instances[0].base_commit)
    assert "+    return a + b" in patch and "b/helpers.py" in patch
    assert "__pycache__" not in patch and ".pytest_cache" not in patch


def test_the_workspace_git_config_runs_nothing_when_diffing(instances: list[Instance], tmp_path: Path) -> None:
    """The agent can write the workspace's .git; diffing it must not run what it says."""
    workspace = prepare_workspace(instances[0], tmp_path / "ws")
    marker = tmp_path / "ran"
    git(workspace, "config", "core.fsmonitor", f"touch {marker}; false")
    git(workspace, "config", "filter.evil.clean", f"touch {marker}; cat")
    git(workspace, "config", "diff.external", f"touch {marker}; true")
    (workspace / ".gitattributes").write_text("*.py filter=evil\n")
    ScriptedFixSolver()("goal", workspace)
    patch = model_patch(workspace, instances[0].base_commit)
    assert "+    return a + b" in patch and not marker.exists()


def test_fail_to_pass_is_a_list_or_json_text(repo: Repo, tmp_path: Path) -> None:
    as_text = Instance.model_validate(instance_line(repo, "a-1"))
    as_list = Instance.model_validate(instance_line(repo, "a-1", FAIL_TO_PASS=["tests/test_calc.py::test_add"]))
    assert as_text.fail_to_pass == as_list.fail_to_pass == ("tests/test_calc.py::test_add",)
    assert as_text.version == "1.0" and as_text.test_cmd == "python3 -m pytest -q"


@pytest.mark.parametrize(("fields", "named"), [
    ({"FAIL_TO_PASS": "not json"}, "'FAIL_TO_PASS'"),
    ({"FAIL_TO_PASS": "[]"}, "'FAIL_TO_PASS'"),
    ({"base_commit": "main"}, "'base_commit'"),
    ({"repo_path": None}, "'repo_path'"),
])
def test_a_bad_line_names_its_line_and_field(repo: Repo, tmp_path: Path, fields: dict[str, object],
                                             named: str) -> None:
    lines = [instance_line(repo, "ok-1"), instance_line(repo, "bad-2", **fields)]
    path = write_instances(tmp_path / "bad.jsonl", lines)
    with pytest.raises(InstanceError, match=f"bad.jsonl:2: field {named}"):
        load_instances(path)


def test_other_bad_files_say_why(repo: Repo, tmp_path: Path) -> None:
    twice = write_instances(tmp_path / "twice.jsonl", [instance_line(repo, "a-1"), instance_line(repo, "a-1")])
    with pytest.raises(InstanceError, match="twice.jsonl:2: instance_id 'a-1' appears twice"):
        load_instances(twice)
    (tmp_path / "broken.jsonl").write_text("{nope\n")
    with pytest.raises(InstanceError, match="broken.jsonl:1: not JSON"):
        load_instances(tmp_path / "broken.jsonl")
    missing = instance_line(repo, "gone-1", repo_path=str(tmp_path / "nowhere"))
    with pytest.raises(SweBenchError, match="is not a directory"):
        prepare_workspace(Instance.model_validate(missing), tmp_path / "ws")


def test_a_relative_repo_path_is_read_from_the_files_folder(repo: Repo, tmp_path: Path) -> None:
    [instance] = load_instances(write_instances(tmp_path / "rel.jsonl", [instance_line(repo, "r-1",
                                                                                       repo_path="calc-repo")]))
    assert instance.repo_path == tmp_path / "calc-repo"


def test_the_local_tests_narrow_to_pytest_ids_only(repo: Repo) -> None:
    pytest_ids = Instance.model_validate(instance_line(repo, "a-1", FAIL_TO_PASS=["t/test_x.py::test_a[1 2]"]))
    assert local_test_cmd(pytest_ids) == "python3 -m pytest -q 't/test_x.py::test_a[1 2]'"
    django_ids = Instance.model_validate(instance_line(repo, "a-1", FAIL_TO_PASS=["test_a (app.tests.ATest)"]))
    assert local_test_cmd(django_ids) == "python3 -m pytest -q"
