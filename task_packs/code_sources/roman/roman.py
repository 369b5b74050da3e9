"""Roman numerals: the integers 1..3999 to and from their canonical Roman form."""

SYMBOLS = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def to_roman(number: int) -> str:
    if not 0 < number < 4000:
        raise ValueError(f"{number} is outside 1..3999")
    out = []
    for value, symbol in SYMBOLS:
        count, number = divmod(number, value)
        out.append(symbol * count)
    return "".join(out)


def from_roman(text: str) -> int:
    """The value of a canonical numeral; 'IIII' and other non-canonical forms are rejected."""
    total = 0
    for i, char in enumerate(text):
        value = VALUES[char]
        if i + 1 < len(text) and VALUES[text[i + 1]] > value:
            total -= value  # a smaller symbol before a larger one subtracts (IV, XC)
        else:
            total += value
    if to_roman(total) != text:
        raise ValueError(f"not a canonical numeral: {text!r}")
    return total
