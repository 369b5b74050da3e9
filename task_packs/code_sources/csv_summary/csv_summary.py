"""CSV summaries: numeric column statistics and per-group totals from CSV text.
Blank cells mean "no value": they are left out of statistics and count as 0 in totals."""

import csv
import io


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def column_stats(rows: list[dict[str, str]], column: str) -> dict[str, float]:
    values = [float(row[column]) for row in rows if row[column].strip()]
    if not values:
        return {"count": 0, "sum": 0.0, "mean": 0.0, "min": 0.0, "max": 0.0}
    return {"count": len(values), "sum": sum(values), "mean": sum(values) / len(values),
            "min": min(values), "max": max(values)}


def group_totals(rows: list[dict[str, str]], key: str, column: str) -> dict[str, float]:
    """Sum of `column` per value of `key`, keys in sorted order."""
    totals: dict[str, float] = {}
    for row in rows:
        totals[row[key]] = totals.get(row[key], 0.0) + float(row[column] or 0)
    return dict(sorted(totals.items()))
