"""Tool-call schemas: each tool's arguments as a pydantic model; the union of the allowed
tools is the JSON schema that constrains decoding. Every string is bounded when a call is
validated. In the decoding schema, the strings of ``NEEDS_ESCAPES`` drop their bound:
xgrammar (0.2.8) forbids quotes, backslashes and newlines inside a string that has
``maxLength``, and commands, code and file contents need them; the LLM's token budget
bounds them there. Numbers keep both bounds, so that a schema without such strings has
a longest call to size the budget by."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PATH_MAX = 120
CMD_MAX = 200
CONTENT_MAX = 400
CODE_MAX = 400
SUMMARY_MAX = 120
LINE_MAX = 10_000_000
TIMEOUT_MAX_S = 3600      # the runner caps it lower, at its configured maximum


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _timeout() -> Any:
    return Field(default=None, ge=1, le=TIMEOUT_MAX_S, description="seconds; the configured default when absent")


class ShellArgs(_Args):
    cmd: str = Field(min_length=1, max_length=CMD_MAX)
    timeout_s: int | None = _timeout()


class PythonArgs(_Args):
    code: str = Field(min_length=1, max_length=CODE_MAX)
    timeout_s: int | None = _timeout()


class ReadFileArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)
    start_line: int | None = Field(default=None, ge=1, le=LINE_MAX, description="first line, from 1")
    end_line: int | None = Field(default=None, ge=1, le=LINE_MAX, description="last line, included")


class WriteFileArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)
    content: str = Field(max_length=CONTENT_MAX)


class EditArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)
    old: str = Field(min_length=1, max_length=CONTENT_MAX, description="exact text that occurs once")
    new: str = Field(max_length=CONTENT_MAX)


class ListDirArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)


class RunTestsArgs(_Args):
    cmd: str | None = Field(default=None, min_length=1, max_length=CMD_MAX,
                            description="the task's test command when absent")
    timeout_s: int | None = _timeout()


class FinishArgs(_Args):
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    success: bool


TOOL_ARGS: dict[str, type[_Args]] = {
    "shell": ShellArgs,
    "python": PythonArgs,
    "read_file": ReadFileArgs,
    "write_file": WriteFileArgs,
    "edit": EditArgs,
    "list_dir": ListDirArgs,
    "run_tests": RunTestsArgs,
    "finish": FinishArgs,
}
# Commands and code count as changing state: they may write anywhere in the workspace.
DEFAULT_TEST_CMD = "python3 -m pytest -q"   # what run_tests runs when neither the call nor HA_TEST_CMD says
STATE_CHANGING = frozenset({"shell", "python", "write_file", "edit", "run_tests"})
NEEDS_ESCAPES = frozenset({"cmd", "code", "content", "old", "new"})


class ToolCall(BaseModel):
    """A validated call: ``{"tool": NAME, "args": {...}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tool: str
    args: dict[str, Any]

    def compact(self) -> str:
        return self.model_dump_json()


class InvalidToolCall(ValueError):
    """The model's output is not a call of an allowed tool with valid arguments."""


def validate_call(raw: Any, *, tools: frozenset[str] | None = None) -> ToolCall:
    """Validate a parsed call; raises InvalidToolCall naming what is wrong."""
    if not isinstance(raw, dict) or set(raw) != {"tool", "args"}:
        raise InvalidToolCall('a call is an object with exactly "tool" and "args"')
    name = raw["tool"]
    allowed = tools if tools is not None else frozenset(TOOL_ARGS)
    if name not in TOOL_ARGS or name not in allowed:
        raise InvalidToolCall(f"unknown or disallowed tool {name!r}; allowed: {sorted(allowed)}")
    try:
        args = TOOL_ARGS[name].model_validate(raw["args"])
    except ValidationError as exc:
        raise InvalidToolCall(f"{name} args: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
    # An optional argument given as null is the same call as one without it.
    return ToolCall(tool=name, args=args.model_dump(exclude_none=True))


def is_valid_call(raw: Any) -> bool:
    try:
        validate_call(raw)
    except InvalidToolCall:
        return False
    return True


def call_schema(tools: frozenset[str] | None = None) -> dict[str, Any]:
    """The JSON schema of one call of any of ``tools`` (all when None), tool name first."""
    names = [name for name in TOOL_ARGS if tools is None or name in tools]
    if not names:
        raise ValueError("call_schema needs at least one tool")
    variants = []
    for name in names:
        args = TOOL_ARGS[name].model_json_schema()
        args.pop("title", None)
        for key, prop in args.get("properties", {}).items():
            prop.pop("title", None)
            if key in NEEDS_ESCAPES:
                for variant in [prop, *prop.get("anyOf", [])]:   # an optional string is anyOf [string, null]
                    variant.pop("maxLength", None)
        variants.append({
            "type": "object",
            "properties": {"tool": {"const": name}, "args": args},
            "required": ["tool", "args"],
            "additionalProperties": False,
        })
    return variants[0] if len(variants) == 1 else {"anyOf": variants}
