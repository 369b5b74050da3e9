"""Mistakes at the command line get one clear line and exit status 2, never a traceback."""

import pytest

from hybrid_agent.bus.embedded import free_port
from hybrid_agent.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    return exited.value.code, capsys.readouterr().err


def test_submit_without_a_running_api_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HA_API_PORT", str(free_port()))
    code, err = run_cli(["submit", "do it", "--token", "t", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "cannot reach the API" in err and "Traceback" not in err


def test_submit_without_a_token_says_where_to_get_one(tmp_path, capsys):
    code, err = run_cli(["submit", "do it", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "no token" in err and "admin.token" in err


def test_a_bad_setting_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HA_MAX_STEPS", "many")
    code, err = run_cli(["submit", "x", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "HA_MAX_STEPS" in err


@pytest.mark.parametrize("command", ["api", "worker", "router"])
def test_components_need_a_nats_url(tmp_path, capsys, monkeypatch, command):
    monkeypatch.delenv("HA_NATS_URL", raising=False)
    code, err = run_cli([command, "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "HA_NATS_URL" in err


def test_a_broken_policy_stops_up_before_anything_starts(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: x\n")
    monkeypatch.setenv("HA_POLICY", str(bad))
    code, err = run_cli(["up", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and str(bad) in err and "Traceback" not in err
    assert not (tmp_path / "jetstream").exists()   # no NATS was started


def test_a_bad_queue_name_for_a_worker_names_the_setting_and_the_queue(tmp_path, capsys):
    code, err = run_cli(["worker", "--queues", "ci,Bad Queue", "--data-dir", str(tmp_path)], capsys)
    assert code == 2 and "HA_WORKER_QUEUES" in err and "'Bad Queue'" in err and "Traceback" not in err


def test_worker_options_reach_the_settings(tmp_path):
    from hybrid_agent.cli import build_parser, load_settings

    args = build_parser().parse_args(["worker", "--queues", "ci, default", "--concurrency", "4",
                                      "--data-dir", str(tmp_path)])
    settings = load_settings(args)
    assert settings.worker_queues == ["ci", "default"] and settings.worker_concurrency == 4
