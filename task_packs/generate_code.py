"""Generates the code-fix task pack ``task_packs/code.jsonl`` and its reference solutions
``tests/task_packs/solutions/code.jsonl``.

Every task is a small, correct Python module with a pytest suite (one folder per module
under ``task_packs/code_sources/``) into which the generator seeds ONE bug: a mutation that
replaces one exact snippet of the source. Starting from known-good code means the bug is
precise, the reference solution is simply the inverse replacement, and the generator can
prove that each mutation breaks at least one test (it runs the suite), so no task is
solved before the agent starts.

The agent sees only what a developer would: a CI failure report (intro plus the tail of
the failing pytest run). The check re-runs the suite and requires every test to pass with
the test files and pytest.ini byte-identical (sha256 sums embedded in the check, which the
agent never sees) and the module files still present.

Splits: the seven base bug families are split by module (the modules in TEST_MODULES go to
test, about 40% of those tasks), so test tasks use code the agent was not trained on; the
families in TEST_ONLY_FAMILIES appear only in test, whatever their module, to measure
transfer to kinds of bugs never seen in training.

Run from the repository root (about a minute: pytest once per module and once per bug,
with the system python3 and the environment that pack scripts get):

    .venv/bin/python task_packs/generate_code.py
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybrid_agent.eval.packs import script_env

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "code_sources"
PACK_PATH = HERE / "code.jsonl"
SOLUTIONS_PATH = HERE.parent / "tests" / "task_packs" / "solutions" / "code.jsonl"

SEED = 20240611
TIMEOUT_S = 300
TAIL_LINES = 40
FAILING_RUN = "python3 -m pytest -q -x --no-header -p no:cacheprovider"
GIT_DATE = "2024-06-11T09:00:00Z"

BASE_FAMILIES = ("operator", "comparison", "boundary", "constant", "condition", "wrong_variable", "missing_case")
TEST_ONLY_FAMILIES = ("wrong_return", "swapped_arguments", "wrong_default", "exception_type", "string_format")
FAMILIES = BASE_FAMILIES + TEST_ONLY_FAMILIES
TEST_MODULES = frozenset({"semver", "csv_summary", "config_merger", "inventory", "word_counter",
                          "matrix", "intervals", "slugify", "brackets", "durations"})

# Written into every workspace. pytest.ini pins the rootdir to the workspace (so a pyproject
# further up cannot change how the suite runs) and makes the root modules importable.
COMMON_FILES = {
    "pytest.ini": "[pytest]\n# The modules live at the workspace root; the tests import them from there.\n"
                  "pythonpath = .\ntestpaths = tests\n",
    ".gitignore": "__pycache__/\n.pytest_cache/\n",
}

INTROS = (
    "CI failed on the {branch} branch ({job}): fix the bug in the code so the test suite passes. "
    "Do not change the tests.",
    "The {job} job is red on {branch}. Find and fix the bug in the source so that every test passes "
    "again; the tests are correct and must not be edited.",
    "Since the last merge into {branch}, the {job} check fails. Repair the module (not the tests, "
    "not pytest.ini) so that `python3 -m pytest` passes.",
    "Broken build on {branch}: {job} reports a failing test. Fix the code under test and leave "
    "tests/ and pytest.ini untouched.",
)
JOBS = ("unit-tests", "pytest", "test (py3.11)", "ci / tests", "build-and-test")
BRANCHES = ("main", "develop", "release/2.4", "trunk", "master", "staging")


@dataclass(frozen=True)
class Mutation:
    """One seeded bug: `old` (correct code) becomes `new` (buggy code) in `file`."""

    module: str
    family: str
    old: str
    new: str
    file: str = ""

    @property
    def path(self) -> str:
        return self.file or f"{self.module}.py"


M = Mutation
# Grouped by module; each snippet must occur exactly once in the correct file, and the buggy
# snippet exactly once in the mutated file (so the inverse replacement is unambiguous).
MUTATIONS: tuple[Mutation, ...] = (
    M("rate_limiter", "comparison", "if self.tokens >= cost:", "if self.tokens > cost:"),
    M("rate_limiter", "wrong_variable", "min(self.capacity, self.tokens", "min(self.rate, self.tokens"),
    M("rate_limiter", "condition", "if capacity <= 0 or rate <= 0:", "if capacity <= 0 and rate <= 0:"),
    M("rate_limiter", "missing_case", "elapsed = max(0.0, now - self.updated)", "elapsed = now - self.updated"),
    M("rate_limiter", "constant", "self.tokens = float(capacity)", "self.tokens = 0.0"),
    M("rate_limiter", "wrong_default", "cost: int = 1", "cost: int = 0"),

    M("invoice", "operator", "net = subtotal(lines) - percent(", "net = subtotal(lines) + percent("),
    M("invoice", "constant", 'CENT = Decimal("0.01")', 'CENT = Decimal("0.1")', "money.py"),
    M("invoice", "condition", "if not 0 <= discount_pct <= 100:", "if 0 <= discount_pct <= 100:"),
    M("invoice", "wrong_variable", "gross = net + percent(net, tax_pct)", "gross = net + percent(net, discount_pct)"),
    M("invoice", "wrong_return", "return to_cents(gross)", "return to_cents(net)"),

    M("date_range", "boundary", "range((end - start).days + 1)", "range((end - start).days)"),
    M("date_range", "comparison", "return a_start <= b_end and", "return a_start < b_end and"),
    M("date_range", "condition", "b_end and b_start <= a_end", "b_end or b_start <= a_end"),
    M("date_range", "constant", "day.weekday() < 5", "day.weekday() < 6"),
    M("date_range", "wrong_return", "return first_of_next - timedelta(days=1)", "return first_of_next"),
    M("date_range", "swapped_arguments", "days_between(start, end) if", "days_between(end, start) if"),

    M("semver", "missing_case", "        return 0\n    if a_pre is None:  # a release ranks above its own "
      "pre-releases\n        return 1\n", "        return 0\n"),
    M("semver", "constant", r'(?:-([0-9A-Za-z.-]+))?$', r'(?:-([0-9A-Za-z-]+))?$'),
    M("semver", "comparison", "return -1 if core_a < core_b else 1", "return -1 if core_a > core_b else 1"),
    M("semver", "wrong_variable", "(a_major, a_minor, a_patch)", "(a_major, a_minor, b_patch)"),
    M("semver", "boundary", "for version in versions[1:]:", "for version in versions[2:]:"),
    M("semver", "exception_type", 'raise ValueError(f"not a semantic', 'raise TypeError(f"not a semantic'),
    M("semver", "swapped_arguments", "if compare(version, best) > 0:", "if compare(best, version) > 0:"),

    M("log_parser", "missing_case", "    if not entries:\n        return 0.0\n    errors", "    errors", "log_stats.py"),
    M("log_parser", "boundary", "ranked[:n]", "ranked[:n - 1]", "log_stats.py"),
    M("log_parser", "operator", "entry.status // 100 * 100", "entry.status % 100 * 100", "log_stats.py"),
    M("log_parser", "wrong_variable", "key=lambda entry: entry.millis", "key=lambda entry: entry.status",
      "log_stats.py"),

    M("retry_backoff", "operator", "base * factor**i", "base * factor * i"),
    M("retry_backoff", "boundary", "if attempt == attempts - 1:", "if attempt == attempts:"),
    M("retry_backoff", "comparison", "if attempts < 1:", "if attempts <= 1:"),
    M("retry_backoff", "wrong_default", "spread: float = 0.1", "spread: float = 0.5"),

    M("lru_cache", "condition", "if key not in self._items:\n            self.misses",
      "if key in self._items:\n            self.misses"),
    M("lru_cache", "missing_case", "        if key in self._items:\n            self._items.move_to_end(key)\n"
      "        self._items[key] = value", "        self._items[key] = value"),
    M("lru_cache", "wrong_variable", "self.hits += 1\n        self._items", "self.misses += 1\n        self._items"),
    M("lru_cache", "constant", "popitem(last=False)", "popitem(last=True)"),
    M("lru_cache", "wrong_return", "return default", "return None"),
    M("lru_cache", "exception_type", 'raise ValueError("capacity must', 'raise RuntimeError("capacity must'),

    M("csv_summary", "missing_case", '    if not values:\n        return {"count": 0, "sum": 0.0, "mean": 0.0, '
      '"min": 0.0, "max": 0.0}\n    return {"count": len', '    return {"count": len'),
    M("csv_summary", "wrong_variable", "totals.get(row[key], 0.0)", "totals.get(row[column], 0.0)"),
    M("csv_summary", "operator", "sum(values) / len(values)", "sum(values) // len(values)"),
    M("csv_summary", "condition", "if row[column].strip()]", "if not row[column].strip()]"),

    M("pagination", "boundary", "start = (number - 1) * per_page", "start = number * per_page"),
    M("pagination", "comparison", "number < pages, number > 1)", "number <= pages, number > 1)"),
    M("pagination", "operator", "math.ceil(total / per_page)", "math.ceil(total // per_page)"),
    M("pagination", "wrong_variable", "page_count(len(items), per_page)", "page_count(len(items), number)"),
    M("pagination", "swapped_arguments", "page_count(len(items), per_page)", "page_count(per_page, len(items))"),

    M("config_merger", "condition", "if isinstance(value, dict) and isinstance(",
      "if isinstance(value, dict) or isinstance("),
    M("config_merger", "missing_case", "        if not name.startswith(prefix):\n            continue\n        path",
      "        path"),
    M("config_merger", "constant", '.lower().split("__")', '.lower().split("_")'),
    M("config_merger", "boundary", "for part in path[:-1]:", "for part in path:"),
    M("config_merger", "wrong_default", 'prefix: str = "APP_"', 'prefix: str = "APP"'),
    M("config_merger", "swapped_arguments", "merged = deep_merge(merged, layer)", "merged = deep_merge(layer, merged)"),

    M("text_wrap", "comparison", "len(current) + 1 + len(word) <= width", "len(current) + 1 + len(word) < width"),
    M("text_wrap", "missing_case", "    if current:\n        lines.append(current)\n    return",
      "    lines.append(current)\n    return"),
    M("text_wrap", "condition", "prefix + line if line else line", "prefix + line if not line else line"),
    M("text_wrap", "boundary", "limit - len(ellipsis))]", "limit - len(ellipsis) + 1)]"),

    M("inventory", "comparison", "if quantity > self.available(sku):", "if quantity >= self.available(sku):"),
    M("inventory", "operator", "self._stock.get(sku, 0) - self._reserved", "self._stock.get(sku, 0) + self._reserved"),
    M("inventory", "wrong_variable", "self._stock[sku] = self._stock.get(sku, 0)",
      "self._stock[sku] = self._reserved.get(sku, 0)"),
    M("inventory", "missing_case", "        if quantity > self._reserved.get(sku, 0):\n            raise OutOfStock("
      'f"{sku}: only {self._reserved.get(sku, 0)} reserved")\n        self._reserved[sku] -=',
      "        self._reserved[sku] -="),
    M("inventory", "exception_type", 'raise OutOfStock(f"{sku}: {quantity} requested',
      'raise ValueError(f"{sku}: {quantity} requested'),
    M("inventory", "string_format", 'f"{sku}: {quantity} requested, {self.available(sku)} available"',
      'f"{sku}: requested {quantity}, available {self.available(sku)}"'),

    M("temperature", "operator", "celsius * 9 / 5 + 32", "celsius * 9 / 5 - 32"),
    M("temperature", "comparison", "if celsius < ABSOLUTE_ZERO_C:", "if celsius <= ABSOLUTE_ZERO_C:"),
    M("temperature", "constant", "ABSOLUTE_ZERO_C = -273.15", "ABSOLUTE_ZERO_C = -273.0"),
    M("temperature", "wrong_variable", "from_c[target](to_c[source](value))", "from_c[target](to_c[target](value))"),
    M("temperature", "string_format", 'f"{value:.1f} °{scale}"', 'f"{value:.2f} °{scale}"'),

    M("bank_account", "comparison", "if self.balance - amount < -self", "if self.balance - amount <= -self",
      "account.py"),
    M("bank_account", "operator", "if self.balance - amount < -self", "if self.balance + amount < -self",
      "account.py"),
    M("bank_account", "missing_case", '        if amount <= 0:\n            raise ValueError("a deposit must be '
      'positive")\n        self.balance += amount', "        self.balance += amount", "account.py"),
    M("bank_account", "string_format", 'f"{kind:<8} {sign}{amount:>8}"', 'f"{kind:>8} {sign}{amount:>8}"',
      "statement.py"),
    M("bank_account", "wrong_default", 'overdraft_limit: Decimal = Decimal("0")',
      'overdraft_limit: Decimal = Decimal("100")', "account.py"),

    M("word_counter", "condition", "if skip_stopwords:", "if not skip_stopwords:"),
    M("word_counter", "operator", "key=lambda item: (-item[1], item[0])", "key=lambda item: (item[1], item[0])"),
    M("word_counter", "boundary", "return ranked[:n]", "return ranked[:n - 1]"),
    M("word_counter", "constant", "re.compile(r\"[a-z0-9']+\")", 're.compile(r"[a-z0-9]+")'),

    M("rle", "boundary", "for char in text[1:]:", "for char in text:"),
    M("rle", "wrong_variable", "run_char, run_length = char, 1", "run_char, run_length = run_char, 1"),
    M("rle", "constant", "run_char, run_length = char, 1", "run_char, run_length = char, 0"),
    M("rle", "condition", "    if count:\n        raise", "    if not count:\n        raise"),
    M("rle", "string_format", 'out.append(f"{run_length}{run_char}")  # the last run',
      'out.append(f"{run_char}{run_length}")  # the last run'),

    M("matrix", "wrong_variable", "for k in range(a_cols)", "for k in range(a_rows)"),
    M("matrix", "comparison", "if a_cols != b_rows:", "if a_cols == b_rows:"),
    M("matrix", "condition", "if any(len(row) != width", "if all(len(row) != width"),
    M("matrix", "operator", "a[i][k] * b[k][j]", "a[i][k] + b[k][j]"),
    M("matrix", "boundary", "for c in range(cols)]", "for c in range(cols - 1)]"),
    M("matrix", "wrong_return", "return (len(m), width)", "return (width, len(m))"),

    M("binary_search", "boundary", "len(items) - 1\n    while lo <= hi:", "len(items)\n    while lo <= hi:"),
    M("binary_search", "comparison", "len(items) - 1\n    while lo <= hi:", "len(items) - 1\n    while lo < hi:"),
    M("binary_search", "wrong_variable", "- lower_bound(items, low))", "- lower_bound(items, high))"),
    M("binary_search", "missing_case", "return max(0, upper_bound(items, high) - lower_bound(items, low))",
      "return upper_bound(items, high) - lower_bound(items, low)"),
    M("binary_search", "swapped_arguments", "upper_bound(items, high) - lower_bound(items, low)",
      "upper_bound(items, low) - lower_bound(items, high)"),

    M("intervals", "comparison", "if merged and start <= merged", "if merged and start < merged"),
    M("intervals", "missing_case", "(merged[-1][0], max(merged[-1][1], end))", "(merged[-1][0], end)"),
    M("intervals", "operator", "sum(end - start for", "sum(end + start for"),
    M("intervals", "boundary", "cursor = max(cursor, end)", "cursor = max(cursor, end - 1)"),
    M("intervals", "exception_type", 'raise ValueError(f"interval', 'raise IndexError(f"interval'),

    M("roman", "constant", '(400, "CD")', '(400, "DC")'),
    M("roman", "operator", "total -= value  # a smaller", "total += value  # a smaller"),
    M("roman", "condition", "if i + 1 < len(text) and VALUES", "if i + 1 < len(text) or VALUES"),
    M("roman", "missing_case", '    if to_roman(total) != text:\n        raise ValueError(f"not a canonical numeral: '
      '{text!r}")\n    return total', "    return total"),

    M("slugify", "comparison", "if len(slug) > max_length:", "if len(slug) >= max_length:"),
    M("slugify", "constant", "n = 2", "n = 1"),
    M("slugify", "wrong_default", "max_length: int = 40", "max_length: int = 20"),
    M("slugify", "boundary", "slug[:max_length]", "slug[:max_length - 1]"),
    M("slugify", "wrong_variable", "ascii_text.lower())", "title.lower())"),

    M("smoothing", "boundary", "range(len(values) - window + 1)", "range(len(values) - window)"),
    M("smoothing", "operator", "(1 - alpha) * result[-1]", "(1 + alpha) * result[-1]"),
    M("smoothing", "constant", "/ abs(old) * 100", "/ abs(old) * 10"),
    M("smoothing", "missing_case", "/ abs(old) * 100", "/ old * 100"),
    M("smoothing", "condition", "value if not result else", "value if result else"),
    M("smoothing", "exception_type", "raise ZeroDivisionError(\"percent", "raise ValueError(\"percent"),

    M("brackets", "condition", "if not stack or stack[-1]", "if not stack and stack[-1]"),
    M("brackets", "constant", '"}": "{"}', '"}": "["}'),
    M("brackets", "comparison", "stack[-1][0] != PAIRS[char]", "stack[-1][0] == PAIRS[char]"),
    M("brackets", "missing_case", "    if stack:\n        return stack[0][1]\n    return None", "    return None"),
    M("brackets", "wrong_return", "    return deepest", "    return depth"),

    M("durations", "string_format", 'f"{hours}h {minutes:02d}m {secs:02d}s"', 'f"{hours}h {minutes}m {secs}s"'),
    M("durations", "constant", 'UNITS = {"h": 3600,', 'UNITS = {"h": 360,'),
    M("durations", "condition", 'if not parts or "".join', 'if not parts and "".join'),
    M("durations", "wrong_variable", "minutes, secs = divmod(rest, 60)", "minutes, secs = divmod(seconds, 60)"),
    M("durations", "operator", "int(n) * UNITS[u]", "int(n) + UNITS[u]"),
)


# ---------------------------------------------------------------- module files and bugs

def module_files(module: str) -> dict[str, str]:
    """The correct workspace of a module: its sources, its tests and the common files."""
    folder = SOURCES / module
    files = {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*.py"))}
    return {**files, **COMMON_FILES}


def is_protected(path: str) -> bool:
    """Files the agent must leave unchanged: the tests and the pytest configuration."""
    return path.startswith("tests/") or path == "pytest.ini"


def source_paths(files: dict[str, str]) -> list[str]:
    return [p for p in files if p.endswith(".py") and not is_protected(p)]


def count_tests(files: dict[str, str]) -> int:
    """Tests in the suite; the suites use no parametrize, so one per test function."""
    return sum(len(re.findall(r"^def test_", text, re.M)) for p, text in files.items() if is_protected(p))


def apply(files: dict[str, str], mutation: Mutation) -> dict[str, str]:
    """The workspace with the bug seeded; both directions of the replacement must be exact."""
    source = files[mutation.path]
    assert mutation.old != mutation.new, mutation
    assert source.count(mutation.old) == 1, f"{mutation}: correct snippet must occur once"
    buggy = source.replace(mutation.old, mutation.new)
    assert buggy.count(mutation.new) == 1, f"{mutation}: buggy snippet must occur once"
    return {**files, mutation.path: buggy}


# ---------------------------------------------------------------- running the suite

def run_pytest(files: dict[str, str], command: str) -> tuple[int, str]:
    """Run a pytest command over the files the way pack scripts run (system python3, the
    script environment) plus a fixed hash seed, in a folder with a fixed name so that paths
    print the same in every run."""
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        for path, text in files.items():
            (workspace / path).parent.mkdir(parents=True, exist_ok=True)
            (workspace / path).write_text(text)
        # pytest lists differing dict items in set order: a fixed hash seed keeps logs stable.
        env = {**script_env(workspace), "PYTHONHASHSEED": "0"}
        proc = subprocess.run(["bash", "-c", command], cwd=workspace, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return proc.returncode, proc.stdout.replace(str(workspace), ".")


def normalise(output: str) -> str:
    """The last TAIL_LINES lines with run-dependent parts (durations, addresses) removed."""
    output = re.sub(r" in \d+(\.\d+)?s( \(\d+:\d\d:\d\d\))?", "", output)
    output = re.sub(r" at 0x[0-9a-f]+", "", output)
    lines = output.rstrip("\n").splitlines()
    return "\n".join(lines[-TAIL_LINES:])


def pytest_failure(task_id: str, files: dict[str, str]) -> str:
    """The failing CI log for a buggy workspace; asserts that some test fails."""
    code, output = run_pytest(files, FAILING_RUN)
    assert code == 1 and " failed" in output, f"{task_id}: the bug breaks no test (exit {code})\n{output}"
    return normalise(output)


def verify_sources() -> None:
    """Every correct module passes its whole suite, with the number of tests we count."""
    for module in sorted({m.module for m in MUTATIONS}):
        files = module_files(module)
        code, output = run_pytest(files, "python3 -m pytest -q -p no:cacheprovider")
        assert code == 0 and f"{count_tests(files)} passed" in output, f"{module} fails unmutated:\n{output}"


# ---------------------------------------------------------------- task scripts

def heredoc(path: str, text: str) -> str:
    assert text.endswith("\n") and "\nEOF\n" not in "\n" + text, path
    return f"cat > {path} <<'EOF'\n{text}EOF\n"


def setup_script(files: dict[str, str], branch: str) -> str:
    """Writes the buggy workspace and commits it, so `git diff` shows the agent's changes."""
    folders = sorted({str(Path(p).parent) for p in files} - {"."})
    parts = ["set -euo pipefail\n", *(f"mkdir -p {f}\n" for f in folders)]
    parts += [heredoc(path, text) for path, text in sorted(files.items())]
    # Fixed dates make the commit id the same in every run, like the rest of the setup.
    parts.append(f"git init -q -b {branch}\ngit add -A\n"
                 f"GIT_AUTHOR_DATE={GIT_DATE} GIT_COMMITTER_DATE={GIT_DATE} "
                 "git -c user.name=ci -c user.email=ci@example.com commit -qm initial\n")
    return "".join(parts)


