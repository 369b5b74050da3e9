"""The code-edit expert: small AST-level repairs of the code a failing test implicates.

It reads the frames of the Python tracebacks in the last observation (unittest's and
Python's ``File "...", line N`` lines, pytest's ``path.py:N:`` lines), keeps those inside
the workspace, and mutates the code they point at:

    the frame's own line, when it is not test code
    the bodies of the workspace functions called on that line (an assertion fails in the
        test, but the bug is in the function it called)
    the rest of the function the frame is in (an IndexError raised a line below the
        off-by-one ``range``)

Test code is never mutated (files named ``test_*.py``, ``*_test.py``, ``conftest.py`` or
under a ``tests``/``test`` folder): the test is the spec, and flipping its assertion would
"pass". Neither are installed packages (under ``site-packages`` or a hidden folder).

Mutations, by kind, in this priority: comparison flips (< <= > >= == != is in), boundary
changes (range() arguments and slice bounds +-1), off-by-one constants (n+-1), operator
swaps (+ -, * /, / //, += -=, *= /=), condition changes (and/or, dropping a ``not``,
negating an if/while/assert test, True/False). Each replaces the exact source text of a
node or an operator (found from the nodes' column offsets), so the formatting around it
survives. Repairs rank by target (innermost frame first), then kind, then position in the
file; each is an ``edit`` call whose ``old`` is the changed line(s), widened by
neighbouring lines until it occurs once in the file."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_agent.agents.experts.base import ExpertContext, expert_candidate
from hybrid_agent.models.llm.base import Candidate
from hybrid_agent.policies.tool_schema import InvalidToolCall, validate_call

FRAME_PATTERNS = (
    re.compile(r'^\s*File "(?P<path>[^"\n]+)", line (?P<line>\d+)', re.M),   # Python, unittest, pytest --tb=native
    re.compile(r"^(?P<path>[^\s:]+\.py):(?P<line>\d+):", re.M),              # pytest's long and short formats
)
MAX_FILE_BYTES = 1_000_000
KINDS = ("comparison", "boundary", "constant", "operator", "condition")
SKIPPED_FOLDERS = frozenset({"site-packages", "dist-packages", "__pycache__"})
TEST_FOLDERS = frozenset({"tests", "test"})
EDIT_ONLY = frozenset({"edit"})

COMPARE_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
                  ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
# The boundary flip first (< to <=): an off-by-one is likelier than a reversed test.
COMPARE_SWAPS = {"<": ("<=", ">"), "<=": ("<", ">="), ">": (">=", "<"), ">=": (">", "<="), "==": ("!=",),
                 "!=": ("==",), "is": ("is not",), "is not": ("is",), "in": ("not in",), "not in": ("in",)}
BINOP_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//"}
OPERATOR_SWAPS = {"+": ("-",), "-": ("+",), "*": ("/",), "/": ("*", "//"), "//": ("/",),
                  "+=": ("-=",), "-=": ("+=",), "*=": ("/=",), "/=": ("*=",), "//=": ("/=",)}
BOOLOP_SWAP = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
# Expressions that stay one operand when "+ 1" follows them; others are parenthesized.
ATOMIC = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)


@dataclass(frozen=True)
class Frame:
    path: Path     # resolved, inside the workspace
    line: int


@dataclass(frozen=True)
class Replacement:
    start: int     # character offsets into the file's text
    end: int
    text: str


@dataclass(frozen=True)
class Mutation:
    kind: str
    at: tuple[int, int]                  # the node's (line, column), to rank by position
    replacements: tuple[Replacement, ...]


class Source:
    """One parsed file of the workspace, with ast positions mapped to text offsets."""

    def __init__(self, path: Path, rel: str, text: str, tree: ast.Module) -> None:
        self.path, self.rel, self.text, self.tree = path, rel, text, tree
        self.lines = text.split("\n")
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line) + 1)

    def offset(self, line: int, byte_col: int) -> int:
        """ast columns count UTF-8 bytes; Python strings count characters."""
        return self.line_starts[line - 1] + len(self.lines[line - 1].encode()[:byte_col].decode(errors="ignore"))

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node):self.end(node)]


@dataclass(frozen=True)
class Target:
    source: Source
    lines: frozenset[int]    # mutate the nodes that start on these lines


class CodeEditExpert:
    name = "code_edit"
    verifiable = True

    def propose(self, context: ExpertContext, k: int) -> list[Candidate]:
        # A CI failure report carries its traceback in the goal: before any observation
        # has one, that is where the failing frames are.
        report = context.last_observation or context.goal
        if k < 1:
            return []
        root = context.workspace.resolve()
        sources = _Sources(root)
        calls: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for target in _targets(traceback_frames(report, root), sources):
            for mutation in sorted(_mutations(target), key=lambda m: (KINDS.index(m.kind), m.at)):
                call = _edit_call(target.source, mutation, seen)
                if call is not None:
                    calls.append(call)
                    if len(calls) == k:
                        return _ranked(calls)
        return _ranked(calls)


def _ranked(calls: list[dict[str, Any]]) -> list[Candidate]:
    # An uncalibrated score: only its order means something (1/2, 1/3, ...).
    return [expert_candidate(call, 1 / (rank + 2)) for rank, call in enumerate(calls)]


def traceback_frames(text: str, workspace: Path) -> list[Frame]:
    """The frames of ``text``'s tracebacks that lie in the workspace's own Python files,
    innermost first (a traceback lists them outermost first). Relative paths are taken
    from the workspace, where the test command ran."""
    root = workspace.resolve()
    found = sorted((m.start(), m["path"], int(m["line"])) for pattern in FRAME_PATTERNS for m in pattern.finditer(text))
    frames: list[Frame] = []
    for _, raw, line in reversed(found):
        try:
            path = (root / raw).resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        frame = Frame(path, line)
        if frame not in frames and _own_code(path, root) and path.suffix == ".py" and path.is_file():
            frames.append(frame)
    return frames


def _own_code(path: Path, root: Path) -> bool:
    if not path.is_relative_to(root):
        return False
    parts = path.relative_to(root).parts
    return not any(part.startswith(".") or part in SKIPPED_FOLDERS for part in parts)


def is_test_file(rel: str) -> bool:
    *folders, name = Path(rel).parts
    return (name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
            or any(folder in TEST_FOLDERS for folder in folders))


class _Sources:
    """The workspace's files, each read and parsed once per proposal."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[Path, Source | None] = {}

    def get(self, path: Path) -> Source | None:
        if path not in self._cache:
            self._cache[path] = self._load(path)
        return self._cache[path]

    def _load(self, path: Path) -> Source | None:
        try:
            path = path.resolve()
            if not (_own_code(path, self.root) and path.is_file()) or path.stat().st_size > MAX_FILE_BYTES:
                return None
            text = path.read_bytes().decode()
            return Source(path, path.relative_to(self.root).as_posix(), text, ast.parse(text))
        except (OSError, RuntimeError, UnicodeDecodeError, SyntaxError, ValueError):   # RuntimeError: a symlink loop
            return None

    def module(self, source: Source, module: str | None, level: int) -> Source | None:
        """The workspace file of an imported module: relative imports from the importing
        file's package, absolute ones from the workspace root or the file's folder."""
        parts = module.split(".") if module else []
        if level:
            bases = [source.path.parents[level - 1]] if level <= len(source.path.parents) else []
        else:
            bases = [self.root, source.path.parent]
        for base in bases:
            for candidate in (base.joinpath(*parts).with_suffix(".py") if parts else None,
                              base.joinpath(*parts, "__init__.py")):
                found = self.get(candidate) if candidate is not None else None
                if found is not None:
                    return found
        return None


