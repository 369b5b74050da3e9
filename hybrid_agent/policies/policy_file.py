"""The policy as data: a versioned YAML file, validated when it is loaded. The default ships
beside this module; ``HA_POLICY`` names another. A rule matches one command (a simple
shell command, or a Python effect read as one) when all of its conditions hold."""

from __future__ import annotations

from enum import Enum
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hybrid_agent.policies.paths import PathClass, PathRules

DEFAULT_POLICY = "default_policy.yaml"


class Risk(str, Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Risk).index(self)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    id: str = Field(min_length=1)
    risk: Risk
    reason: str = Field(min_length=1)
    # Conditions, all of which must hold; a rule names at least one.
    programs: tuple[str, ...] | None = None        # globs on the program's name; "@group" for a group
    subcommands: tuple[str, ...] | None = None     # the first operand
    flags: tuple[str, ...] | None = None           # any of these options given
    except_flags: tuple[str, ...] | None = None    # none of these options given
    min_operands: int | None = None
    writes: tuple[PathClass, ...] | None = None    # writes a path of one of these classes
    touches: tuple[PathClass, ...] | None = None   # names such a path in any word or redirect
    stdin_from: tuple[str, ...] | None = None      # an earlier program of its pipeline matches
    grants: tuple[str, ...] | None = None          # chmod mode grants: setuid, world_writable
    words: tuple[str, ...] | None = None           # a word is one of these
    args_contain: tuple[str, ...] | None = None    # a word contains one of these texts
    dynamic_program: bool | None = None            # the program is only known when it runs
    stdin_program: bool | None = None              # an interpreter reading its program from stdin
    self_calling: bool | None = None               # inside a shell function that calls itself
    in_loop: bool | None = None
    background: bool | None = None
    network_off: bool | None = None                # applies only while the policy's network is off

    @model_validator(mode="after")
    def _has_a_condition(self) -> Rule:
        conditions = self.model_dump(exclude={"id", "risk", "reason"}, exclude_none=True)
        if not conditions:
            raise ValueError(f"rule {self.id!r} has no condition and would match every command")
        return self


class Thresholds(_Strict):
    hrm_risk: float = Field(ge=0, le=1)
    ebm_failure: float = Field(ge=0, le=1)
    tpc: float = Field(ge=0, le=1)


class Policy(_Strict):
    version: str = Field(min_length=1)
    network: bool
    thresholds: Thresholds
    paths: PathRules
    groups: dict[str, tuple[str, ...]]
    deny: tuple[Rule, ...]
    approve: tuple[Rule, ...]

    @model_validator(mode="after")
    def _groups_exist(self) -> Policy:
        for rule in (*self.deny, *self.approve):
            for name in (*(rule.programs or ()), *(rule.stdin_from or ())):
                if name.startswith("@") and name[1:] not in self.groups:
                    raise ValueError(f"rule {rule.id!r} names unknown group {name!r}; "
                                     f"groups: {', '.join(sorted(self.groups))}")
        ids = [rule.id for rule in (*self.deny, *self.approve)]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(duplicates)}")
        return self


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and what is wrong."""


def load_policy(path: Path | None = None) -> Policy:
    """The policy at ``path``, or the default one."""
    if path is None:
        text = resources.files("hybrid_agent.policies").joinpath(DEFAULT_POLICY).read_text()
        source = f"the default policy ({DEFAULT_POLICY})"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{source} must be a mapping with version, network, thresholds, paths, groups, "
                          "deny and approve")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
                             for error in exc.errors()[:5])
        raise PolicyError(f"{source} is not a valid policy: {problems}") from exc
