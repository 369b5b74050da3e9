"""Mistakes in ``eval``, ``collect`` and ``train`` get one clear line and exit status 2,
before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_agent.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    return exited.value.code, capsys.readouterr().err


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    path = tmp_path / "pack.jsonl"
    path.write_text(json.dumps({"id": "a", "family": "fs", "goal": "g", "setup": "", "check": "true",
                                "split": "test"}) + "\n")
    return path


def test_eval_needs_a_pack_or_swebench_instances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["eval", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "--pack FILE" in err and "--swebench FILE" in err


def test_a_bad_pack_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "family": "f", "goal": "g", "setup": "", "check": "true", "timeout_s": -1}\n')
    code, err = run_cli(["eval", "--pack", str(bad), "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "bad.jsonl:1: field 'timeout_s'" in err and "Traceback" not in err


def test_a_missing_pack_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["eval", "--pack", str(tmp_path / "none.jsonl"), "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "cannot read task pack" in err


def test_a_selection_that_matches_nothing_says_so(tmp_path: Path, pack: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["collect", "--pack", str(pack), "--out", str(tmp_path / "t"), "--data-dir",
                         str(tmp_path)], capsys)   # collect defaults to the train split; the pack has none
    assert code == 2 and "no tasks in" in err and "--split train" in err


@pytest.mark.parametrize("flag", ["--limit", "--per-family"])
def test_counts_must_be_positive(tmp_path: Path, pack: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    code, err = run_cli(["eval", "--pack", str(pack), flag, "0", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and f"{flag} must be at least 1" in err


def test_a_missing_playbook_is_named(tmp_path: Path, pack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["eval", "--pack", str(pack), "--playbook", str(tmp_path / "pb.jsonl"), "--data-dir",
                         str(tmp_path)], capsys)
    assert code == 2 and "pb.jsonl: no such file" in err


def test_swebench_wants_an_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["eval", "--swebench", str(tmp_path / "i.jsonl"), "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "--out PREDICTIONS.jsonl" in err


def test_train_sft_names_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The trainer's own options follow its name; the command's own (--data-dir) come before it.
    code, err = run_cli(["train", "--data-dir", str(tmp_path), "sft", "--data", str(tmp_path / "sft.jsonl"),
                         "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and "sft.jsonl: no such file" in err


def test_train_ebm_names_a_missing_trace_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["train", "ebm", "--traces", str(tmp_path / "ebm.jsonl"), "--out", str(tmp_path / "e.pt")],
                        capsys)
    assert code == 2 and "ebm.jsonl" in err and "Traceback" not in err


def test_train_sft_names_a_device_torch_does_not_know(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "g"}], "completion": "{}"}\n')
    code, err = run_cli(["train", "--data-dir", str(tmp_path), "sft", "--data", str(data), "--out", str(tmp_path / "a"),
                         "--device", "tpu9"], capsys)
    assert code == 2 and "--device tpu9" in err and "Traceback" not in err
