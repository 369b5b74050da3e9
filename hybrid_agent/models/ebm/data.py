"""Training groups for the energy model: one state, the candidates proposed for it, which
one succeeded and each one's outcome. Two sources:

**Synthetic** (``synthetic_groups``): everyday shell and file goals (create, copy, move,
rename, count lines, count matches, gzip, mkdir, append, copy a folder, head/tail, read,
list, sort, delete, a Python script, a Python one-liner, an edit, finish, and two
two-step goals whose second step must use the first step's result, where the stale
value is the one the first step replaced) whose good call is known. Each goal is a template
filled with names drawn from a pool (``TRAIN_NAMES`` or the disjoint ``HELD_NAMES``, so
that held-out groups use file names, folders, texts and words never trained on); the
state's recent observations are a listing of the workspace (or the earlier step). The
candidates are the good call, its near misses (negatives.py, one per kind that applies),
the good call of another goal, and sometimes a malformed one (truncated JSON). The
proposer's mean log-probability is simulated, slightly higher for the good call than for
the others (N(-0.6, 0.35) vs N(-0.8, 0.35)), so that it helps but does not decide; the
policy decision comes from the real policy engine with the default policy. In some
states one of the near misses already failed earlier (``failed_calls``). Outcome: 1 for the
good call, 0 for every other. The synthetic states never know test results, so the test
features are learned from traces only (their weights start at zero).

**Traces** (``load_traces``): JSONL, one group per line::

    {"goal": str, "recent": [str], "failed_calls": [str], "tests_failing": bool | null,
     "candidates": [{"text": str, "call": {"tool", "args"} | null, "mean_logprob": float,
                     "policy": "allow" | "approve" | "deny" | null, "error": str | null,
                     "outcome": 1 | 0 | null, "kind": str (optional)}]}

``outcome`` is null for a candidate that was not run (it still serves as a ranking
negative, but has no logistic target). The good one is the first with outcome 1; a group
where none succeeded only teaches the logistic term."""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_agent.models.ebm.features import CandidateView, StateView
from hybrid_agent.models.ebm.negatives import near_misses, shell
from hybrid_agent.policies.engine import PolicyEngine
from hybrid_agent.policies.policy_file import load_policy

SCOPE = Path("/srv/agent/ws")      # where the synthetic workspace is, for the policy engine
FAILED_BEFORE = 0.3                # share of synthetic states where a near miss already failed
MALFORMED = 0.2                    # share of synthetic groups with a truncated candidate


@dataclass(frozen=True)
class Group:
    state: StateView
    candidates: tuple[CandidateView, ...]
    good: int                              # index of the candidate that succeeded; -1: none did
    outcomes: tuple[float | None, ...]     # 1 success, 0 failure, None not known
    kinds: tuple[str, ...]                 # "good", a negatives kind, "other_goal", "malformed", "trace"


@dataclass(frozen=True)
class Names:
    stems: tuple[str, ...]
    extensions: tuple[str, ...]
    dirs: tuple[str, ...]
    texts: tuple[str, ...]
    words: tuple[str, ...]
    numbers: tuple[int, ...]


TRAIN_NAMES = Names(
    stems=("report", "notes", "app", "data", "orders", "users", "metrics", "events", "inventory", "summary",
           "todo", "config", "server", "access", "sales", "budget", "draft", "results", "clients", "tasks"),
    extensions=("txt", "log", "csv", "md", "json"),
    dirs=("backup", "archive", "logs", "out", "docs", "build", "reports", "old"),
    texts=("hello world", "build passed", "version 2", "all done", "retry later", "deploy ok", "cache cleared",
           "hello", "ready"),
    words=("ERROR", "WARN", "TODO", "timeout", "FAIL"),
    numbers=(3, 5, 10, 20),
)
HELD_NAMES = Names(
    stems=("ledger", "journal", "invoice", "catalog", "roster", "schedule", "payroll", "survey"),
    extensions=("txt", "log", "csv", "md"),
    dirs=("vault", "exports", "history", "staging"),
    texts=("good morning", "tests green", "release 3", "job finished"),
    words=("CRITICAL", "DEBUG", "denied"),
    numbers=(4, 8, 15),
)

