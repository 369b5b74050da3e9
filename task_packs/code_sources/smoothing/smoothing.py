"""Time-series smoothing for metrics charts: moving averages and percent change."""


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of every full window of `window` consecutive values."""
    if window < 1:
        raise ValueError("window must be at least 1")
    return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]


def ema(values: list[float], alpha: float = 0.5) -> list[float]:
    """Exponential moving average; alpha is the weight of the newest value."""
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]")
    result: list[float] = []
    for value in values:
        result.append(value if not result else alpha * value + (1 - alpha) * result[-1])
    return result


def percent_change(old: float, new: float) -> float:
    """Change from old to new in percent of old's magnitude (so -50 -> -25 is +50%)."""
    if old == 0:
        raise ZeroDivisionError("percent change from zero is undefined")
    return (new - old) / abs(old) * 100