def check_script(files: dict[str, str]) -> str:
    """Passes when the untouched suite passes in full and the module files still exist."""
    sums = "".join(f"{hashlib.sha256(text.encode()).hexdigest()}  {path}\n"
                   for path, text in sorted(files.items()) if is_protected(path))
    sources = " ".join(source_paths(files))
    count = count_tests(files)
    # Only the original test files run: a regression test the agent adds does not count.
    suite = " ".join(p for p in sorted(files) if p.startswith("tests/"))
    return (
        'fail() { echo "check failed: $*"; exit 1; }\n'
        f"for f in {sources}; do [ -f \"$f\" ] || fail \"$f is missing\"; done\n"
        f"sha256sum --check --quiet <<'SUMS' || fail 'the tests or pytest.ini were changed'\n{sums}SUMS\n"
        # A conftest.py could rewrite test outcomes, so none may exist.
        "extra=$(find . -name conftest.py -not -path './.git/*')\n"
        '[ -z "$extra" ] || fail "unexpected conftest.py: $extra"\n'
        f"out=$(python3 -s -m pytest -q -p no:cacheprovider {suite} 2>&1); rc=$?\n"
        "printf '%s\\n' \"$out\" | tail -n 20\n"
        '[ "$rc" -eq 0 ] || fail "pytest exited with $rc"\n'
        # Every test must run and pass: nothing skipped, deselected or xfailed.
        f"printf '%s\\n' \"$out\" | tail -n 1 | grep -Eq '^{count} passed(, [0-9]+ warnings?)? in ' "
        f"|| fail 'expected exactly {count} passed tests'\n"
    )


