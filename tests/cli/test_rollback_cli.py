"""`hybrid-agent snapshot create|list|gc` and `hybrid-agent rollback ID`, run as a person
would: the snapshot's id on the last line as JSON, the rollback printing what it changed,
mistakes one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.cli_support import cli
from tests.rollback.tree_support import tree_state

@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str | None:
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_create_change_roll_back(tmp_path: Path, store_url: str | None) -> None:
    data, scope = tmp_path / "data", tmp_path / "site"
    scope.mkdir()
    (scope / "nginx.conf").write_text("worker_processes 2;\n")
    (scope / "html").mkdir()
    (scope / "html" / "index.html").write_text("<h1>ok</h1>")
    before = tree_state(scope)
    created = cli("snapshot", "create", "--scope", str(scope), data_dir=data, database_url=store_url)
    assert created.returncode == 0, created.stderr
    snapshot_id = json.loads(created.stdout.splitlines()[-1])["id"]

    (scope / "nginx.conf").write_text("worker_processes auto\n")
    (scope / "html" / "index.html").unlink()
    (scope / "core.dump").write_bytes(b"\0" * 64)
    listed = cli("snapshot", "list", "--json", data_dir=data, database_url=store_url)
    assert [s["id"] for s in json.loads(listed.stdout)] == [snapshot_id]

    rolled = cli("rollback", snapshot_id, data_dir=data, database_url=store_url)
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.splitlines()[0] == f"rolled back to {snapshot_id}: 1 recreated, 1 rewritten, 1 removed"
    assert "  removed   core.dump" in rolled.stdout and "  created   html/index.html" in rolled.stdout
    assert tree_state(scope) == before

    collected = cli("snapshot", "gc", data_dir=data, database_url=store_url)
    assert json.loads(collected.stdout.splitlines()[-1])["expired_snapshots"] == 0


def test_a_snapshot_of_listed_paths_restores_only_those(tmp_path: Path) -> None:
    data, scope = tmp_path / "data", tmp_path / "etc"
    scope.mkdir()
    (scope / "hosts").write_text("127.0.0.1 localhost\n")
    (scope / "other.conf").write_text("a\n")
    created = cli("snapshot", "create", "--scope", str(scope), "--path", "hosts", "--path", "cron.d", data_dir=data)
    snapshot_id = json.loads(created.stdout.splitlines()[-1])["id"]
    (scope / "hosts").write_text("10.0.0.1 evil\n")
    (scope / "cron.d").mkdir()
    (scope / "cron.d" / "job").write_text("* * * * * x\n")
    (scope / "other.conf").write_text("b\n")
    assert cli("rollback", snapshot_id, data_dir=data).returncode == 0
    assert (scope / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert not (scope / "cron.d").exists()                 # listed, absent then: removed
    assert (scope / "other.conf").read_text() == "b\n"     # not listed: left alone


@pytest.mark.parametrize("args, message", [
    (["rollback", "snap_unknown"], "no snapshot 'snap_unknown'"),
    (["snapshot", "create", "--scope", "/etc"], "not strictly below an allowed root"),
    (["snapshot", "create"], "needs --scope"),
    (["snapshot", "create", "--scope", "{tmp}/site", "--path", "../etc"], "not a path below the scope"),
])
def test_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "site").mkdir()
    result = cli(*[a.format(tmp=tmp_path) for a in args], data_dir=tmp_path / "data")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
