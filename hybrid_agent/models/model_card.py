"""What the EBM and HRM training commands share around the training itself: reading the
trace files (counting what came from each, and turning bad input into one clear line),
the command line that reproduces a model, and writing its model card and metrics JSON
next to the checkpoint.

Nothing that changes from run to run (a date, a duration) goes into either file: the same
command on the same data writes the same card and the same metrics, so a retrained model
that differs shows up in a diff."""

from __future__ import annotations

import json
import logging
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
CARD_FILE = "MODEL_CARD.md"


class InputError(ValueError):
    """Training input that cannot be used; ``main`` reports it as one ``error:`` line."""


@dataclass(frozen=True)
class TraceFile:
    path: Path
    count: int       # groups (EBM) or steps (HRM) read from it


def read_traces(paths: Sequence[Path], loader: Callable[[Path], list[T]]) -> tuple[list[T], list[TraceFile]]:
    """Everything ``loader`` reads from each file, in order, and how much came from each.
    A missing file, a line that is not JSON, or one the loader rejects is an InputError
    that names the file (and the line, where it is known)."""
    items: list[T] = []
    files = []
    for path in paths:
        _check_jsonl(path)
        try:
            loaded = loader(path)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # The HRM loader names file:line itself; the EBM loader names neither.
            raise InputError(str(exc) if str(path) in str(exc) else f"{path}: not a trace file: {exc!r}") from exc
        items += loaded
        files.append(TraceFile(path, len(loaded)))
    return items, files


def _check_jsonl(path: Path) -> None:
    """Raises InputError at the first line that is not JSON: the loaders' own JSON errors
    count lines within one line, which misleads."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as exc:
                        raise InputError(f"{path}:{number}: not JSON: {exc}") from exc
    except OSError as exc:
        raise InputError(f"cannot read traces {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text: {exc}") from exc


def show_progress(logger: logging.Logger) -> None:
    """Lets the trainer's INFO progress lines reach the console without undoing a caller's
    logging: ``basicConfig`` adds a handler only where the caller added none, and the
    trainer's own logger passes INFO even under the CLI's default WARNING root (training
    progress is that command's output), unless the caller set that logger's level."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def command(trainer: str, argv: Sequence[str]) -> str:
    """The shell line that reruns this training through the CLI."""
    return shlex.join(["hybrid-agent", "train", trainer, *argv])


def card_path(out: Path, card: Path | None) -> Path:
    return card or out.with_name(CARD_FILE)


def metrics_path(out: Path) -> Path:
    """``<out stem>.metrics.json`` next to the checkpoint."""
    return out.with_name(f"{out.stem}.metrics.json")


def write(card: Path, text: str, metrics_file: Path, metrics: dict[str, Any]) -> None:
    """Writes the card and the metrics; NaN (a metric with nothing to measure) becomes
    null, since strict JSON readers refuse NaN."""
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(text, encoding="utf-8")
    metrics_file.write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def number(value: float, digits: int = 3) -> str:
    """A metric for the card: "n/a" where there was nothing to measure (NaN)."""
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def traces_lines(files: Sequence[TraceFile], unit: str) -> str:
    """The card's list of trace files, one bullet each with its count."""
    if not files:
        return "- Traces (`--traces`): none."
    return "\n".join(f"- Traces: `{f.path}`: {f.count} {unit}." for f in files)