def solution_script(mutation: Mutation) -> str:
    """The inverse replacement, as the python3 one-off a developer would run."""
    return (
        "python3 - <<'PY'\nfrom pathlib import Path\n"
        f"path = Path({mutation.path!r})\nsource = path.read_text()\n"
        f"buggy, fixed = {mutation.new!r}, {mutation.old!r}\n"
        "assert source.count(buggy) == 1, 'buggy snippet not found'\n"
        "path.write_text(source.replace(buggy, fixed))\nPY\n"
    )


def goal_text(intro: str, log: str) -> str:
    return f"{intro}\n\nCI log:\n$ {FAILING_RUN}\n{log}"


def pasted_log(goal: str) -> str:
    """The CI log part of a goal (the inverse of goal_text)."""
    return goal.split(f"\n$ {FAILING_RUN}\n", 1)[1]


# ---------------------------------------------------------------- the pack

def split_of(mutation: Mutation) -> str:
    held_out = mutation.family in TEST_ONLY_FAMILIES or mutation.module in TEST_MODULES
    return "test" if held_out else "train"


def ordered_mutations() -> list[Mutation]:
    """By family, then in table order, so ids number each family from 001."""
    return sorted(MUTATIONS, key=lambda m: FAMILIES.index(m.family))


FailingOutput = Callable[[str, dict[str, str]], str]


