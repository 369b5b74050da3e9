"""The code-fix task pack (task_packs/code.jsonl): its shape (families, splits, ids,
solutions), that it is what its generator produces, that its check cannot be satisfied by
editing the tests, and that every task works: setup succeeds, the check fails on the
seeded bug, the reference solution succeeds, and then the check passes."""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from hybrid_agent.eval.packs import Task, run_script
from tests.task_packs.pack_support import generator, pack_path, solutions, solutions_path, tasks

PACK = pack_path("code")
SOLUTIONS = solutions_path("code")
TASKS = tasks("code")
SOLUTION = solutions("code")


def _generator() -> ModuleType:
    return generator("code")


GENERATOR = _generator()


def _families(split: str | None = None) -> Counter[str]:
    return Counter(t.family for t in TASKS.values() if split is None or t.split == split)


def _module_of() -> dict[str, str]:
    """Task id -> source module, from the generator's ordering of its bug table."""
    tasks, _ = GENERATOR.build(lambda task_id, files: "")
    return {task["id"]: m.module for task, m in zip(tasks, GENERATOR.ordered_mutations(), strict=True)}


def test_size_families_and_modules() -> None:
    assert len(TASKS) >= 100
    assert set(_families()) == set(GENERATOR.FAMILIES)
    assert min(_families().values()) >= 4
    assert len(set(_module_of().values())) >= 15
    assert all(t.tags == ("code",) for t in TASKS.values())


def test_ids_unique_and_named_after_their_family() -> None:
    lines = [line for line in PACK.read_text().splitlines() if line.strip()]
    assert len(lines) == len(TASKS)
    for task in TASKS.values():
        assert re.fullmatch(rf"code-{re.escape(task.family)}-\d{{3}}", task.id), task.id


def test_every_task_has_exactly_one_solution() -> None:
    lines = [line for line in SOLUTIONS.read_text().splitlines() if line.strip()]
    assert len(lines) == len(SOLUTION)
    assert set(SOLUTION) == set(TASKS)


def test_splits() -> None:
    train, test = _families("train"), _families("test")
    test_only = set(test) - set(train)
    assert test_only == set(GENERATOR.TEST_ONLY_FAMILIES) and len(test_only) >= 3
    assert set(train) == set(GENERATOR.BASE_FAMILIES) <= set(test)
    for family in train:
        share = train[family] / (train[family] + test[family])
        assert 0.5 <= share <= 0.7, (family, share)


def test_base_families_split_by_module() -> None:
    """A module's base-family bugs are all train or all test, so test code is unseen."""
    splits: dict[str, set[str]] = {}
    for task_id, module in _module_of().items():
        if TASKS[task_id].family in GENERATOR.BASE_FAMILIES:
            splits.setdefault(module, set()).add(TASKS[task_id].split)
    assert all(len(s) == 1 for s in splits.values()), splits


def test_goals_show_a_failing_ci_run() -> None:
    for task in TASKS.values():
        log = GENERATOR.pasted_log(task.goal)
        assert "FAILED tests/test_" in log and re.search(r"^1 failed", log, re.M), task.id
        assert not re.search(r"\d+\.\d+s\b|/tmp/|0x[0-9a-f]{6}", log), task.id


def test_generator_reproduces_the_files() -> None:
    """Everything but the pasted CI logs is rebuilt; running pytest for each log again
    would take a minute, so the logs in the pack are fed back in."""
    tasks, solutions = GENERATOR.build(lambda task_id, files: GENERATOR.pasted_log(TASKS[task_id].goal))
    assert GENERATOR.jsonl(tasks) == PACK.read_text()
    assert GENERATOR.jsonl(solutions) == SOLUTIONS.read_text()


def test_mutations_are_exact_single_replacements() -> None:
    for mutation in GENERATOR.MUTATIONS:
        files = GENERATOR.module_files(mutation.module)
        buggy = GENERATOR.apply(files, mutation)  # asserts both snippets occur once
        assert [p for p in files if files[p] != buggy[p]] == [mutation.path]
        assert not GENERATOR.is_protected(mutation.path)


def _solved(task_id: str, workspace: Path) -> None:
    assert run_script(TASKS[task_id].setup, workspace, timeout_s=30).ok
    assert run_script(SOLUTION[task_id], workspace, timeout_s=30).ok


@pytest.mark.parametrize("tamper", [
    "printf 'def test_extra():\\n    pass\\n' >> tests/test_*.py",
    "printf 'import pytest\\n' > tests/conftest.py",
    "rm tests/test_*.py",
    "printf '[pytest]\\naddopts = -k nothing\\n' > pytest.ini",
])
def test_check_rejects_edited_tests(tamper: str, tmp_path: Path) -> None:
    task_id = min(TASKS)
    _solved(task_id, tmp_path)
    assert run_script(TASKS[task_id].check, tmp_path, timeout_s=30).ok
    assert run_script(tamper, tmp_path).ok
    assert not run_script(TASKS[task_id].check, tmp_path, timeout_s=30).ok


def test_check_ignores_an_added_regression_test(tmp_path: Path) -> None:
    task_id = min(TASKS)
    _solved(task_id, tmp_path)
    (tmp_path / "tests" / "test_regression.py").write_text("def test_new():\n    assert True\n")
    assert run_script(TASKS[task_id].check, tmp_path, timeout_s=30).ok


def test_check_requires_the_modules(tmp_path: Path) -> None:
    task_id = min(TASKS)
    _solved(task_id, tmp_path)
    module = next(p for p in tmp_path.glob("*.py"))
    module.unlink()
    result = run_script(TASKS[task_id].check, tmp_path, timeout_s=30)
    assert not result.ok and "is missing" in result.output


def _validate(task_id: str, workspace: Path) -> str | None:
    """Why the task does not work, or None: setup succeeds, the check fails on the seeded
    bug, the reference solution succeeds, and then the check passes."""
    task: Task = TASKS[task_id]
    setup = run_script(task.setup, workspace, timeout_s=30)
    if not setup.ok:
        return f"setup failed: {setup.output}"
    before = run_script(task.check, workspace, timeout_s=30)
    if before.ok or "pytest exited with 1" not in before.output:
        return f"the check must fail on the bug's failing tests: {before.output}"
    solved = run_script(SOLUTION[task_id], workspace, timeout_s=30)
    if not solved.ok:
        return f"reference solution failed: {solved.output}"
    after = run_script(task.check, workspace, timeout_s=30)
    return None if after.ok else f"the check fails after the reference solution: {after.output}"


@pytest.fixture(scope="module")
def validations(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Validates the selected tasks on all CPUs at once, so the whole pack (two pytest runs
    per task) stays within about a minute; each task still gets its own test below. Every
    task is a chain of subprocesses, so threads are enough."""
    here = Path(__file__).resolve()
    selected = [item.callspec.params["task_id"] for item in request.session.items
                if item.path == here and item.originalname == "test_task_setup_check_and_solution"]
    workspaces = [tmp_path_factory.mktemp(task_id) for task_id in selected]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(selected, pool.map(_validate, selected, workspaces)))


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_task_setup_check_and_solution(task_id: str, validations: dict[str, str | None]) -> None:
    problem = validations[task_id]
    assert problem is None, problem
