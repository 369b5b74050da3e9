"""Rules: which events start which tasks. The rules file (YAML, validated when loaded, each
error naming its place) holds ``rules`` (when -> then), ``schedules`` (cron events) and
``watches`` (file events). A user submission always becomes its own task; other events
start a task for every enabled rule they match, outside that rule's cooldown.

Text in ``then`` is a Jinja template rendered in a sandbox over ``event`` and ``payload``
(``{{ payload.repository.clone_url }}``): no code of the rule's author or of the event runs."""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybrid_agent.bus.messages import Event
from hybrid_agent.triggers.conditions import Condition
from hybrid_agent.triggers.templates import TemplateError, default_workspace, goal_of, template_params

DEFAULT_RULE = "default"
NAME = r"^[a-z0-9][a-z0-9_-]{0,79}$"
_TASK_IDS = uuid.UUID("5f2b4a8e-8a51-4f51-9d3e-1c0b6a3c2d10")
_JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class RulesError(ValueError):
    """The rules file is missing, not YAML, or not valid; the message names the place."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(Strict):
    source: str = Field(pattern=r"^[a-z*][a-z0-9_*-]{0,39}$", description="event source, a glob")
    kind: str | list[str] = Field(default="*", description="event kind or kinds, globs")
    all: list[Condition] = Field(default_factory=list, description="every one must hold")
    any: list[Condition] = Field(default_factory=list, description="one must hold, when given")


class Budgets(Strict):
    max_steps: int | None = Field(default=None, ge=1, le=200)
    max_seconds: float | None = Field(default=None, gt=0, le=86400)


class Then(Strict):
    template: str | None = None
    goal: str | None = Field(default=None, max_length=4000)
    params: dict[str, Any] = Field(default_factory=dict)
    queue: str = Field(default="default", pattern=r"^[a-z0-9_-]{1,40}$")
    priority: int = Field(default=0, ge=0, le=9)
    policy: Path | None = Field(default=None, description="policy file for these tasks (a profile); "
                                "unset: the worker's")
    workspace: str | None = None
    resource: str | None = Field(default=None, description="what the task acts on (e.g. host:{{ payload.labels."
                                 "instance }}): one task at a time per resource; unset: its workspace")
    check: str | None = None
    budgets: Budgets = Field(default_factory=Budgets)
    dry_run: bool = False
    concurrency: int | None = Field(default=None, ge=1, le=100, description="at most this many of the rule's "
                                    "tasks run at once across the cluster (the rest wait); unset: no limit")

    @model_validator(mode="after")
    def _goal_or_template(self) -> Then:
        if (self.template is None) == (self.goal is None):
            raise ValueError("give exactly one of template and goal")
        for text in _texts(self):
            try:
                _JINJA.parse(text)
            except JinjaError as exc:
                raise ValueError(f"template text {text!r}: {exc}") from exc
        return self


class Cooldown(Strict):
    seconds: float = Field(gt=0, le=30 * 86400)
    per: str = Field(default="", description="the resource, a template such as {{ payload.labels.instance }}; "
                     "empty: the rule as a whole")


class Rule(Strict):
    name: str = Field(pattern=NAME)
    enabled: bool = True
    description: str = ""
    when: When
    then: Then
    cooldown: Cooldown | None = None


class Schedule(Strict):
    """A cron schedule: each firing is an event ``cron.<kind>`` with ``payload``."""

    name: str = Field(pattern=NAME)
    cron: str = Field(max_length=120, description="5 fields, or 6 with seconds first")
    timezone: str = "UTC"
    kind: str = Field(default="tick", pattern=r"^[a-z][a-z0-9_-]{0,79}$")
    payload: dict[str, Any] = Field(default_factory=dict)
    misfire_grace_s: int = Field(default=60, ge=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _parses(self) -> Schedule:
        from hybrid_agent.triggers.cron import parse_cron   # cron's module needs this one's models
        parse_cron(self.cron, self.timezone)
        return self


class Watch(Strict):
    """A file watch: changes under ``path`` (globs relative to it) become ``file.changed`` events."""

    name: str = Field(pattern=NAME)
    path: Path
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    recursive: bool = True
    debounce_s: float = Field(default=1.0, gt=0, le=3600)
    payload: dict[str, Any] = Field(default_factory=dict)


class RuleFile(Strict):
    rules: list[Rule] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    watches: list[Watch] = Field(default_factory=list)

    @field_validator("rules", "schedules", "watches")
    @classmethod
    def _unique(cls, items: list[Any]) -> list[Any]:
        names = [item.name for item in items]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"names must be unique; repeated: {', '.join(twice)}")
        return items


def load_rules(path: Path | None) -> RuleFile:
    """The rules file, checked; an absent path (none configured) is an empty file."""
    if path is None:
        return RuleFile()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RulesError(f"rules file {path} is not YAML: {exc}") from exc
    return parse_rules(data, origin=str(path))


def parse_rules(data: Any, *, origin: str = "rules") -> RuleFile:
    try:
        rules = RuleFile.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  {_where(data, e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RulesError(f"{origin} is not valid:\n{problems}") from exc
    for rule in rules.rules:
        if rule.then.template is not None:
            _check_template(rule)
    return rules


def _check_template(rule: Rule) -> None:
    """A template's parameters are known at load, except values still to be rendered."""
    static = {key: value for key, value in rule.then.params.items() if not _is_template(value)}
    try:
        template_params(rule.then.template or "", {**_placeholders(rule), **static})
    except TemplateError as exc:
        raise RulesError(f"rule {rule.name}: {exc}") from exc


