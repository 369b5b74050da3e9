"""What a path names, as the policy sees it: inside the task's scope, a system location,
a device, a secret, somewhere else outside the scope, or something that cannot be known
before the command runs (a variable, a substitution)."""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class PathClass(str, Enum):
    SCOPE = "scope"
    HARMLESS = "harmless"      # /dev/null and the like: writing there changes nothing
    SYSTEM = "system"          # the system, boot, home, or a parent of the scope
    DEVICE = "device"
    SECRET = "secret"
    OUTSIDE = "outside_scope"
    NETWORK = "network"        # bash's /dev/tcp/HOST/PORT: a connection, not a file
    DYNAMIC = "dynamic"        # known only when the command runs


class PathRules(BaseModel):
    """The policy file's ``paths``: which locations are which (fnmatch globs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    home: str = "/root"
    system: tuple[str, ...]
    devices: tuple[str, ...]
    secrets: tuple[str, ...]
    secrets_outside_scope: tuple[str, ...] = ()
    harmless: tuple[str, ...]
    sockets: tuple[str, ...] = ("/dev/tcp/*", "/dev/udp/*")


class PathClassifier:
    def __init__(self, rules: PathRules, scopes: list[Path]) -> None:
        self.rules = rules
        # One compiled pattern per list: this runs for every word of every command checked.
        self._patterns = {name: _compile(getattr(rules, name))
                          for name in ("devices", "secrets", "secrets_outside_scope", "harmless", "sockets")}
        self.scopes = [posixpath.normpath(str(scope)) for scope in scopes]
        self._resolved_scopes = [os.path.realpath(scope) for scope in self.scopes]

    def absolute(self, word: str, cwd: str | None = None) -> str | None:
        """The word as an absolute, normalised path; None when it depends on the run."""
        if "$" in word or "`" in word or "\0" in word:
            return None
        if word == "~" or word.startswith("~/"):
            word = self.rules.home + word[1:]
        elif word.startswith("~"):
            word = "/home/" + word[1:]
        base = self.scopes[0]
        if cwd is not None:
            cwd_abs = self.absolute(cwd)
            if cwd_abs is None:
                return None
            base = cwd_abs
        return posixpath.normpath(posixpath.join(base, word))

    def classify(self, word: str, cwd: str | None = None) -> PathClass:
        path = self.absolute(word, cwd)
        if path is None:
            return PathClass.DYNAMIC
        if any(ch in path for ch in "*?["):
            if self._matches(path, "secrets") or (
                    not self._in_scope(path) and self._matches(path, "secrets_outside_scope")):
                return PathClass.SECRET
            # A glob counts as the directory it expands in: "/*" is everything under "/".
            prefix = re.split(r"[*?\[]", path, maxsplit=1)[0]
            path = (prefix.rstrip("/") or "/") if prefix.endswith("/") else posixpath.dirname(prefix)
        return self._classify_path(path)

    def _classify_path(self, path: str) -> PathClass:
        in_scope = self._in_scope(path)
        if self._matches(path, "secrets") or (
                not in_scope and self._matches(path, "secrets_outside_scope")):
            return PathClass.SECRET
        if in_scope:
            return PathClass.SCOPE
        if self._matches(path, "sockets"):
            return PathClass.NETWORK
        if self._matches(path, "harmless"):
            return PathClass.HARMLESS
        if self._matches(path, "devices"):
            return PathClass.DEVICE
        if self._is_system(path):
            return PathClass.SYSTEM
        return PathClass.OUTSIDE

    def _in_scope(self, path: str) -> bool:
        """Lexically inside a scope, and still inside once symlinks are followed (a link in
        the scope that points out does not make its target part of the scope)."""
        lexical = any(path == scope or path.startswith(scope.rstrip("/") + "/") for scope in self.scopes)
        if not lexical:
            return False
        real = os.path.realpath(path)
        return any(real == scope or real.startswith(scope.rstrip("/") + "/") for scope in self._resolved_scopes)

    def _is_system(self, path: str) -> bool:
        """A system location, the home directory, or a parent of the scope (removing the
        scope's parent removes the scope and its neighbours)."""
        if path == "/" or any(scope.startswith(path.rstrip("/") + "/") for scope in self.scopes):
            return True
        roots = (*self.rules.system, self.rules.home)
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def _matches(self, path: str, kind: str) -> bool:
        return self._patterns[kind].match(path) is not None


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or r"(?!)")
