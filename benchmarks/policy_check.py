"""Policy decisions per second on the two corpora, against the raw cost of parsing the same
shell lines with bashlex alone (the floor any parsed, not regexed, check pays), in one run.

    python benchmarks/policy_check.py [--repeat N] [--no-tpc]

Prints a table, then one JSON line. The engine runs as deployed: the default policy and,
unless --no-tpc, the shipped tool-policy classifier."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import bashlex

from hybrid_agent.policies.engine import PolicyEngine
from hybrid_agent.policies.policy_file import load_policy

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "policies" / "corpus"
SCOPE = Path("/srv/agent/ws")
SIMPLE = ["ls -la", "df -h", "grep -c ERROR /var/log/syslog", "cat config/app.yaml", "wc -l data.csv"]


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPUS / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def per_call_seconds(check, items: list, repeat: int) -> list[float]:
    """Each item's best time over ``repeat`` runs (the least disturbed by the machine)."""
    times = []
    for item in items:
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            check(item)
            best = min(best, time.perf_counter() - started)
        times.append(best)
    return times


def classifier():  # the shipped TPC, when this checkout has it
    try:
        from hybrid_agent.models.tpc import load_tpc
    except ImportError:
        return None
    return load_tpc()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-tpc", action="store_true")
    args = parser.parse_args()
    engine = PolicyEngine(load_policy(), scopes=[SCOPE], classifier=None if args.no_tpc else classifier())
    rows = {}
    for name in ("dangerous", "benign"):
        items = load(name)
        shell_lines = [row["call"]["args"]["cmd"] for row in items if row["call"]["tool"] == "shell"]
        checked = per_call_seconds(lambda row: engine.check(row["call"], goal=row["goal"]), items, args.repeat)
        parsed = per_call_seconds(_parse_or_fail, shell_lines, args.repeat)
        rows[name] = {"calls": len(items), "decisions_per_s": round(len(items) / sum(checked)),
                      "parse_only_per_s": round(len(shell_lines) / sum(parsed)),
                      "mean_us": round(statistics.mean(checked) * 1e6, 1),
                      "p99_us": round(sorted(checked)[int(0.99 * len(checked))] * 1e6, 1)}
    simple = per_call_seconds(lambda cmd: engine.check({"tool": "shell", "args": {"cmd": cmd}}), SIMPLE * 20,
                              args.repeat)
    simple_parse = per_call_seconds(_parse_or_fail, SIMPLE * 20, args.repeat)
    rows["simple"] = {"calls": len(SIMPLE), "decisions_per_s": round(len(simple) / sum(simple)),
                      "parse_only_per_s": round(len(simple_parse) / sum(simple_parse)),
                      "mean_us": round(statistics.mean(simple) * 1e6, 1),
                      "p99_us": round(sorted(simple)[int(0.99 * len(simple))] * 1e6, 1)}
    print(f"{'corpus':<11}{'calls':>6}{'decisions/s':>13}{'bashlex-only/s':>16}{'ratio':>7}{'mean µs':>9}{'p99 µs':>9}")
    for name, row in rows.items():
        row["ratio"] = round(row["decisions_per_s"] / row["parse_only_per_s"], 3)
        print(f"{name:<11}{row['calls']:>6}{row['decisions_per_s']:>13}{row['parse_only_per_s']:>16}"
              f"{row['ratio']:>7}{row['mean_us']:>9}{row['p99_us']:>9}")
    print(json.dumps({"tpc": engine.classifier is not None, **rows}))


def _parse_or_fail(line: str) -> None:
    try:
        bashlex.parse(line)
    except Exception:  # noqa: BLE001 - the baseline only times the attempt
        pass


if __name__ == "__main__":
    main()
