"""Python code read for what it would do to the system, by its syntax tree: the shell
commands it runs, the files it writes, removes or reads, the network it opens, the code it
builds and executes. Each effect becomes a ``Command`` as if a shell had run it (removing
a tree is ``rm -r PATH``), so that one set of policy rules judges shell and Python alike.
What cannot be known before running (a computed path or command) is reported as such,
never assumed harmless."""

from __future__ import annotations

import ast
import base64
import binascii
import shlex

from hybrid_agent.policies.shell import Command, ShellParseError, parse_script

MAX_DEPTH = 3   # exec(...) of literal code followed this deep
DYNAMIC = "$python-computed"   # a word whose value only the run knows
NETWORK_MODULES = frozenset({
    "socket", "urllib", "urllib2", "urllib3", "requests", "http", "httpx", "aiohttp", "ftplib", "smtplib",
    "telnetlib", "paramiko", "websocket", "websockets", "xmlrpc", "asyncssh", "pycurl",
})
SHELL_RUNNERS = frozenset({"os.system", "os.popen", "commands.getoutput", "subprocess.getoutput",
                           "subprocess.getstatusoutput"})
PROCESS_RUNNERS = frozenset({
    "subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output", "subprocess.Popen",
    "os.execv", "os.execve", "os.execvp", "os.execvpe", "os.execl", "os.execlp", "os.spawnv", "os.spawnvp",
    "pty.spawn", "os.posix_spawn", "os.posix_spawnp",
})
# Methods that remove whatever their receiver is, even when it cannot be told what that is.
REMOVING_METHODS = frozenset({"unlink", "rmdir", "rmtree"})
# Started and left running: in a loop, one more process each time round.
BACKGROUND_RUNNERS = frozenset({"subprocess.Popen", "os.spawnv", "os.spawnvp", "os.posix_spawn",
                                "os.posix_spawnp"})
REMOVERS = frozenset({"shutil.rmtree", "os.remove", "os.unlink", "os.rmdir", "os.removedirs", "Path.unlink",
                      "Path.rmdir"})
MOVERS = frozenset({"shutil.move", "os.rename", "os.replace", "shutil.copy", "shutil.copy2", "shutil.copyfile",
                    "shutil.copytree"})
CODE_RUNNERS = frozenset({"exec", "eval", "compile"})
FORKS = frozenset({"os.fork", "os.forkpty"})
DYNAMIC_LOADERS = frozenset({"ctypes.CDLL", "ctypes.cdll.LoadLibrary", "importlib.import_module", "__import__"})
_WRITE_MODES = frozenset("wax+")
DYNAMIC_CALL = "<computed>"   # a call whose target is computed (getattr with a built name)


class PythonParseError(ValueError):
    """The code does not parse; the tool would fail, and nothing can be said of it."""


