"""The policy is a versioned YAML file, validated when loaded, with errors that say what
is wrong and where."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hybrid_agent.policies.policy_file import PolicyError, load_policy


@pytest.fixture
def default_data() -> dict:
    text = (Path(__file__).parents[2] / "hybrid_agent/policies/default_policy.yaml").read_text()
    return yaml.safe_load(text)


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_the_default_policy_loads_with_a_version_and_both_rule_kinds():
    policy = load_policy()
    assert policy.version and policy.network is False
    assert {"disk-destroy", "system-destroy", "write-outside-scope", "secret-read", "fork-bomb"} <= {
        rule.id for rule in policy.deny}
    assert {"delete", "services", "packages"} <= {rule.id for rule in policy.approve}


def test_another_policy_file_is_used_as_given(tmp_path, default_data):
    default_data["version"] = "site-7"
    default_data["approve"] = [r for r in default_data["approve"] if r["id"] != "delete"]
    policy = load_policy(write(tmp_path, default_data))
    assert policy.version == "site-7" and "delete" not in {rule.id for rule in policy.approve}


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy .*nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


def test_broken_yaml_is_reported_as_such(tmp_path):
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "version: [unclosed"))


def test_an_unknown_condition_is_named_with_its_place(tmp_path, default_data):
    default_data["deny"][0]["programz"] = ["rm"]
    with pytest.raises(PolicyError, match=r"deny\.0\.programz"):
        load_policy(write(tmp_path, default_data))


def test_a_rule_without_conditions_would_match_everything_and_is_refused(tmp_path, default_data):
    default_data["approve"].append({"id": "everything", "risk": "low", "reason": "oops"})
    with pytest.raises(PolicyError, match="'everything' has no condition"):
        load_policy(write(tmp_path, default_data))


def test_an_unknown_group_and_a_repeated_id_are_refused(tmp_path, default_data):
    default_data["deny"][0]["programs"] = ["@nosuch"]
    with pytest.raises(PolicyError, match="unknown group '@nosuch'"):
        load_policy(write(tmp_path, default_data))
    default_data["deny"][0]["programs"] = ["mkfs"]
    default_data["deny"][1]["id"] = default_data["deny"][0]["id"]
    with pytest.raises(PolicyError, match="repeated: disk-destroy"):
        load_policy(write(tmp_path, default_data))


def test_a_bad_risk_level_lists_the_valid_ones(tmp_path, default_data):
    default_data["deny"][0]["risk"] = "extreme"
    with pytest.raises(PolicyError, match="'low', 'medium', 'high' or 'critical'"):
        load_policy(write(tmp_path, default_data))
