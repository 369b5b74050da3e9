"""Bracket balancing for template snippets: validity, first error position, nesting depth."""

PAIRS = {")": "(", "]": "[", "}": "{"}
OPENERS = frozenset(PAIRS.values())


def first_error(text: str) -> int | None:
    """Index of the first bracket that cannot be matched, or None when balanced.
    For unclosed brackets that is the outermost one still open."""
    stack: list[tuple[str, int]] = []
    for index, char in enumerate(text):
        if char in OPENERS:
            stack.append((char, index))
        elif char in PAIRS:
            if not stack or stack[-1][0] != PAIRS[char]:
                return index
            stack.pop()
    if stack:
        return stack[0][1]
    return None


def is_balanced(text: str) -> bool:
    return first_error(text) is None


def max_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif char in PAIRS:
            depth -= 1
    return deepest
