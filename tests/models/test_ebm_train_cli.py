"""``hybrid-agent train ebm``: the EBM trainer's main as a complete command. It writes a
model card and a metrics file that say what went in (synthetic counts, each trace file and
its groups) and what came out, the same on every run with the same seed; bad input is one
``error:`` line and exit status 2, never a traceback."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import torch

from hybrid_agent.models.ebm.train import HELD_OUT_TRACES, main

TINY_RUN = ["--synthetic", "60", "--held-out", "40", "--epochs", "1"]


def shell(cmd: str) -> dict:
    return {"tool": "shell", "args": {"cmd": cmd}}


def held_out(goal: str) -> bool:
    """The trainer's split of trace groups (data.split_traces)."""
    return zlib.crc32(goal.encode()) % 1000 < HELD_OUT_TRACES * 1000


def goals(held: bool, n: int) -> list[str]:
    """``n`` goals that land on the held-out side, or on the training side."""
    every = (f"Fix the failing check number {i} in the service." for i in range(1000))
    return [g for g in every if held_out(g) == held][:n]


def trace_group(goal: str) -> dict:
    """A group as `hybrid-agent collect` writes it: proposer kinds, a perturbed near miss,
    a candidate that was not run (outcome null)."""
    return {"goal": goal, "recent": ["$ ls", "app.log report.csv"], "failed_calls": [], "tests_failing": True,
            "candidates": [
                {"text": "", "call": shell("wc -l app.log"), "mean_logprob": -0.3, "policy": "allow",
                 "error": None, "outcome": 1, "kind": "llm"},
                {"text": "", "call": {"tool": "edit", "args": {"path": "a.py", "old": "x", "new": "y"}},
                 "mean_logprob": -0.6, "policy": "allow", "error": None, "outcome": None, "kind": "code_edit"},
                {"text": "", "call": shell("wc -l ap.log"), "mean_logprob": -2.0, "policy": "allow",
                 "error": None, "outcome": 0, "kind": "perturbed:wrong_path"},
                {"text": "", "call": shell("ls"), "mean_logprob": -0.9, "policy": "allow",
                 "error": None, "outcome": 0, "kind": "playbook"},
            ]}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_run_on_traces_writes_a_card_and_metrics_that_name_them(tmp_path: Path) -> None:
    traces = write_jsonl(tmp_path / "ebm.jsonl", [trace_group(g) for g in goals(False, 5) + goals(True, 4)])
    out = tmp_path / "models" / "ebm.pt"
    argv = ["--out", str(out), "--traces", str(traces), *TINY_RUN]
    assert main(argv) == 0

    card = (out.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    saved = json.loads((out.parent / "ebm.metrics.json").read_text(encoding="utf-8"))
    assert saved["data"]["trace_files"] == [{"path": str(traces), "groups": 9}]
    assert (saved["data"]["train_trace_groups"], saved["data"]["held_out_trace_groups"]) == (5, 4)
    assert (saved["data"]["train_groups"], saved["data"]["test_trace_groups"]) == (65, 2)
    assert f"`{traces}`: 9 groups" in card
    assert "4 held out, 5 trained on" in card
    assert f"hybrid-agent train ebm --out {out} --traces {traces}" in card
    # Measured on the trace groups alone as well, against the LLM's ranking of them.
    assert saved["metrics"]["test_traces"]["groups"] == 2 and "EBM, trace groups only" in card
    assert {"auc", "top1", "ece_before", "ece_after"} <= set(saved["metrics"]["test"])
    assert {"auc", "top1"} <= set(saved["metrics"]["llm_only_test"])
    assert saved["model"]["parameters"] > 0 and saved["model"]["bytes"] == out.stat().st_size
    assert "perturbed:wrong_path" in saved["metrics"]["test"]["beaten_by_kind"]


def test_the_same_seed_gives_the_same_weights_card_and_metrics(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name / "ebm.pt"
        card = tmp_path / name / "card.md"
        assert main(["--out", str(out), "--card", str(card), "--seed", "3", *TINY_RUN]) == 0
        metrics = json.loads((out.parent / "ebm.metrics.json").read_text(encoding="utf-8"))
        runs.append((torch.load(out, weights_only=True)["state_dict"],
                     # Only the paths in the recorded command differ.
                     card.read_text(encoding="utf-8").replace(str(tmp_path / name), "RUN"), metrics["metrics"]))
    (weights_a, card_a, metrics_a), (weights_b, card_b, metrics_b) = runs
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert card_a == card_b and metrics_a == metrics_b
    assert "seed 3" in card_a


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read traces {path}"),
    ('{"goal": "x", "candidates": []}\n{"goal": \n', "{path}:2: not JSON"),
    ('{"goal": "no candidates"}\n', "{path}:1: not an EBM trace group: KeyError('candidates')"),
])
def test_bad_traces_are_one_error_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    content: str | None, message: str) -> None:
    path = tmp_path / "traces.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["--out", str(tmp_path / "ebm.pt"), "--traces", str(path), *TINY_RUN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(path=path)) and err.count("\n") == 1, err
    assert not (tmp_path / "ebm.pt").exists()