def python_commands(code: str, *, depth: int = 0) -> list[Command]:
    """The effects of ``code`` as shell-like commands, via ``python``."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        raise PythonParseError(f"python code does not parse: {exc}") from exc
    reader = _EffectReader(depth)
    reader.visit(_ConstantNames(tree).visit(tree))
    return reader.commands


class _ConstantNames(ast.NodeTransformer):
    """Names bound once to a literal (``p = "config/app.json"``) replaced by the literal,
    so that ``open(p, "w")`` is judged by its path."""

    def __init__(self, tree: ast.AST) -> None:
        bindings: dict[str, list[ast.expr | None]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bindings.setdefault(node.id, []).append(None)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and _literal(node.value) is not None):
                bindings[node.targets[0].id][-1] = node.value
        self.constants = {name: values[0] for name, values in bindings.items()
                          if len(values) == 1 and values[0] is not None}

    def visit_Name(self, node: ast.Name) -> ast.expr:
        value = self.constants.get(node.id)
        return ast.copy_location(value, node) if value is not None and isinstance(node.ctx, ast.Load) else node


class _EffectReader(ast.NodeVisitor):
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.aliases: dict[str, str] = {}   # local name -> dotted origin ("sp" -> "subprocess")
        self.commands: list[Command] = []
        self.loops = 0

    def _add(self, *argv: str, via: str, background: bool = False) -> None:
        self.commands.append(Command(argv=argv, via=("python " + via,), in_loop=self.loops > 0,
                                     background=background))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            self._check_module(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._check_module(module)
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def _check_module(self, module: str) -> None:
        if module.split(".")[0] in NETWORK_MODULES:
            self._add("python-network", module, via="import")

    def visit_While(self, node: ast.While) -> None:
        self._in_loop(node)

    def visit_For(self, node: ast.For) -> None:
        self._in_loop(node)

    def _in_loop(self, node: ast.AST) -> None:
        self.loops += 1
        self.generic_visit(node)
        self.loops -= 1

    def visit_Call(self, node: ast.Call) -> None:
        name = self._name(node.func)
        if name is not None:
            self._call(name, node)
        self.generic_visit(node)

    def _call(self, name: str, node: ast.Call) -> None:
        first = node.args[0] if node.args else None
        if name in SHELL_RUNNERS or (name in PROCESS_RUNNERS and _keyword_true(node, "shell")):
            self._shell(_literal_str(first), via=name)
        elif name in PROCESS_RUNNERS:
            argv = _literal_argv(first)
            self._shell(shlex.join(argv) if argv else None, via=name)
        elif name in REMOVERS or name.rsplit(".", 1)[-1] in REMOVING_METHODS:
            target = _receiver_arg(node.func) if name.startswith("Path.") else first
            self._add("rm", "-r", _literal_str(target) or DYNAMIC, via=name)
        elif name in MOVERS:
            paths = [_literal_str(arg) or DYNAMIC for arg in node.args[:2]]
            self._add("mv" if "move" in name or "rename" in name or "replace" in name else "cp", *paths, via=name)
        elif name in ("open", "io.open", "os.open", "Path.open") or name.endswith(".write_text") \
                or name.endswith(".write_bytes") or name.endswith(".read_text") or name.endswith(".read_bytes"):
            self._file(name, node)
        elif name in ("os.chmod", "os.chown"):
            mode = _literal(node.args[1]) if len(node.args) > 1 else None
            shown = format(mode, "o") if isinstance(mode, int) else "0"
            self._add(name.split(".")[-1], shown, _literal_str(first) or DYNAMIC, via=name)
        elif name in ("os.kill", "os.killpg"):
            self._add("kill", *(str(_literal(arg)) for arg in node.args), via=name)
        elif name in FORKS and self.loops:
            self._add("python-fork-loop", via=name)
        elif name in CODE_RUNNERS:
            self._code(first, via=name)
        elif name == DYNAMIC_CALL or (name in DYNAMIC_LOADERS and _literal_str(first) is None):
            self._add(DYNAMIC, via=name)

    def _shell(self, line: str | None, *, via: str) -> None:
        background = via in BACKGROUND_RUNNERS
        if line is None:
            self._add(DYNAMIC, via=via, background=background)
            return
        try:
            script = parse_script(line)
        except ShellParseError:
            self._add(DYNAMIC, line, via=via)
            return
        for command in script.commands:
            self.commands.append(Command(argv=command.argv, via=("python " + via, *command.via),
                                         redirects=command.redirects, stdin_from=command.stdin_from,
                                         in_loop=command.in_loop or self.loops > 0,
                                         background=command.background or background,
                                         function=command.function))
        for name in script.self_calling:
            self._add("python-fork-loop", name, via=via)

    def _file(self, name: str, node: ast.Call) -> None:
        if name in ("open", "io.open", "os.open"):
            path_node = node.args[0] if node.args else None
            mode_node = node.args[1] if len(node.args) > 1 else None
        else:   # Path("x").write_text(...) and the like: the path is the receiver's argument
            path_node = _receiver_arg(node.func)
            mode_node = node.args[0] if name == "Path.open" and node.args else None
        mode = (_literal_str(mode_node) if mode_node is not None else _keyword_str(node, "mode")) or "r"
        if name == "os.open":
            mode = "w"   # flags decide, and O_RDONLY is rarely what os.open is used for
        writes = ".write_" in name or bool(set(mode) & _WRITE_MODES)
        self._add("tee" if writes else "cat", _literal_str(path_node) or DYNAMIC, via=name)

    def _code(self, node: ast.expr | None, *, via: str) -> None:
        code = _literal_str(node)
        if code is None and isinstance(node, ast.Call) and self._name(node.func) in (
                "base64.b64decode", "base64.standard_b64decode", "base64.urlsafe_b64decode"):
            code = _b64_literal(node.args[0] if node.args else None)
        if code is None or self.depth >= MAX_DEPTH:
            self._add(DYNAMIC, via=via)
            return
        try:
            self.commands += python_commands(code, depth=self.depth + 1)
        except PythonParseError:
            self._add(DYNAMIC, via=via)

    def _name(self, func: ast.expr) -> str | None:
        """The dotted name a call resolves to through imports: ``sp.run`` -> ``subprocess.run``,
        ``__import__("os").system`` -> ``os.system``, ``Path(...).unlink`` -> ``Path.unlink``."""
        if isinstance(func, ast.Name):
            return self.aliases.get(func.id, func.id)
        if isinstance(func, ast.Call) and self._name(func.func) == "getattr" and len(func.args) > 1:
            # getattr(os, "system")(...) is os.system(...); with a computed name, anything.
            attr = _literal_str(func.args[1])
            base = self._name(func.args[0])
            return f"{base}.{attr}" if attr and base else DYNAMIC_CALL
        if isinstance(func, ast.Attribute):
            value = func.value
            if isinstance(value, ast.Call):
                inner = self._name(value.func)
                if inner == "__import__":
                    module = _literal_str(value.args[0] if value.args else None)
                    return f"{module}.{func.attr}" if module else None
                if inner in ("Path", "pathlib.Path", "PosixPath", "pathlib.PosixPath"):
                    return f"Path.{func.attr}"
                return None
            base = self._name(value)
            return f"{base}.{func.attr}" if base else None
        return None


def _literal(node: ast.expr | None) -> object:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _literal_str(node: ast.expr | None) -> str | None:
    value = _literal(node)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _literal_argv(node: ast.expr | None) -> list[str] | None:
    value = _literal(node)
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def _keyword_true(node: ast.Call, name: str) -> bool:
    return any(kw.arg == name and _literal(kw.value) is True for kw in node.keywords)


def _keyword_str(node: ast.Call, name: str) -> str | None:
    return next((_literal_str(kw.value) for kw in node.keywords if kw.arg == name), None)


def _receiver_arg(func: ast.expr) -> ast.expr | None:
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call) and func.value.args:
        return func.value.args[0]
    return None


def _b64_literal(node: ast.expr | None) -> str | None:
    encoded = _literal_str(node)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
