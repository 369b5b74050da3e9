"""Temperature conversion between Celsius, Fahrenheit and Kelvin, and display formatting."""

ABSOLUTE_ZERO_C = -273.15


def c_to_f(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def f_to_c(fahrenheit: float) -> float:
    return (fahrenheit - 32) * 5 / 9


def c_to_k(celsius: float) -> float:
    if celsius < ABSOLUTE_ZERO_C:
        raise ValueError(f"{celsius} C is below absolute zero")
    return celsius - ABSOLUTE_ZERO_C


def convert(value: float, source: str, target: str) -> float:
    """Convert between the scales 'C', 'F' and 'K', going through Celsius."""
    to_c = {"C": lambda v: v, "F": f_to_c, "K": lambda v: v + ABSOLUTE_ZERO_C}
    from_c = {"C": lambda v: v, "F": c_to_f, "K": c_to_k}
    if source not in to_c or target not in from_c:
        raise ValueError(f"unknown scale: {source!r} or {target!r}")
    return from_c[target](to_c[source](value))


def describe(value: float, scale: str = "C") -> str:
    return f"{value:.1f} °{scale}"
