"""Semantic versions: parse MAJOR.MINOR.PATCH[-PRERELEASE] and order them."""

import re

_PATTERN = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$")


def parse(text: str) -> tuple[int, int, int, str | None]:
    match = _PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"not a semantic version: {text!r}")
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as a is lower than, equal to or higher than b."""
    a_major, a_minor, a_patch, a_pre = parse(a)
    b_major, b_minor, b_patch, b_pre = parse(b)
    core_a, core_b = (a_major, a_minor, a_patch), (b_major, b_minor, b_patch)
    if core_a != core_b:
        return -1 if core_a < core_b else 1
    if a_pre == b_pre:
        return 0
    if a_pre is None:  # a release ranks above its own pre-releases
        return 1
    if b_pre is None:
        return -1
    return -1 if a_pre < b_pre else 1


def latest(versions: list[str]) -> str:
    if not versions:
        raise ValueError("no versions given")
    best = versions[0]
    for version in versions[1:]:
        if compare(version, best) > 0:
            best = version
    return best