Call = dict[str, Any]


def _write(path: str, content: str) -> Call:
    return {"tool": "write_file", "args": {"path": path, "content": content}}


def _path(tool: str, path: str) -> Call:
    return {"tool": tool, "args": {"path": path}}


_LISTING = ["$ ls", "{f} {x} {d}/"]
_NO_FILE = ["$ ls", "{x} {d}/"]     # the file to create is not there yet
_NO_DIR = ["$ ls", "{f} {x}"]       # nor the folder: mkdir without -p must fail

# (goal, recent observations, good call); {slots} are filled by _slots.
TEMPLATES: tuple[tuple[str, list[str], Call], ...] = (
    ("Create {f} containing '{t}'.", _NO_FILE, _write("{f}", "{t}\n")),
    ("Write '{t}' into a new file {f}.", _NO_FILE, shell("echo '{t}' > {f}")),
    ("Copy {f} into {d}/.", _LISTING, shell("cp {f} {d}/")),
    ("Copy {f} into {d}/{e}/, creating the folders.", _NO_DIR, shell("mkdir -p {d}/{e} && cp {f} {d}/{e}/")),
    ("Move {f} into {d}/.", _LISTING, shell("mv {f} {d}/")),
    ("Rename {f} to {g}.", _LISTING, shell("mv {f} {g}")),
    ("Count the lines of {f}.", _LISTING, shell("wc -l {f}")),
    ("Count the lines containing {w} in {f}.", _LISTING, shell("grep -c {w} {f}")),
    ("Compress {f} with gzip.", _LISTING, shell("gzip {f}")),
    ("Compress {f} with gzip and keep the original.", _LISTING, shell("gzip -k {f}")),
    ("Create the directory {d}/{e}.", _NO_DIR, shell("mkdir -p {d}/{e}")),
    ("Append '{t}' to {f}.", ["$ cat {f}", "{u}"], shell("echo '{t}' >> {f}")),
    ("Copy the folder {d}/ to {e}/.", _LISTING, shell("cp -r {d} {e}")),
    ("Show the first {n} lines of {f}.", _LISTING, shell("head -n {n} {f}")),
    ("Show the last {n} lines of {f}.", _LISTING, shell("tail -n {n} {f}")),
    ("Sort {f} into {g}.", _LISTING, shell("sort {f} > {g}")),
    ("Delete {f}.", _LISTING, shell("rm {f}")),
    ("Read {f}.", _LISTING, _path("read_file", "{f}")),
    ("List the files in {d}/.", _LISTING, _path("list_dir", "{d}")),
    ("Write a Python script {s}.py that prints '{t}'.", _LISTING, _write("{s}.py", "print('{t}')\n")),
    ("Print the number of lines in {f} with Python.", _LISTING,
     {"tool": "python", "args": {"code": "print(sum(1 for _ in open('{f}')))"}}),
    ("In {f}, replace '{u}' with '{t}'.", ["$ cat {f}", "{u}"],
     {"tool": "edit", "args": {"path": "{f}", "old": "{u}", "new": "{t}"}}),
    ("Create {f} containing '{t}'.", ["$ write_file {f}", "ok", "$ cat {f}", "{t}"],
     {"tool": "finish", "args": {"summary": "Created {f}", "success": True}}),
    ("Rename {f} to {g}, then count its lines.", ["$ mv {f} {g}", "ok"], shell("wc -l {g}")),
    ("Move {f} into {d}/, then show its first lines.", ["$ mv {f} {d}/", "ok"], shell("head {d}/{f}")),
)


def _slots(rng: random.Random, names: Names) -> dict[str, str]:
    f, g, x = (f"{stem}.{rng.choice(names.extensions)}" for stem in rng.sample(names.stems, 3))
    d, e = rng.sample(names.dirs, 2)
    t, u = rng.sample(names.texts, 2)
    return {"f": f, "g": g, "x": x, "d": d, "e": e, "t": t, "u": u, "s": rng.choice(names.stems),
            "w": rng.choice(names.words), "n": str(rng.choice(names.numbers))}