def build(failing_output: FailingOutput = pytest_failure) -> tuple[list[dict], list[dict]]:
    """The pack's task objects and the solution objects, in pack order. failing_output(task
    id, buggy files) gives the pasted CI log; tests inject the logs already in the pack."""
    tasks, solutions = [], []
    counters = dict.fromkeys(FAMILIES, 0)
    for mutation in ordered_mutations():
        counters[mutation.family] += 1
        task_id = f"code-{mutation.family}-{counters[mutation.family]:03d}"
        rng = random.Random(f"{SEED}:{task_id}")  # per task, so adding a bug reshuffles nothing
        branch = rng.choice(BRANCHES)
        intro = rng.choice(INTROS).format(branch=branch, job=rng.choice(JOBS))
        files = apply(module_files(mutation.module), mutation)
        tasks.append({"id": task_id, "family": mutation.family,
                      "goal": goal_text(intro, failing_output(task_id, files)),
                      "setup": setup_script(files, branch), "check": check_script(files),
                      "timeout_s": TIMEOUT_S, "split": split_of(mutation), "tags": ["code"]})
        solutions.append({"id": task_id, "solution": solution_script(mutation)})
    return tasks, solutions


def jsonl(objects: list[dict]) -> str:
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects)


def main() -> None:
    verify_sources()
    tasks, solutions = build()
    PACK_PATH.write_text(jsonl(tasks))
    SOLUTIONS_PATH.parent.mkdir(parents=True, exist_ok=True)
    SOLUTIONS_PATH.write_text(jsonl(solutions))
    print(f"wrote {len(tasks)} tasks to {PACK_PATH} and their solutions to {SOLUTIONS_PATH}")


if __name__ == "__main__":
    main()
