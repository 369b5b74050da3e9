"""Carrying out one tool call in the task's workspace. A call that fails (a refused path,
a missing file, a non-zero exit) is an observation the model reads and reacts to, never
an exception (as in mini-swe-agent)."""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from hybrid_agent.agents.sandbox import HeadTailBuffer, Sandbox
from hybrid_agent.policies.tool_schema import (
    DEFAULT_TEST_CMD,
    LINE_MAX,
    STATE_CHANGING,
    TOOL_ARGS,
    EditArgs,
    FinishArgs,
    ListDirArgs,
    PythonArgs,
    ReadFileArgs,
    RunTestsArgs,
    ShellArgs,
    ToolCall,
    WriteFileArgs,
)

_NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class Observation:
    ok: bool
    output: str
    exit_code: int | None = None
    timed_out: bool = False
    changed: bool = False      # whether the call may have changed state

    def render(self) -> str:
        """The observation as the model reads it."""
        body = self.output or "(no output)"
        return body if self.exit_code is None else f"exit={self.exit_code}\n{body}"


class _ToolFailure(Exception):
    """A call that cannot be carried out; the message is what the model reads."""


class ToolRunner:
    """Runs calls against one workspace: file tools directly, confined to the workspace;
    commands (shell, python, run_tests) through the sandbox, in the workspace. A call
    may ask for a timeout other than ``timeout_s``, up to ``max_timeout_s`` (by default
    ``timeout_s``: a call may only lower it)."""

    def __init__(self, workspace: Path, sandbox: Sandbox, timeout_s: float, max_output_chars: int, *,
                 max_timeout_s: float | None = None, test_cmd: str = DEFAULT_TEST_CMD) -> None:
        self._workspace = workspace.resolve()
        self._sandbox = sandbox
        self._timeout_s = timeout_s
        self._max_timeout_s = max_timeout_s or timeout_s
        self._max_output_chars = max_output_chars
        self._test_cmd = test_cmd

    @property
    def workspace(self) -> Path:
        return self._workspace

    def for_workspace(self, workspace: Path) -> ToolRunner:
        """The same runner (sandbox, limits, test command) on another workspace: trace
        collection tries candidates in scratch copies."""
        return ToolRunner(workspace, self._sandbox, self._timeout_s, self._max_output_chars,
                          max_timeout_s=self._max_timeout_s, test_cmd=self._test_cmd)

    @property
    def isolation(self) -> str:
        """What isolates this runner's commands, for the task's record ("bwrap", "rlimit",
        with what is missing where the host could not provide it)."""
        return self._sandbox.isolation

    def run(self, call: ToolCall) -> Observation:
        try:
            return self._dispatch(_validated_args(call))
        except _ToolFailure as exc:
            return Observation(ok=False, output=f"error: {exc}")
        except OSError as exc:
            return Observation(ok=False, output=f"error: {exc}", changed=call.tool in STATE_CHANGING)

    def _dispatch(self, args: BaseModel) -> Observation:
        match args:
            case ShellArgs():
                return self._command(["/bin/bash", "-c", args.cmd], args.timeout_s)
            case PythonArgs():
                return self._command(["python3", "-c", args.code], args.timeout_s)
            case RunTestsArgs():
                return self._command(["/bin/bash", "-c", args.cmd or self._test_cmd], args.timeout_s)
            case ReadFileArgs():
                return self._read_file(args)
            case WriteFileArgs():
                return self._write_file(args)
            case EditArgs():
                return self._edit(args)
            case ListDirArgs():
                return self._list_dir(args)
            case FinishArgs():
                return Observation(ok=True, output=args.summary)
        raise _ToolFailure(f"this runner does not carry out {type(args).__name__}")

    def _command(self, argv: list[str], timeout_s: int | None) -> Observation:
        timeout = min(timeout_s or self._timeout_s, self._max_timeout_s)
        result = self._sandbox.run(argv, cwd=self._workspace, timeout_s=timeout)
        if result.timed_out:
            output = f"error: timed out, killed after {timeout:g} s\n{result.output}"
        elif result.exit_code is None:
            output = f"error: {result.output}"
        else:
            output = result.output
        # A failed or killed command may have changed things before it stopped.
        return Observation(ok=result.exit_code == 0, output=output, exit_code=result.exit_code,
                           timed_out=result.timed_out, changed=True)

    def _read_file(self, args: ReadFileArgs) -> Observation:
        target = self._regular_file(args.path)
        if args.start_line is None and args.end_line is None:
            return Observation(ok=True, output=self._read_ends(target))
        return Observation(ok=True, output=self._read_lines(target, args))

    def _read_ends(self, target: Path) -> str:
        limit = self._max_output_chars
        buffer = HeadTailBuffer(limit)
        with target.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            buffer.feed(file.read(limit))
            if size > 2 * limit:
                # Only both ends are shown, so a large log need not be read through.
                buffer.skip(size - 2 * limit)
                file.seek(size - limit)
            buffer.feed(file.read(limit))
        return buffer.text()[0]

    def _read_lines(self, target: Path, args: ReadFileArgs) -> str:
        """Lines ``start_line`` to ``end_line``, both counted from 1 and included; an end
        past the last line reads to the end, as asking for "the rest" usually means."""
        start, end = args.start_line or 1, args.end_line or LINE_MAX
        if end < start:
            raise _ToolFailure(f"end_line {end} is before start_line {start}")
        buffer = HeadTailBuffer(self._max_output_chars)
        count = 0
        with target.open("rb") as file:
            for count, line in enumerate(file, start=1):
                if count > end:
                    break
                if count >= start:
                    buffer.feed(line)
        if count < start:
            raise _ToolFailure(f"start_line {start} is past the end of {args.path} ({count} lines)")
        return buffer.text()[0]

    def _write_file(self, args: WriteFileArgs) -> Observation:
        target = self._resolve(args.path)
        if target.is_dir():
            raise _ToolFailure(f"is a directory: {args.path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = args.content.encode()
        _write_atomically(target, data)
        return Observation(ok=True, output=f"wrote {len(data)} bytes to {args.path}", changed=True)

    def _edit(self, args: EditArgs) -> Observation:
        """Replace the one occurrence of ``old``; bytes, so that any encoding survives."""
        target = self._regular_file(args.path)
        data = target.read_bytes()
        old = args.old.encode()
        count = data.count(old)
        if count == 0:
            raise _ToolFailure(f"old text not found in {args.path}; it must match the file exactly")
        if count > 1:
            raise _ToolFailure(f"old text occurs {count} times in {args.path}; "
                               "include more of the text around it so that it occurs once")
        at = data.index(old)
        _write_atomically(target, data[:at] + args.new.encode() + data[at + len(old):])
        line = data.count(b"\n", 0, at) + 1
        return Observation(ok=True, output=f"edited {args.path} at line {line}", changed=True)

    def _list_dir(self, args: ListDirArgs) -> Observation:
        target = self._resolve(args.path)
        if not target.exists():
            raise _ToolFailure(f"no such directory: {args.path}")
        if not target.is_dir():
            raise _ToolFailure(f"not a directory: {args.path}")
        with os.scandir(target) as entries:
            lines = [_describe(entry) for entry in sorted(entries, key=lambda entry: entry.name)]
        buffer = HeadTailBuffer(self._max_output_chars)
        buffer.feed("\n".join(lines).encode() if lines else b"(empty directory)")
        text, _ = buffer.text()
        return Observation(ok=True, output=text)

    def _regular_file(self, path: str) -> Path:
        target = self._resolve(path)
        if not target.exists():
            raise _ToolFailure(f"no such file: {path}")
        if not target.is_file():   # a FIFO or device would block or never end
            raise _ToolFailure(f"not a regular file: {path}")
        return target

    def _resolve(self, path: str) -> Path:
        """``path``, relative to the workspace unless absolute, with every symlink followed
        (for a file not yet created, those of its parents); refused outside the workspace."""
        try:
            target = (self._workspace / path).resolve()
        except (RuntimeError, ValueError) as exc:   # a symlink loop; a NUL byte in the path
            raise _ToolFailure(f"invalid path {path!r}: {exc}") from None
        if not target.is_relative_to(self._workspace):
            raise _ToolFailure(f"path outside the workspace ({self._workspace}): {path}")
        return target


def _validated_args(call: ToolCall) -> BaseModel:
    """The call's arguments as their schema's model; validated again because a ToolCall
    can be built without ``validate_call``."""
    schema = TOOL_ARGS.get(call.tool)
    if schema is None:
        raise _ToolFailure(f"unknown tool {call.tool!r}; allowed: {sorted(TOOL_ARGS)}")
    try:
        return schema.model_validate(call.args)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _ToolFailure(f"{call.tool} args: {first['loc']}: {first['msg']}") from None


def _write_atomically(target: Path, data: bytes) -> None:
    """Readers see the old content or the new, never part of it. A replaced file keeps its
    mode: the temp file is created 0600, which would drop an executable bit. Not fsynced:
    like the store (SQLite's synchronous=NORMAL), the snapshots (rollback/objects.py) and
    every write of the shell tool, this survives a killed process, not a power cut; an fsync
    made each call wait for the disk (0.7-0.9 ms on this machine's, five times the write)."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _NEW_FILE_MODE
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise


def _describe(entry: os.DirEntry[str]) -> str:
    """One line of a listing, in the manner of ``ls -p``: directories end in a slash,
    files show their size, symlinks their target (which may lie outside the workspace)."""
    if entry.is_symlink():
        return f"{entry.name} -> {os.readlink(entry.path)}"
    if entry.is_dir():
        return f"{entry.name}/"
    if entry.is_file():
        return f"{entry.name}  {entry.stat().st_size} bytes"
    return entry.name