def _fill(value: Any, slots: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**slots)
    if isinstance(value, dict):
        return {k: _fill(v, slots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fill(v, slots) for v in value]
    return value


def synthetic_groups(n: int, *, names: Names = TRAIN_NAMES, seed: int = 0,
                     engine: PolicyEngine | None = None) -> list[Group]:
    """``n`` groups, templates taken in turn, names and candidates drawn with ``seed``."""
    rng = random.Random(seed)
    engine = engine or PolicyEngine(load_policy(), scopes=[SCOPE])
    groups = []
    for i in range(n):
        goal, recent, good = _fill(TEMPLATES[i % len(TEMPLATES)], _slots(rng, names))
        other = good
        while other == good:      # another goal's call, never by chance this one
            other = _fill(rng.choice(TEMPLATES)[2], _slots(rng, names))
        misses = near_misses(good, earlier=recent, seed=seed * 1_000_003 + i)
        failed = [json.dumps(rng.choice(misses).call)] if misses and rng.random() < FAILED_BEFORE else []
        kinds = ["good", *(m.kind for m in misses), "other_goal"]
        calls = [good, *(m.call for m in misses), other]
        candidates = [_view(call, kind, goal, engine, rng) for call, kind in zip(calls, kinds)]
        if rng.random() < MALFORMED:     # cut short, as a token budget cuts a call
            text = json.dumps(good)
            candidates.append(CandidateView(text=text[:len(text) // 2], call=None, mean_logprob=rng.gauss(-0.8, 0.35),
                                            policy=None, error="not valid JSON"))
            kinds.append("malformed")
        order = list(range(len(candidates)))     # the good call is 0 until shuffled
        rng.shuffle(order)
        groups.append(Group(state=StateView(goal=goal, recent=recent, failed_calls=failed, tests_failing=None),
                            candidates=tuple(candidates[j] for j in order),
                            good=order.index(0),
                            outcomes=tuple(1.0 if j == 0 else 0.0 for j in order),
                            kinds=tuple(kinds[j] for j in order)))
    return groups


def _view(call: Call, kind: str, goal: str, engine: PolicyEngine, rng: random.Random) -> CandidateView:
    mean = -0.6 if kind == "good" else -0.8
    return CandidateView(text=json.dumps(call), call=call, mean_logprob=min(rng.gauss(mean, 0.35), -0.01),
                         policy=engine.check(call, goal=goal).decision, error=None)


def load_traces(path: Path) -> list[Group]:
    """The groups of a JSONL trace file (format in the module docstring)."""
    groups = []
    for number, row in enumerate(_jsonl(path), start=1):
        try:
            groups.append(_group(row))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not an EBM trace group: {exc!r}") from exc
    return groups


def _group(row: dict[str, Any]) -> Group:
    state = StateView(goal=row["goal"], recent=list(row.get("recent", [])),
                      failed_calls=list(row.get("failed_calls", [])), tests_failing=row.get("tests_failing"))
    candidates, outcomes, kinds = [], [], []
    for c in row["candidates"]:
        candidates.append(CandidateView(text=c["text"], call=c.get("call"), mean_logprob=float(c["mean_logprob"]),
                                        policy=c.get("policy"), error=c.get("error")))
        outcomes.append(None if c.get("outcome") is None else float(c["outcome"]))
        kinds.append(c.get("kind", "trace"))
    good = next((i for i, o in enumerate(outcomes) if o == 1.0), -1)
    return Group(state, tuple(candidates), good, tuple(outcomes), tuple(kinds))


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        yield from (json.loads(line) for line in lines if line.strip())


def split_traces(groups: list[Group], fraction: float) -> tuple[list[Group], list[Group]]:
    """(train, held out) by a hash of the goal: every step of one task lands on one side."""
    held = [g for g in groups if zlib.crc32(g.state.goal.encode()) % 1000 < fraction * 1000]
    train = [g for g in groups if zlib.crc32(g.state.goal.encode()) % 1000 >= fraction * 1000]
    return train, held