def _targets(frames: list[Frame], sources: _Sources) -> Iterator[Target]:
    """What to mutate, most implicated first; test code never."""
    seen: set[tuple[str, frozenset[int]]] = set()
    for frame in frames:
        source = sources.get(frame.path)
        if source is None:
            continue
        own = [] if is_test_file(source.rel) else [Target(source, frozenset({frame.line}))]
        called = [Target(s, _body_lines(f)) for s, f in _called_functions(source, frame.line, sources)]
        enclosing = _enclosing_function(source.tree, frame.line)
        rest = [Target(source, _body_lines(enclosing))] if own and enclosing is not None else []
        for target in own + called + rest:
            key = (target.source.rel, target.lines)
            if key not in seen and not is_test_file(target.source.rel):
                seen.add(key)
                yield target


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[int]:
    return frozenset(range(function.body[0].lineno, (function.end_lineno or function.lineno) + 1))


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    return (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _enclosing_function(tree: ast.Module, line: int) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    containing = [f for f in _functions(tree) if f.lineno <= line <= (f.end_lineno or f.lineno)]
    return max(containing, key=lambda f: f.lineno, default=None)


def _called_functions(source: Source, line: int,
                      sources: _Sources) -> list[tuple[Source, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """The workspace functions that calls on ``line`` reach: names imported with
    ``from m import f`` or defined in the same file, ``m.f`` with ``import m`` or
    ``from p import m``, and methods (``obj.f``) of the same file or of the workspace
    modules it imports (a test calls ``inventory.available()`` on an object whose class
    it imported)."""
    bindings = _import_bindings(source.tree)
    found = []
    for call in ast.walk(source.tree):
        if isinstance(call, ast.Call) and call.lineno <= line <= (call.end_lineno or call.lineno):
            resolved = _callee(source, call.func, bindings, sources)
            if resolved is None:
                continue
            module, name = resolved
            modules = [module, *_imported_modules(source, bindings, sources)] if module is source else [module]
            found += [(m, f) for m in modules for f in _functions(m.tree) if f.name == name]
    return found


def _imported_modules(source: Source, bindings: dict[str, tuple[str | None, int, str | None]],
                      sources: _Sources) -> list[Source]:
    """The workspace files ``source`` imports from, each once."""
    found: dict[Path, Source] = {}
    for module_name, level, _ in bindings.values():
        module = sources.module(source, module_name, level)
        if module is not None and module is not source:
            found.setdefault(module.path, module)
    return list(found.values())


def _callee(source: Source, func: ast.expr, bindings: dict[str, tuple[str | None, int, str | None]],
            sources: _Sources) -> tuple[Source, str] | None:
    """The file and the name of the function ``func`` names; None when it is imported
    from outside the workspace or is not a plain or dotted name."""
    if isinstance(func, ast.Name) and func.id in bindings:
        module_name, level, name = bindings[func.id]
        module = sources.module(source, module_name, level) if name is not None else None
        return (module, name) if module is not None and name is not None else None
    if isinstance(func, ast.Name):
        return source, func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in bindings:
        module_name, level, attr = bindings[func.value.id]
        module = sources.module(source, ".".join(p for p in (module_name, attr) if p), level)
        return (module, func.attr) if module is not None else None
    if isinstance(func, ast.Attribute):
        return source, func.attr
    return None


def _import_bindings(tree: ast.Module) -> dict[str, tuple[str | None, int, str | None]]:
    """name -> (module, level, attribute): ``import a.b as c`` binds c to (a.b, 0, None);
    ``from .m import f as g`` binds g to (m, 1, f)."""
    bindings: dict[str, tuple[str | None, int, str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bindings[alias.asname or alias.name.split(".")[0]] = (alias.name if alias.asname else
                                                                      alias.name.split(".")[0], 0, None)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                bindings[alias.asname or alias.name] = (node.module, node.level, alias.name)
    return bindings


def _mutations(target: Target) -> Iterator[Mutation]:
    source = target.source
    inside_fstrings = {id(n) for node in ast.walk(source.tree) if isinstance(node, ast.JoinedStr)
                       for n in ast.walk(node)}
    bounds = _boundary_nodes(source.tree)
    for node in ast.walk(source.tree):
        if getattr(node, "lineno", None) in target.lines and id(node) not in inside_fstrings:
            yield from _node_mutations(source, node, id(node) in bounds)


def _boundary_nodes(tree: ast.Module) -> set[int]:
    """ids of range() arguments and slice bounds."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            ids.update(id(arg) for arg in node.args)
        elif isinstance(node, ast.Slice):
            ids.update(id(bound) for bound in (node.lower, node.upper) if bound is not None)
    return ids


def _node_mutations(source: Source, node: ast.AST, boundary: bool) -> Iterator[Mutation]:
    at = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:]):
            for swap in COMPARE_SWAPS[COMPARE_SYMBOL[type(op)]]:
                yield from _swap_between(source, "comparison", at, [(left, right)], COMPARE_SYMBOL[type(op)], swap)
    elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SYMBOL:
        symbol = BINOP_SYMBOL[type(node.op)]
        for swap in OPERATOR_SWAPS[symbol]:
            yield from _swap_between(source, "operator", at, [(node.left, node.right)], symbol, swap)
    elif isinstance(node, ast.AugAssign) and type(node.op) in BINOP_SYMBOL:
        symbol = BINOP_SYMBOL[type(node.op)] + "="
        for swap in OPERATOR_SWAPS[symbol]:
            yield from _swap_between(source, "operator", at, [(node.target, node.value)], symbol, swap)
    elif isinstance(node, ast.BoolOp):
        old, new = BOOLOP_SWAP[type(node.op)]
        yield from _swap_between(source, "condition", at, list(zip(node.values, node.values[1:])), old, new)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        keyword = re.match(r"not\s*", source.text[source.start(node):source.start(node.operand)])
        if keyword:
            yield Mutation("condition", at, (Replacement(source.start(node), source.start(node) + keyword.end(), ""),))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield _replace(source, "condition", node, repr(not node.value))
    elif isinstance(node, ast.Constant) and isinstance(node.value, int):
        for value in (node.value + 1, node.value - 1):
            yield _replace(source, "boundary" if boundary else "constant", node, repr(value))
    if boundary and not isinstance(node, ast.Constant):
        operand = source.segment(node)
        additive = isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))   # "a - b + 1" is fine
        if not isinstance(node, ATOMIC) and not additive:
            operand = f"({operand})"
        for change in (" + 1", " - 1"):
            yield _replace(source, "boundary", node, operand + change)
    if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)) and not (
            isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)):
        yield _replace(source, "condition", node.test, f"not ({source.segment(node.test)})", at=at)


def _replace(source: Source, kind: str, node: ast.AST, text: str, at: tuple[int, int] | None = None) -> Mutation:
    position = at or (node.lineno, node.col_offset)  # type: ignore[attr-defined]
    return Mutation(kind, position, (Replacement(source.start(node), source.end(node), text),))


def _swap_between(source: Source, kind: str, at: tuple[int, int], pairs: list[tuple[ast.AST, ast.AST]],
                  old: str, new: str) -> Iterator[Mutation]:
    """Replace the operator ``old`` between each pair of operands with ``new``. The text
    between them must be only the operator, whitespace and parentheses (no comment, no
    line continuation); otherwise there is no mutation."""
    pattern = re.compile(r"\s+".join(map(re.escape, old.split())))
    replacements = []
    for left, right in pairs:
        start, end = source.end(left), source.start(right)
        gap = source.text[start:end]
        match = pattern.search(gap)
        if match is None or gap.replace("(", " ").replace(")", " ").split() != old.split():
            return
        replacements.append(Replacement(start + match.start(), start + match.end(), new))
    yield Mutation(kind, at, tuple(replacements))


def _edit_call(source: Source, mutation: Mutation, seen: set[tuple[str, str]]) -> dict[str, Any] | None:
    """The mutation as a valid ``edit`` call, or None when it breaks the syntax, repeats a
    repair already proposed, or cannot be made unique within the edit's size bounds."""
    text = source.text
    mutated = text
    for r in sorted(mutation.replacements, key=lambda r: r.start, reverse=True):
        mutated = mutated[:r.start] + r.text + mutated[r.end:]
    key = (source.rel, mutated)
    if mutated == text or key in seen:
        return None
    seen.add(key)
    try:
        ast.parse(mutated)
    except SyntaxError:
        return None
    first = min(r.start for r in mutation.replacements)
    last = max(r.end for r in mutation.replacements)
    begin = text.rfind("\n", 0, first) + 1
    stop = _line_end(text, last)
    while text.count(text[begin:stop]) > 1:
        if begin > 0:
            begin = text.rfind("\n", 0, begin - 1) + 1
        elif stop < len(text):
            stop = _line_end(text, stop + 1)
        else:
            return None
    grown = len(mutated) - len(text)
    call = {"tool": "edit", "args": {"path": source.rel, "old": text[begin:stop], "new": mutated[begin:stop + grown]}}
    try:
        validate_call(call, tools=EDIT_ONLY)
    except InvalidToolCall:
        return None
    return call


def _line_end(text: str, at: int) -> int:
    end = text.find("\n", at)
    return len(text) if end == -1 else end
