"""Tool-call schemas: each tool's arguments as a pydantic model; the union of the allowed
tools is the JSON schema that constrains decoding. Every string is bounded when a call is
validated. In the decoding schema, ``cmd`` and ``content`` drop their bound: xgrammar
(0.2.8) forbids quotes, backslashes and newlines inside a string that has ``maxLength``,
and shell commands and file contents need them; the LLM's token budget bounds them there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PATH_MAX = 120
CMD_MAX = 200
CONTENT_MAX = 400
SUMMARY_MAX = 120


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShellArgs(_Args):
    cmd: str = Field(min_length=1, max_length=CMD_MAX)


class ReadFileArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)


class WriteFileArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)
    content: str = Field(max_length=CONTENT_MAX)


class ListDirArgs(_Args):
    path: str = Field(min_length=1, max_length=PATH_MAX)


class FinishArgs(_Args):
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX)
    success: bool


TOOL_ARGS: dict[str, type[_Args]] = {
    "shell": ShellArgs,
    "read_file": ReadFileArgs,
    "write_file": WriteFileArgs,
    "list_dir": ListDirArgs,
    "finish": FinishArgs,
}
STATE_CHANGING = frozenset({"shell", "write_file"})
NEEDS_ESCAPES = frozenset({"cmd", "content"})


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
    return ToolCall(tool=name, args=args.model_dump())


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
                prop.pop("maxLength", None)
        variants.append({
            "type": "object",
            "properties": {"tool": {"const": name}, "args": args},
            "required": ["tool", "args"],
            "additionalProperties": False,
        })
    return variants[0] if len(variants) == 1 else {"anyOf": variants}