def _placeholders(rule: Rule) -> dict[str, Any]:
    # A rendered value's type is known only at routing; for the load check it is a string.
    return {key: "x" for key, value in rule.then.params.items() if _is_template(value)}


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """``rules[2] (disk-cleanup).then.params`` rather than ``rules.2.then.params``."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            name = node[key].get("name") if isinstance(node, list) and key < len(node) and isinstance(node[key], dict) else None
            parts[-1] += f"[{key}]" + (f" ({name})" if name else "")
        else:
            parts.append(str(key))
        node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
    return ".".join(parts) or "(top level)"


def _has(node: dict[str, Any] | list[Any], key: Any) -> bool:
    return key in node if isinstance(node, dict) else isinstance(key, int) and key < len(node)


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _texts(then: Then) -> list[str]:
    texts = [then.goal or "", then.workspace or "", then.check or "", then.resource or ""]
    return texts + [value for value in then.params.values() if isinstance(value, str)]


@dataclass
class Decision:
    """One rule's decision on one event, and why."""

    rule: str
    matched: bool
    why: list[str] = field(default_factory=list)
    task: dict[str, Any] | None = None        # the task row to create
    cooldown: tuple[str, datetime] | None = None   # (resource, until) to take before creating it

    def record(self) -> dict[str, Any]:
        return {"rule": self.rule, "matched": self.matched, "why": self.why,
                "task_id": self.task["id"] if self.task else None}


def task_id_for(event_id: str, rule: str) -> str:
    """Deterministic, so a redelivered event maps to the same task and is not done twice."""
    return uuid.uuid5(_TASK_IDS, f"{event_id}:{rule}").hex


def decide(event: Event, rules: RuleFile) -> list[Decision]:
    """Every rule's decision on the event (user submissions: the default rule alone)."""
    if event.source == "user":
        return [Decision(DEFAULT_RULE, True, ["a user submission"], default_rule(event))]
    return [decide_rule(rule, event) for rule in rules.rules]


