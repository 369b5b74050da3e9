"""Rules: the file is checked when loaded (errors name their place), conditions are data
(never code), and each rule's decision on an event says why."""

from pathlib import Path

import pytest

from hybrid_agent.bus.messages import Event
from hybrid_agent.triggers.conditions import Condition
from hybrid_agent.triggers.rules import RulesError, decide, load_rules, parse_rules, task_id_for

CI_RULE = {
    "name": "ci-fix",
    "when": {"source": "github", "kind": "ci_failure",
             "all": [{"path": "conclusion", "op": "in", "value": ["failure", "timed_out"]}]},
    "then": {"template": "ci_remediation",
             "params": {"repo": "{{ payload.clone_url }}", "commit": "{{ payload.commit }}", "test_cmd": "pytest -q"},
             "priority": 5, "concurrency": 2},
}
DISK_RULE = {
    "name": "disk-cleanup",
    "when": {"source": "alertmanager", "kind": "alert_firing",
             "all": [{"path": "labels.alertname", "value": "DiskFull"},
                     {"path": "labels.severity", "op": "ne", "value": "info"}]},
    "then": {"template": "disk_pressure", "params": {"roots": ["/srv/logs"], "host": "{{ payload.labels.instance }}"}},
    "cooldown": {"seconds": 3600, "per": "{{ payload.labels.instance }}"},
}


def ci_event(conclusion: str = "failure") -> Event:
    return Event(source="github", kind="ci_failure", payload={
        "conclusion": conclusion, "clone_url": "/srv/repos/app", "commit": "abc123"})


def test_a_matching_event_makes_the_rules_task_with_rendered_parameters():
    rules = parse_rules({"rules": [CI_RULE]})
    event = ci_event()
    (decision,) = decide(event, rules)
    assert decision.matched
    task = decision.task
    assert task["id"] == task_id_for(event.id, "ci-fix")
    assert task["template"] == "ci_remediation" and task["priority"] == 5 and task["rule"] == "ci-fix"
    assert task["rule_concurrency"] == 2
    assert task["params"]["repo"] == "/srv/repos/app" and task["params"]["commit"] == "abc123"
    assert "pytest -q" in task["goal"] and "/srv/repos/app" in task["goal"]
    assert any("conclusion = 'failure' in" in why for why in decision.why)


def test_a_condition_that_fails_says_which_and_why():
    (decision,) = decide(ci_event("success"), parse_rules({"rules": [CI_RULE]}))
    assert not decision.matched and decision.task is None
    assert decision.why == ["not: conclusion = 'success' in ['failure', 'timed_out']"]


def test_source_kind_and_enabled_are_checked_first():
    rules = parse_rules({"rules": [CI_RULE, {**DISK_RULE, "enabled": False}]})
    decisions = decide(Event(source="cron", kind="tick"), rules)
    assert [d.why[0] for d in decisions] == ["source cron is not github", "disabled"]


def test_any_needs_one_condition_to_hold():
    rule = {"name": "any", "when": {"source": "*", "any": [{"path": "a", "value": 1}, {"path": "b", "op": "exists"}]},
            "then": {"goal": "do it"}}
    rules = parse_rules({"rules": [rule]})
    assert decide(Event(source="x", kind="k", payload={"b": None}), rules)[0].matched
    missed = decide(Event(source="x", kind="k", payload={"a": 2}), rules)[0]
    assert not missed.matched and missed.why[0].startswith("none of: a = 2 eq 1; b is missing")


def test_a_user_submission_is_its_own_task_whatever_the_rules():
    event = Event(source="user", kind="task", payload={"goal": "tidy", "task_id": "t1", "requested_by": "ann"})
    (decision,) = decide(event, parse_rules({"rules": [CI_RULE]}))
    assert decision.rule == "default" and decision.task["id"] == "t1" and decision.task["goal"] == "tidy"


def test_a_template_that_cannot_render_is_a_decision_not_a_crash():
    rule = {"name": "bad", "when": {"source": "github"}, "then": {"goal": "fix {{ payload.missing.deeper }}"}}
    (decision,) = decide(ci_event(), parse_rules({"rules": [rule]}))
    assert not decision.matched and "cannot make its task" in decision.why[-1]


