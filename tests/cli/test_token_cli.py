"""`hybrid-agent token create|revoke`: a token printed once (only its hash is stored),
revoked by name, mistakes one line with exit status 2."""

from __future__ import annotations

from pathlib import Path

from tests.cli.cli_support import cli


def test_tokens_are_created_once_and_revoked_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = cli("token", "create", "--role", "approver", "--name", "bob", data_dir=data)
    assert created.returncode == 0 and created.stdout.strip().startswith("ha_")
    revoked = cli("token", "revoke", "--name", "bob", data_dir=data)
    assert revoked.returncode == 0 and "revoked 1 token of bob" in revoked.stdout
    again = cli("token", "revoke", "--name", "bob", data_dir=data)
    assert again.returncode == 2 and "no active token named 'bob'" in again.stderr
    no_role = cli("token", "create", "--name", "x", data_dir=data)
    assert no_role.returncode == 2 and "needs --role" in no_role.stderr
