"""Conditions over an event's payload: a dotted path, an operator and a value. Nothing is
evaluated as code; each operator is a small function, and every result says why."""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Op = Literal["eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "contains", "matches", "glob", "exists", "missing"]
MISSING = object()
_PATH = re.compile(r"^[A-Za-z_][\w-]*(\[\d+\])*(\.[A-Za-z_][\w-]*(\[\d+\])*)*$")
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class Condition(BaseModel):
    """``{path: workflow_run.conclusion, op: eq, value: failure}``; the path starts at the
    payload (``alerts[0].labels.severity``), or at ``event.`` for the event's own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(max_length=200)
    op: Op = "eq"
    value: Any = None

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not _PATH.match(path):
            raise ValueError(f"{path!r} is not a path like a.b[0].c")
        return path

    @model_validator(mode="after")
    def _value(self) -> Condition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        if self.op == "matches":
            try:
                re.compile(str(self.value))
            except re.error as exc:
                raise ValueError(f"op matches: {self.value!r} is not a regular expression: {exc}") from exc
        if self.op in ("gt", "ge", "lt", "le") and not isinstance(self.value, (int, float)):
            raise ValueError(f"op {self.op} needs a number")
        return self

    def test(self, document: dict[str, Any]) -> tuple[bool, str]:
        """Whether the document satisfies this, and why, e.g. ``conclusion = 'failure' eq 'failure'``."""
        found = lookup(document, self.path)
        if self.op in ("exists", "missing"):
            holds = (found is not MISSING) == (self.op == "exists")
            return holds, f"{self.path} {'exists' if found is not MISSING else 'is missing'}"
        if found is MISSING:
            return False, f"{self.path} is missing"
        try:
            holds = bool(_OPS[self.op](found, self.value))
        except TypeError:   # e.g. gt on a string: not an error of the event, just no match
            holds = False
        return holds, f"{self.path} = {found!r:.80} {self.op} {self.value!r:.80}"


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` or MISSING; a missing key or index is not an error."""
    value = document
    for key, index in _STEP.findall(path):
        if key:
            if not isinstance(value, dict) or key not in value:
                return MISSING
            value = value[key]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return MISSING
            value = value[int(index)]
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(value)
    try:
        return float(value)
    except ValueError as exc:
        raise TypeError(value) from exc


_OPS = {
    "eq": lambda found, value: found == value,
    "ne": lambda found, value: found != value,
    "in": lambda found, value: found in value,
    "not_in": lambda found, value: found not in value,
    "gt": lambda found, value: _number(found) > value,
    "ge": lambda found, value: _number(found) >= value,
    "lt": lambda found, value: _number(found) < value,
    "le": lambda found, value: _number(found) <= value,
    "contains": lambda found, value: isinstance(found, (str, list, dict)) and value in found,
    # Bounded input: a rule's pattern runs over at most 10 kB of an event's text.
    "matches": lambda found, value: isinstance(found, str) and re.search(str(value), found[:10_000]) is not None,
    "glob": lambda found, value: isinstance(found, str) and fnmatch.fnmatchcase(found, str(value)),
}
