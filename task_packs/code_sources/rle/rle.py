"""Run-length encoding of strings without digits: 'aaab' <-> '3a1b'."""


def encode(text: str) -> str:
    if not text:
        return ""
    out: list[str] = []
    run_char, run_length = text[0], 1
    for char in text[1:]:
        if char == run_char:
            run_length += 1
        else:
            out.append(f"{run_length}{run_char}")
            run_char, run_length = char, 1
    out.append(f"{run_length}{run_char}")  # the last run
    return "".join(out)


def decode(encoded: str) -> str:
    out: list[str] = []
    count = ""
    for char in encoded:
        if char.isdigit():
            count += char
            continue
        if not count:
            raise ValueError(f"missing count before {char!r}")
        out.append(char * int(count))
        count = ""
    if count:
        raise ValueError("trailing count without a character")
    return "".join(out)
