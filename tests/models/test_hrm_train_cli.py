"""``hybrid-agent train hrm``: the HRM trainer's main as a complete command. It writes a
model card and a metrics file that say what went in (synthetic counts, each trace file and
its steps) and what came out, the same on every run with the same seed; bad input is one
``error:`` line and exit status 2, never a traceback. Toy sizes and the fake encoder."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import torch

from hybrid_agent.models.hrm.train import main

TINY_RUN = ["--encoder", "fake-hash", "--synthetic", "200", "--held-out", "100", "--hidden", "16",
            "--steps", "2", "--batch-size", "8", "--segments", "2"]


def held_out(goal: str) -> bool:
    """The trainer's split of trace steps (train._held_out)."""
    return zlib.crc32(goal.encode()) % 5 == 0


def goals(held: bool, n: int) -> list[str]:
    every = (f"Repair the nightly job number {i}" for i in range(1000))
    return [g for g in every if held_out(g) == held][:n]


def trace_step(goal: str, expert: str | None) -> dict:
    """A step as `hybrid-agent collect` writes it, its expert any proposer's name."""
    return {"state": {"goal": goal, "task_kind": "user", "step": 1, "max_steps": 10,
                      "recent": [{"tool": "run_tests", "ok": False, "exit_code": 1, "error_class": "AssertionError"}]},
            "next_tool": "edit", "expert": expert, "failed_soon": False}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_run_on_traces_writes_a_card_and_metrics_that_name_them(tmp_path: Path) -> None:
    experts = ["llm", "code_edit", "retriever", None]
    rows = [trace_step(g, experts[i % 4]) for i, g in enumerate(goals(False, 4) + goals(True, 2))]
    traces = write_jsonl(tmp_path / "hrm.jsonl", rows)
    out = tmp_path / "models" / "hrm.pt"
    assert main(["--out", str(out), "--traces", str(traces), *TINY_RUN]) == 0

    card = (out.parent / "MODEL_CARD.md").read_text(encoding="utf-8")
    saved = json.loads((out.parent / "hrm.metrics.json").read_text(encoding="utf-8"))
    examples = saved["data"]["examples"]
    assert examples["trace_files"] == [{"path": str(traces), "examples": 6}]
    assert (examples["train_traces"], examples["held_out_traces"]) == (4, 2)
    assert f"`{traces}`: 6 steps" in card and "2 held out, 4 trained on" in card
    assert f"hybrid-agent train hrm --out {out} --traces {traces}" in card
    assert saved["model"]["experts"] == ["llm", "code_edit", "playbook", "retriever"]
    assert saved["model"]["bytes"] == out.stat().st_size
    assert {"tool_acc", "expert_acc", "risk_auc", "mean_segments", "halted_at_1", "majority_tool_acc"} \
        <= set(saved["metrics"])
    # The held-out traces alone: one risk label only, so no AUC (null, not NaN, in JSON).
    assert saved["metrics"]["traces"]["risk_auc"] is None and "held-out traces" in card


def test_the_same_seed_gives_the_same_weights_card_and_metrics(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name / "hrm.pt"
        assert main(["--out", str(out), "--seed", "5", *TINY_RUN]) == 0
        metrics = json.loads((out.parent / "hrm.metrics.json").read_text(encoding="utf-8"))
        runs.append((torch.load(out, weights_only=True)["state_dict"],
                     # Only the path in the recorded command differs.
                     (out.parent / "MODEL_CARD.md").read_text(encoding="utf-8").replace(str(out), "OUT"),
                     metrics["metrics"]))
    (weights_a, card_a, metrics_a), (weights_b, card_b, metrics_b) = runs
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert card_a == card_b and metrics_a == metrics_b
    assert "seed 5" in card_a


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read traces {path}"),
    ("{}\n\nnot json\n", "{path}:3: not JSON"),
    ('{"state": {"goal": "g"}, "next_tool": "shell", "failed_soon": false}\n', "{path}:1: not an HRM trace step"),
])
def test_bad_traces_are_one_error_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    content: str | None, message: str) -> None:
    path = tmp_path / "traces.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["--out", str(tmp_path / "hrm.pt"), "--traces", str(path), *TINY_RUN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(path=path)) and err.count("\n") == 1, err
    assert not (tmp_path / "hrm.pt").exists()
