"""`hybrid-agent rules check | test`: the rules file is checked, and an event's decision is
shown without running anything."""

import json
from pathlib import Path

import pytest

from hybrid_agent.cli import main

EXAMPLE = Path(__file__).parents[2] / "docs" / "rules.example.yaml"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def event_file(tmp_path: Path, event: dict) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return str(path)


def test_the_shipped_example_rules_file_is_valid(capsys, tmp_path):
    code, out, _ = run_cli(["rules", "check", "--rules", str(EXAMPLE), "--data-dir", str(tmp_path)], capsys)
    assert code == 0 and out.strip().endswith("5 rules, 2 schedules, 1 watches; valid")


def test_rules_test_shows_each_rules_decision_and_the_task(capsys, tmp_path):
    event = {"source": "github", "kind": "ci_failure",
             "payload": {"branch": "main", "commit": "abc", "repository": "o/app",
                         "github": {"repository": {"name": "app"}}}}
    code, out, _ = run_cli(["rules", "test", event_file(tmp_path, event), "--rules", str(EXAMPLE), "--json",
                            "--data-dir", str(tmp_path)], capsys)
    decisions = {d["rule"]: d for d in json.loads(out)}
    assert code == 0 and decisions["ci-fix"]["matched"]
    assert decisions["ci-fix"]["task"]["params"]["repo"] == "/srv/repos/app"
    assert decisions["ci-fix"]["cooldown"]["resource"] == "o/app@abc"
    assert decisions["disk-cleanup"]["why"] == ["source github is not alertmanager"]
    assert not (tmp_path / "hybrid-agent.db").exists()   # nothing stored, nothing run


def test_an_event_no_rule_matches_exits_1(capsys, tmp_path):
    code, out, _ = run_cli(["rules", "test", event_file(tmp_path, {"source": "github", "kind": "push"}),
                            "--rules", str(EXAMPLE), "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and "no     ci-fix                   kind push is not ci_failure" in out


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not JSON"),
    ('{"source": "GitHub!", "kind": "x"}', "event.json: source: String should match pattern"),
])
def test_a_bad_event_file_is_one_line(capsys, tmp_path, content, message):
    path = tmp_path / "event.json"
    path.write_text(content)
    code, _, err = run_cli(["rules", "test", str(path), "--rules", str(EXAMPLE), "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_bad_rules_file_is_refused_before_up_starts_anything(capsys, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: x\n    when: {source: github}\n    then: {template: nope}\n")
    monkeypatch.setenv("HA_RULES_FILE", str(rules))
    code, _, err = run_cli(["up", "--data-dir", str(tmp_path / "data")], capsys)
    assert code == 2 and "rule x: unknown template 'nope'" in err
    assert not (tmp_path / "data" / "jetstream").exists()


def test_a_bad_cron_expression_names_the_schedule(capsys, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("schedules:\n  - {name: nightly, cron: '0 25 * * *'}\n")
    code, _, err = run_cli(["rules", "check", "--rules", str(rules), "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "schedules[0] (nightly)" in err and "hour" in err and "Traceback" not in err


def test_a_missing_watch_folder_stops_triggers_before_they_start(capsys, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"watches:\n  - {{name: inbox, path: {tmp_path / 'absent'}}}\n")
    monkeypatch.setenv("HA_RULES_FILE", str(rules))
    monkeypatch.setenv("HA_NATS_URL", "nats://127.0.0.1:1")
    code, _, err = run_cli(["triggers", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "watch inbox: path" in err and "does not exist" in err