def decide_rule(rule: Rule, event: Event) -> Decision:
    if not rule.enabled:
        return Decision(rule.name, False, ["disabled"])
    kinds = [rule.when.kind] if isinstance(rule.when.kind, str) else rule.when.kind
    if not fnmatch.fnmatchcase(event.source, rule.when.source):
        return Decision(rule.name, False, [f"source {event.source} is not {rule.when.source}"])
    if not any(fnmatch.fnmatchcase(event.kind, kind) for kind in kinds):
        return Decision(rule.name, False, [f"kind {event.kind} is not {' or '.join(kinds)}"])
    document = {**event.payload, "event": _event_fields(event)}
    results = [condition.test(document) for condition in rule.when.all]
    failed = [why for holds, why in results if not holds]
    if failed:
        return Decision(rule.name, False, [f"not: {failed[0]}"])
    why = [f"{event.source}.{event.kind}"] + [why for _, why in results]
    if rule.when.any:
        anyof = [condition.test(document) for condition in rule.when.any]
        held = [why for holds, why in anyof if holds]
        if not held:
            return Decision(rule.name, False, ["none of: " + "; ".join(why for _, why in anyof)])
        why.append(held[0])
    try:
        task = task_for(rule, event)
        cooldown = _cooldown(rule, event)
    except (JinjaError, TemplateError, ValueError) as exc:
        return Decision(rule.name, False, why + [f"cannot make its task: {exc}"])
    return Decision(rule.name, True, why, task, cooldown)


def task_for(rule: Rule, event: Event) -> dict[str, Any]:
    """The task row rule ``rule`` makes of ``event``."""
    then = rule.then
    context = {"event": _event_fields(event), "payload": event.payload}
    params = {key: render(value, context) if isinstance(value, str) else value for key, value in then.params.items()}
    workspace = render(then.workspace, context) if then.workspace else None
    if then.template is not None:
        params = template_params(then.template, params).model_dump()
        goal = goal_of(then.template, params)
        workspace = workspace or default_workspace(then.template, params)
    else:
        goal = render(then.goal or "", context)
    return {
        "id": task_id_for(event.id, rule.name), "event_id": event.id, "goal": goal, "status": "queued",
        "workspace": workspace, "queue": then.queue,
        "requested_by": f"rule:{rule.name}", "check_cmd": render(then.check, context) if then.check else None,
        "rule": rule.name, "template": then.template, "params": params or None, "dry_run": then.dry_run,
        "priority": then.priority, "policy": str(then.policy) if then.policy else None,
        "rule_concurrency": then.concurrency,
        "budgets": then.budgets.model_dump(exclude_none=True) or None,
        "resource": render(then.resource, context)[:200] if then.resource else None,
    }


def render(text: str, context: dict[str, Any]) -> str:
    return _JINJA.from_string(text).render(context)


def _cooldown(rule: Rule, event: Event) -> tuple[str, datetime] | None:
    if rule.cooldown is None:
        return None
    resource = render(rule.cooldown.per, {"event": _event_fields(event), "payload": event.payload})
    return resource[:200] or "*", event.created_at + timedelta(seconds=rule.cooldown.seconds)


def _event_fields(event: Event) -> dict[str, Any]:
    return {"id": event.id, "source": event.source, "kind": event.kind, "created_at": event.created_at.isoformat()}


def default_rule(event: Event) -> dict[str, Any]:
    """The task row of a user submission: its goal, workspace and requester come from the payload."""
    payload = event.payload
    goal = payload.get("goal") or f"Handle the {event.source} event {event.kind}: {payload}"
    return {
        "id": payload.get("task_id") or task_id_for(event.id, DEFAULT_RULE),
        "event_id": event.id,
        "goal": str(goal),
        "status": "queued",
        "workspace": payload.get("workspace"),
        "queue": str(payload.get("queue") or "default"),
        "priority": int(payload.get("priority") or 0),
        "requested_by": payload.get("requested_by") or f"{event.source}",
        "check_cmd": payload.get("check"),
        "dry_run": bool(payload.get("dry_run", False)),
    }


def event_row(event: Event, routing: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": event.id, "dedup_key": event.dedup_key, "source": event.source, "kind": event.kind,
            "payload": event.payload, "created_at": event.created_at, "routing": routing}
