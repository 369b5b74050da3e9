"""The policy engine: one tool call in, one decision out (``allow``, ``approve`` or
``deny``, with a risk level and the reasons). Order: the call's schema; the policy's hard
denies; its approval classes; the model's own risk scores above the thresholds; the
tool-policy classifier, which may raise ``allow`` to ``approve`` and never lowers a
rule's decision; else allow. A call is judged by the commands it would run: a shell line
parsed, Python code read, a file tool as the file it writes or reads."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hybrid_agent.policies import commands as programs
from hybrid_agent.policies.paths import PathClass, PathClassifier
from hybrid_agent.policies.policy_file import Policy, Risk, Rule
from hybrid_agent.policies.python_code import PythonParseError, python_commands
from hybrid_agent.policies.shell import PYTHON, Command, Redirect, ShellParseError, find_start_paths, parse_script
from hybrid_agent.policies.tool_schema import DEFAULT_TEST_CMD, InvalidToolCall, ToolCall, validate_call

Verdict = Literal["allow", "approve", "deny"]
# Scores a (goal, call) pair: the probability that the call is dangerous.
CallClassifier = Callable[[str, ToolCall], float]


@dataclass(frozen=True)
class ModelRisk:
    """What the hybrid model itself thinks of the step, when it has an opinion."""

    hrm_risk: float | None = None
    ebm_failure: float | None = None


@dataclass(frozen=True)
class Decision:
    decision: Verdict
    risk: Risk
    reasons: tuple[str, ...]
    rules: tuple[str, ...]
    policy_version: str

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "risk": self.risk.value, "reasons": list(self.reasons),
                "rules": list(self.rules), "policy_version": self.policy_version}


@dataclass
class _Facts:
    """What a rule can ask of one command, worked out once."""

    command: Command
    operands: list[str]
    written: set[PathClass]
    touched: set[PathClass]
    upstream: tuple[str, ...]
    self_calling: bool
    words: set[str] = field(default_factory=set)


class PolicyEngine:
    def __init__(self, policy: Policy, *, scopes: list[Path], test_cmd: str = DEFAULT_TEST_CMD,
                 classifier: CallClassifier | None = None) -> None:
        if not scopes:
            raise ValueError("the policy engine needs at least one scope (the task's workspace)")
        self.policy = policy
        self.paths = PathClassifier(policy.paths, scopes)
        self.test_cmd = test_cmd
        self.classifier = classifier
        self._groups = {name: tuple(members) for name, members in policy.groups.items()}
        self._matchers: dict[tuple[str, ...], _ProgramMatcher] = {}

    @property
    def version(self) -> str:
        return self.policy.version

    def check(self, raw: Any, *, goal: str = "", model_risk: ModelRisk | None = None) -> Decision:
        try:
            call = raw if isinstance(raw, ToolCall) else validate_call(raw)
        except InvalidToolCall as exc:
            return self._decide("deny", Risk.LOW, [f"invalid call: {exc}"], ["schema"])
        try:
            facts = [self._facts(command, self_calling) for command, self_calling in self._commands(call)]
        except (ShellParseError, PythonParseError) as exc:
            return self._decide("approve", Risk.HIGH, [f"not understood, so not allowed unseen: {exc}"],
                                ["not-understood"])
        for verdict, rules in (("deny", self.policy.deny), ("approve", self.policy.approve)):
            hits = [(rule, fact.command) for fact in facts for rule in rules if self._matches(rule, fact)]
            if hits:
                return self._from_rules(verdict, hits)
        return self._model_opinions(call, goal, model_risk)

    def _model_opinions(self, call: ToolCall, goal: str, model_risk: ModelRisk | None) -> Decision:
        """What the rules allowed, the models may still send to a human."""
        limits = self.policy.thresholds
        reasons, rules = [], []
        if model_risk is not None and model_risk.hrm_risk is not None and model_risk.hrm_risk > limits.hrm_risk:
            reasons.append(f"the HRM rates this step's risk {model_risk.hrm_risk:.2f} (threshold {limits.hrm_risk})")
            rules.append("hrm-risk")
        if (model_risk is not None and model_risk.ebm_failure is not None
                and model_risk.ebm_failure > limits.ebm_failure):
            reasons.append(f"the EBM puts its failure probability at {model_risk.ebm_failure:.2f} "
                           f"(threshold {limits.ebm_failure})")
            rules.append("ebm-failure")
        if self.classifier is not None and call.tool != "finish":
            danger = self.classifier(goal, call)
            if danger > limits.tpc:
                reasons.append(f"the tool-policy classifier rates it dangerous ({danger:.2f}, "
                               f"threshold {limits.tpc})")
                rules.append("tpc")
        if reasons:
            return self._decide("approve", Risk.MEDIUM, reasons, rules)
        return self._decide("allow", Risk.LOW, [], [])

    def _from_rules(self, verdict: Verdict, hits: list[tuple[Rule, Command]]) -> Decision:
        risk = max((rule.risk for rule, _ in hits), key=lambda r: r.rank)
        reasons: list[str] = []
        rule_ids: list[str] = []
        for rule, command in hits:
            shown = " ".join(command.argv)
            via = f" (via {' > '.join(command.via)})" if command.via else ""
            reason = f"{rule.reason}: {shown[:120]}{via}"
            if reason not in reasons:
                reasons.append(reason)
            if rule.id not in rule_ids:
                rule_ids.append(rule.id)
        return self._decide(verdict, risk, reasons, rule_ids)

    def _decide(self, verdict: Verdict, risk: Risk, reasons: list[str], rules: list[str]) -> Decision:
        return Decision(verdict, risk, tuple(reasons), tuple(rules), self.policy.version)

    # -- what a call runs ---------------------------------------------------------------

    def _commands(self, call: ToolCall) -> list[tuple[Command, bool]]:
        args = call.args
        if call.tool in ("shell", "run_tests"):
            return self._shell(args.get("cmd") or self.test_cmd)
        if call.tool == "python":
            return [(command, False) for command in python_commands(args["code"])]
        if call.tool in ("write_file", "edit"):
            path = args["path"]
            return [(Command(argv=(call.tool, path), redirects=(Redirect(">", path),)), False)]
        if call.tool in ("read_file", "list_dir"):
            return [(Command(argv=(call.tool, args["path"])), False)]
        return []

    def _shell(self, line: str) -> list[tuple[Command, bool]]:
        script = parse_script(line)
        found: list[tuple[Command, bool]] = []
        for command in script.commands:
            found.append((command, command.function in script.self_calling))
            code = _inline_python(command)
            if code is not None:
                for effect in python_commands(code):
                    found.append((Command(argv=effect.argv, via=command.via + effect.via,
                                          redirects=effect.redirects, in_loop=effect.in_loop,
                                          cwd=command.cwd), False))
        return found

    def _facts(self, command: Command, self_calling: bool) -> _Facts:
        classify = self.paths.classify
        written = {classify(path, command.cwd) for path in programs.written_paths(command)}
        touched = {classify(word, command.cwd) for word in _path_words(command)}
        return _Facts(command=command, operands=programs.operands(command), written=written,
                      touched=touched | written, upstream=tuple(c.program for c in command.stdin_from),
                      self_calling=self_calling, words=set(command.argv[1:]))

    # -- rules ----------------------------------------------------------------------------

    def _matches(self, rule: Rule, facts: _Facts) -> bool:
        command = facts.command
        if rule.programs is not None and not self._program_in(command.program, rule.programs):
            return False
        if rule.network_off and self.policy.network:
            return False
        if rule.dynamic_program is not None and rule.dynamic_program != _is_dynamic(command.argv[0]):
            return False
        if rule.subcommands is not None and (not facts.operands or facts.operands[0] not in rule.subcommands):
            return False
        if rule.flags is not None and not any(programs.has_flag(command, flag) for flag in rule.flags):
            return False
        if rule.except_flags is not None and any(programs.has_flag(command, flag) for flag in rule.except_flags):
            return False
        if rule.min_operands is not None and len(facts.operands) < rule.min_operands:
            return False
        if rule.writes is not None and not facts.written.intersection(rule.writes):
            return False
        if rule.touches is not None and not facts.touched.intersection(rule.touches):
            return False
        if rule.words is not None and not facts.words.intersection(rule.words):
            return False
        if rule.args_contain is not None and not any(text in word for word in command.argv[1:]
                                                      for text in rule.args_contain):
            return False
        return self._context_matches(rule, facts)

    def _context_matches(self, rule: Rule, facts: _Facts) -> bool:
        command = facts.command
        if rule.stdin_from is not None and not any(self._program_in(up, rule.stdin_from) for up in facts.upstream):
            return False
        if rule.stdin_program is not None and rule.stdin_program != _reads_program_from_stdin(facts):
            return False
        if rule.grants is not None:
            mode = facts.operands[0] if facts.operands else ""
            if not programs.mode_grants(mode).intersection(rule.grants):
                return False
        if rule.self_calling is not None and rule.self_calling != facts.self_calling:
            return False
        if rule.in_loop is not None and rule.in_loop != command.in_loop:
            return False
        return rule.background is None or rule.background == command.background

    def _program_in(self, program: str, patterns: tuple[str, ...]) -> bool:
        matcher = self._matchers.get(patterns)
        if matcher is None:
            matcher = self._matchers[patterns] = _ProgramMatcher(patterns, self._groups)
        return matcher(program)


class _ProgramMatcher:
    """A rule's ``programs`` with groups expanded: exact names in a set, globs apart (the
    check runs for every rule and command, so it must be cheap)."""

    def __init__(self, patterns: tuple[str, ...], groups: dict[str, tuple[str, ...]]) -> None:
        members = [m for p in patterns for m in (groups[p[1:]] if p.startswith("@") else (p,))]
        self.exact = frozenset(m for m in members if not any(ch in m for ch in "*?["))
        self.globs = tuple(m for m in members if m not in self.exact)

    def __call__(self, program: str) -> bool:
        return program in self.exact or any(fnmatch.fnmatchcase(program, glob) for glob in self.globs)


def _is_dynamic(word: str) -> bool:
    """A program word whose value needs expanding: a variable, a substitution, a glob or
    a brace list (``/bin/r?``, ``{rm,-rf,/}``)."""
    return any(ch in word for ch in "$`*?[{")


def _path_words(command: Command) -> list[str]:
    """Every word that could name a file: arguments, the values of ``name=value`` words,
    redirect targets (here-strings are text, not files)."""
    words: list[str] = []
    for word in command.argv[1:]:
        words.append(word)
        if "=" in word:
            words.append(word.split("=", 1)[1])
    words += [r.target for r in command.redirects if r.target and r.op not in ("<<<", "<<", "<<-")]
    if command.program == "find":   # what find looks for, below where it looks
        patterns = [command.argv[i + 1] for i, word in enumerate(command.argv[:-1])
                    if word in ("-name", "-iname", "-path", "-ipath", "-wholename")]
        words += [f"{start.rstrip('/')}/{pattern}" for start in find_start_paths(command.argv)
                  for pattern in patterns]
    return words


def _reads_program_from_stdin(facts: _Facts) -> bool:
    """A shell or interpreter with no script and no ``-c``: it runs what the pipe feeds it."""
    command = facts.command
    if not facts.upstream and not any(r.op in ("<<<", "<<", "<<-") for r in command.redirects):
        return False
    if "-c" in command.argv[1:] or "-e" in command.argv[1:] or "-m" in command.argv[1:]:
        return False
    return not facts.operands or facts.operands[0] in ("-", "/dev/stdin") or "-s" in command.argv[1:]


def _inline_python(command: Command) -> str | None:
    if PYTHON.fullmatch(command.program) and "-c" in command.argv[1:-1]:
        return command.argv[command.argv.index("-c") + 1]
    return None