def test_templates_cannot_reach_python_internals():
    rule = {"name": "escape", "when": {"source": "github"},
            "then": {"goal": "{{ payload.__class__.__mro__[1].__subclasses__() }}"}}
    (decision,) = decide(ci_event(), parse_rules({"rules": [rule]}))
    assert not decision.matched and decision.why[-1].endswith("access to attribute '__class__' of 'dict' object is unsafe.")


def test_the_disk_template_works_in_its_first_root_and_cools_down_per_host():
    event = Event(source="alertmanager", kind="alert_firing",
                  payload={"labels": {"alertname": "DiskFull", "severity": "critical", "instance": "web-1"}})
    (decision,) = decide(event, parse_rules({"rules": [DISK_RULE]}))
    assert decision.matched and decision.task["workspace"] == "/srv/logs"
    resource, until = decision.cooldown
    assert resource == "web-1" and (until - event.created_at).total_seconds() == 3600


@pytest.mark.parametrize(("document", "error"), [
    ({"rules": [{"name": "x", "when": {"source": "github"}, "then": {}}]},
     "rules[0] (x).then: Value error, give exactly one of template and goal"),
    ({"rules": [{"name": "x", "when": {"source": "github"}, "then": {"template": "reboot_all"}}]},
     "rule x: unknown template 'reboot_all'; valid: ci_remediation, disk_pressure, service_health"),
    ({"rules": [{"name": "x", "when": {"source": "github"}, "then": {"template": "ci_remediation"}}]},
     "rule x: template ci_remediation: repo: Field required"),
    ({"rules": [{"name": "x", "when": {"source": "github", "all": [{"path": "a", "op": "gt", "value": "z"}]},
                 "then": {"goal": "g"}}]}, "op gt needs a number"),
    ({"rules": [{"name": "x", "when": {"source": "github", "all": [{"path": "a..b"}]}, "then": {"goal": "g"}}]},
     "'a..b' is not a path like a.b[0].c"),
    ({"rules": [{"name": "x", "when": {"source": "github"}, "then": {"goal": "{{ unclosed"}}]}, "template text"),
    ({"rules": [{"name": "x", "when": {"source": "g"}, "then": {"goal": "g"}},
                {"name": "x", "when": {"source": "g"}, "then": {"goal": "g"}}]}, "repeated: x"),
    ({"rulez": []}, "rulez: Extra inputs are not permitted"),
])
def test_a_bad_rules_file_is_refused_naming_the_place(document, error):
    with pytest.raises(RulesError) as raised:
        parse_rules(document)
    assert error in str(raised.value)


def test_load_rules_reads_yaml_and_reports_what_is_wrong(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: a\n    when: {source: github}\n    then: {goal: fix it}\n")
    assert [rule.name for rule in load_rules(path).rules] == ["a"]
    path.write_text("rules: [\n")
    with pytest.raises(RulesError, match="is not YAML"):
        load_rules(path)
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.yaml")
    assert load_rules(None).rules == []


@pytest.mark.parametrize(("condition", "document", "holds"), [
    ({"path": "alerts[1].labels.sev", "value": "page"}, {"alerts": [{}, {"labels": {"sev": "page"}}]}, True),
    ({"path": "alerts[5].x", "op": "missing"}, {"alerts": []}, True),
    ({"path": "n", "op": "ge", "value": 90}, {"n": "91.5"}, True),
    ({"path": "n", "op": "lt", "value": 3}, {"n": "many"}, False),
    ({"path": "msg", "op": "matches", "value": "disk (full|low)"}, {"msg": "disk full on /"}, True),
    ({"path": "branch", "op": "glob", "value": "release/*"}, {"branch": "release/1.2"}, True),
    ({"path": "tags", "op": "contains", "value": "prod"}, {"tags": ["prod", "eu"]}, True),
    ({"path": "env", "op": "not_in", "value": ["dev"]}, {"env": "prod"}, True),
])
def test_conditions(condition, document, holds):
    assert Condition.model_validate(condition).test(document)[0] is holds
