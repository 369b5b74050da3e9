"""Plain-text layout for terminal output: greedy word wrap, indentation, truncation."""


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most width characters; a word longer than width gets a line of its own."""
    if width < 1:
        raise ValueError("width must be positive")
    lines: list[str] = []
    current = ""
    for word in text.split():
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current += " " + word
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def indent(lines: list[str], prefix: str = "    ") -> list[str]:
    """Prefix every non-empty line, so blank lines carry no trailing spaces."""
    return [prefix + line if line else line for line in lines]


def truncate(text: str, limit: int, ellipsis: str = "...") -> str:
    """text cut to at most limit characters, ending in the ellipsis when it was cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis
