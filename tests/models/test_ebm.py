"""The energy-based reranker: (state, candidate call) -> energy, lower is better; hard
features with named slots; listwise InfoNCE plus a logistic term; near-miss negatives;
calibration of energy to P(success); the reranker the agent loop calls, neutral (the
LLM's own ranking) until a trained checkpoint exists."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybrid_agent.models.ebm import calibration, reranker
from hybrid_agent.models.ebm.data import HELD_NAMES, TRAIN_NAMES, Group, load_traces, synthetic_groups
from hybrid_agent.models.ebm.features import (
    FEATURES,
    CandidateView,
    StateView,
    batch,
    encode,
    hard_features,
)
from hybrid_agent.models.ebm.losses import ebm_loss, infonce, logistic, pad_groups
from hybrid_agent.models.ebm.model import EBMConfig, EnergyModel
from hybrid_agent.models.ebm.negatives import KINDS, near_misses
from hybrid_agent.models.ebm.reranker import (
    EBMError,
    EnergyReranker,
    NeutralReranker,
    Ranked,
    load_reranker,
    margin,
)
from hybrid_agent.models.ebm.train import (
    auc,
    energies,
    featurize,
    fit,
    llm_energies,
    main,
    ranking_metrics,
    save_checkpoint,
)

TINY = EBMConfig(buckets=1 << 12, state_buckets=1 << 10, cross_buckets=1 << 12, dim=16, hidden=32)
AUC_FLOOR = 0.85


def shell(cmd: str) -> dict:
    return {"tool": "shell", "args": {"cmd": cmd}}


def view(call: dict | None, *, logprob: float = -0.5, policy: str | None = "allow", error: str | None = None,
         text: str = "") -> CandidateView:
    return CandidateView(text=text or json.dumps(call), call=call, mean_logprob=logprob, policy=policy, error=error)


STATE = StateView(goal="Copy report.csv into backup/.", recent=["$ ls", "report.csv notes.txt backup/"],
                  failed_calls=[], tests_failing=None)


def features_of(call: dict | None, state: StateView = STATE, **kwargs) -> dict[str, float]:
    return dict(zip(FEATURES, hard_features(state, view(call, **kwargs))))


@pytest.fixture(scope="module")
def trained() -> tuple[EnergyModel, list[Group]]:
    """A small EBM trained on synthetic groups, and held-out groups whose file names,
    folders, texts and words it never saw."""
    torch.set_num_threads(1)
    train = synthetic_groups(400, names=TRAIN_NAMES, seed=3)
    held = synthetic_groups(150, names=HELD_NAMES, seed=4)
    model, _ = fit(featurize(train, TINY), TINY, epochs=8, seed=0)
    return model, held


# -- features -------------------------------------------------------------------------------

def test_hard_features_are_named_slots_with_their_meaning() -> None:
    good = features_of(shell("cp report.csv backup/"))
    assert len(good) == len(FEATURES) and all(isinstance(v, float) for v in good.values())
    assert good["schema_invalid"] == 0.0 and good["policy_allow"] == 1.0 and good["ungrounded_values"] == 0.0
    assert good["mean_logprob"] == -0.5
    assert features_of(None, text='{"tool": "shell", "ar', error="not valid JSON")["schema_invalid"] == 1.0
    assert features_of({"tool": "shell", "args": {"command": "ls"}})["schema_invalid"] == 1.0
    assert features_of(shell("rm -rf backup"), policy="approve")["policy_approve"] == 1.0
    assert features_of(shell("cp reprot.csv backup/"))["ungrounded_values"] == 0.5    # one value of two
    assert features_of(shell("echo 'unclosed >> notes.txt"))["shell_parse_error"] == 1.0
    assert features_of({"tool": "python", "args": {"code": "print(1"}})["python_syntax_error"] == 1.0
    assert features_of({"tool": "write_file", "args": {"path": "a.py", "content": "def f(:\n"}})["py_file_syntax_error"] == 1.0
    assert features_of({"tool": "write_file", "args": {"path": "a.txt", "content": "def f(:\n"}})["py_file_syntax_error"] == 0.0
    assert features_of(shell("x"), logprob=-math.inf)["mean_logprob"] == -10.0


def test_change_size_grows_with_the_written_content() -> None:
    sizes = [features_of({"tool": "write_file", "args": {"path": "a.txt", "content": "x" * n}})["change_size"]
             for n in (0, 10, 100, 400)]
    assert sizes == sorted(sizes) and sizes[0] == 0.0 and sizes[-1] <= 1.0
    assert features_of({"tool": "edit", "args": {"path": "a.txt", "old": "a", "new": "bcd"}})["change_size"] > 0


def test_past_failures_and_failing_tests_are_seen() -> None:
    failed = shell("cp reprot.csv backup/")
    state = StateView(goal=STATE.goal, recent=STATE.recent, failed_calls=[json.dumps(failed)], tests_failing=True)
    again = features_of(failed, state)
    assert again["repeat_failed"] == 1.0 and again["failed_similarity"] == 1.0
    near = features_of(shell("cp report.csv backup/"), state)
    assert near["repeat_failed"] == 0.0 and 0.0 < near["failed_similarity"] < 1.0
    done = features_of({"tool": "finish", "args": {"summary": "done", "success": True}}, state)
    assert done["tests_failing"] == 1.0 and done["finish_despite_failing_tests"] == 1.0


def test_goal_quotes_must_appear_in_the_call() -> None:
    state = StateView(goal="Append 'all good' to notes.txt.", recent=[], failed_calls=[], tests_failing=None)
    assert features_of(shell("echo 'all good' >> notes.txt"), state)["goal_quotes_missing"] == 0.0
    assert features_of(shell("echo 'all' >> notes.txt"), state)["goal_quotes_missing"] == 1.0
    # An apostrophe inside a word quotes nothing.
    assert features_of(shell("wc -l notes.txt"), StateView("Count the file's lines.", [], [], None))[
        "goal_quotes_missing"] == 0.0


def test_ids_are_the_same_in_another_process() -> None:
    candidates = [view(shell("cp report.csv backup/")), view(shell("mv report.csv backup/"))]
    here = encode(STATE, candidates, buckets=1 << 13, state_buckets=1 << 12, cross_buckets=1 << 13)
    script = ("import json\nfrom hybrid_agent.models.ebm.features import CandidateView, StateView, encode\n"
              f"state = StateView(**json.loads({json.dumps(STATE.__dict__)!r}))\n"
              f"cands = [CandidateView(**c) for c in json.loads({json.dumps([c.__dict__ for c in candidates])!r})]\n"
              "e = encode(state, cands, buckets=1 << 13, state_buckets=1 << 12, cross_buckets=1 << 13)\n"
              "print(json.dumps([e.state, e.candidates, e.crosses]))")
    # Another hash seed in the child: Python's own hash() would give other ids.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == [here.state, here.candidates, here.crosses]


# -- model and losses -----------------------------------------------------------------------

def _inputs(n: int = 3) -> tuple[torch.Tensor, ...]:
    candidates = [view(shell(c)) for c in ("cp report.csv backup/", "mv report.csv backup/", "rm report.csv")][:n]
    return batch([encode(STATE, candidates, buckets=TINY.buckets, state_buckets=TINY.state_buckets,
                         cross_buckets=TINY.cross_buckets)])


def test_energy_shapes_and_dtypes() -> None:
    model = EnergyModel(TINY).eval()
    inputs = _inputs()
    assert inputs[-1].shape == (3, len(FEATURES)) and inputs[-1].dtype == torch.float32
    energy = model(*inputs)
    assert energy.shape == (3,) and energy.dtype == torch.float32 and torch.isfinite(energy).all()
    assert model(*_inputs(1)).shape == (1,)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = EnergyModel(TINY).train()
    energy, mask = pad_groups(model(*_inputs()), [3], 0.0)
    loss = ebm_loss(energy, torch.tensor([0]), mask, torch.tensor([[1.0, 0.0, 0.0]]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_infonce_prefers_lower_energy_for_the_positive() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    positive = torch.tensor([0])
    low = infonce(torch.tensor([[-2.0, 1.0, 1.0]]), positive, mask)
    high = infonce(torch.tensor([[2.0, 1.0, 1.0]]), positive, mask)
    assert low < high
    energy = torch.tensor([[0.0, 0.0, 0.0]], requires_grad=True)
    infonce(energy, positive, mask).backward()
    assert energy.grad[0, 0] > 0 > energy.grad[0, 1]     # descent lowers the positive, raises the rest


def test_losses_ignore_padding_unknown_outcomes_and_groups_without_a_success() -> None:
    energy = torch.tensor([[0.0, 1.0, 99.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    alone = infonce(energy[:1, :2], torch.tensor([0]), mask[:1, :2])
    assert torch.allclose(infonce(energy, torch.tensor([0, -1]), mask), alone)
    outcome = torch.tensor([[1.0, 0.0, math.nan], [math.nan, math.nan, math.nan]])
    assert torch.allclose(logistic(energy, outcome), logistic(energy[:1, :2], outcome[:1, :2]))
    assert infonce(energy, torch.tensor([-1, -1]), mask) == 0


def test_pad_groups_keeps_order_and_gradients() -> None:
    flat = torch.arange(5, dtype=torch.float32, requires_grad=True)
    padded, mask = pad_groups(flat, [2, 3], -1.0)
    assert padded.tolist() == [[0.0, 1.0, -1.0], [2.0, 3.0, 4.0]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    padded.sum().backward()
    assert flat.grad.tolist() == [1.0] * 5


# -- negatives ------------------------------------------------------------------------------

GOOD_CALLS = [
    shell("mkdir -p logs/old"),
    shell("cp -r docs archive"),
    shell("mv notes.txt backup/"),
    shell("echo 'done' >> notes.txt"),
    shell("head -n 5 app.log"),
    shell("gzip -k app.log"),
    {"tool": "write_file", "args": {"path": "hello.py", "content": "print('hi')\n"}},
    {"tool": "edit", "args": {"path": "a.txt", "old": "x = 1", "new": "x = 2"}},
    {"tool": "read_file", "args": {"path": "report.csv"}},
    {"tool": "python", "args": {"code": "print(len(open('a.txt').read()))"}},
    {"tool": "finish", "args": {"summary": "done", "success": True}},
]


@pytest.mark.parametrize("good", GOOD_CALLS, ids=lambda c: json.dumps(c["args"])[:40])
def test_negatives_differ_from_the_good_call_and_from_each_other(good: dict) -> None:
    negatives = near_misses(good, earlier=["$ ls", "notes.txt other.csv logs/"], seed=1)
    assert negatives
    keys = [json.dumps(n.call, sort_keys=True) for n in negatives]
    assert json.dumps(good, sort_keys=True) not in keys and len(set(keys)) == len(keys)
    assert {n.kind for n in negatives} <= set(KINDS)
    assert len({n.kind for n in negatives}) == len(negatives)    # one per kind


def test_negatives_are_of_the_stated_kinds() -> None:
    def by_kind(call: dict, earlier: list[str] = ()) -> dict[str, dict]:
        return {n.kind: n.call for n in near_misses(call, earlier=earlier, seed=0)}

    mkdir = by_kind(shell("mkdir -p logs/old"))
    assert mkdir["missing_flag"] == shell("mkdir logs/old")
    assert mkdir["destructive"]["args"]["cmd"].startswith("rm ")
    assert by_kind(shell("cp -r docs archive"))["missing_flag"] == shell("cp docs archive")
    move = by_kind(shell("mv notes.txt backup/"), ["$ ls", "notes.txt todo.md backup/"])
    assert move["wrong_tool"] == shell("cp notes.txt backup/")
    assert move["destructive"] == shell("rm -rf notes.txt")
    assert "todo.md" in move["stale_value"]["args"]["cmd"]
    mutated = move["wrong_path"]["args"]["cmd"].split()
    assert mutated[0] == "mv" and sum(a != b for a, b in zip(mutated, "mv notes.txt backup/".split())) == 1
    assert by_kind(shell("echo 'done' >> notes.txt"))["destructive"] == shell("echo 'done' > notes.txt")
    write = by_kind({"tool": "write_file", "args": {"path": "hello.py", "content": "print('hi')\n"}})
    assert write["wrong_tool"] == {"tool": "read_file", "args": {"path": "hello.py"}}
    assert write["wrong_path"]["args"]["path"] != "hello.py" and write["wrong_path"]["args"]["content"] == "print('hi')\n"
    assert features_of(write["wrong_argument"])["py_file_syntax_error"] == 1.0
    assert by_kind({"tool": "finish", "args": {"summary": "done", "success": True}})["wrong_argument"]["args"][
        "success"] is False


def test_negatives_are_deterministic() -> None:
    good = shell("head -n 5 app.log")
    earlier = ["$ ls", "app.log x.txt"]
    assert near_misses(good, earlier=earlier, seed=7) == near_misses(good, earlier=earlier, seed=7)
    script = ("import json\nfrom hybrid_agent.models.ebm.negatives import near_misses\n"
              f"print(json.dumps([[n.kind, n.call] for n in near_misses({good!r}, earlier={earlier!r}, seed=7)]))")
    env = {**os.environ, "PYTHONHASHSEED": "999"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == [[n.kind, n.call] for n in near_misses(good, earlier=earlier, seed=7)]


# -- calibration ----------------------------------------------------------------------------

def _miscalibrated(n: int, seed: int) -> tuple[list[float], list[float]]:
    """Energies whose true P(success) is sigmoid(-(2 e + 1)), not the sigmoid(-e) they claim."""
    rng = random.Random(seed)
    energies = [rng.uniform(-4, 4) for _ in range(n)]
    outcomes = [float(rng.random() < 1 / (1 + math.exp(2 * e + 1))) for e in energies]
    return energies, outcomes


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_lowers_ece_on_a_miscalibrated_set(method: str) -> None:
    fit_e, fit_y = _miscalibrated(2000 if method == "isotonic" else 400, seed=1)
    test_e, test_y = _miscalibrated(2000, seed=2)
    mapping = calibration.fit(fit_e, fit_y)
    assert mapping.to_dict()["method"] == method          # isotonic only from 1000 pairs
    before = calibration.ece([calibration.uncalibrated(e) for e in test_e], test_y)
    after = calibration.ece([mapping(e) for e in test_e], test_y)
    assert after < before / 2 and after < 0.05
    assert calibration.from_dict(mapping.to_dict()) == mapping
    probs = [mapping(e) for e in sorted(test_e)]
    assert all(a >= b for a, b in zip(probs, probs[1:]))   # lower energy, higher P(success)


def test_ece_is_zero_when_predictions_match_outcome_rates() -> None:
    assert calibration.ece([0.25] * 4, [1.0, 0.0, 0.0, 0.0]) == 0.0
    assert calibration.ece([0.95] * 10, [0.0] * 10) == pytest.approx(0.95)
    with pytest.raises(ValueError):
        calibration.fit([0.0, 1.0], [1.0, 1.0])


# -- training -------------------------------------------------------------------------------

def test_auc_counts_ties_half() -> None:
    assert auc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert auc([2.0], [1.0]) == 0.0
    assert auc([1.0], [1.0]) == 0.5
    assert auc([0.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx((3 + 1.5) / 6)


def test_trained_ebm_ranks_held_out_good_calls_above_bad_ones_auc_over_0_85(trained) -> None:
    """The floor is 0.85 on groups whose names the model never saw; the LLM-only ranking
    of the same candidates (their simulated log-probabilities) must be clearly worse."""
    model, held = trained
    x = featurize(held, TINY)
    ebm = ranking_metrics(energies(model, x), held)
    llm = ranking_metrics(llm_energies(held), held)
    assert ebm["pairs"] > 500
    assert ebm["auc"] > AUC_FLOOR, ebm
    assert ebm["auc"] > llm["auc"] + 0.1 and ebm["top1"] > llm["top1"], (ebm, llm)


def test_traces_load_and_train_with_unknown_outcomes(tmp_path: Path) -> None:
    rows = [
        {"goal": "Count the lines of app.log.", "recent": ["$ ls", "app.log"], "failed_calls": [],
         "tests_failing": None,
         "candidates": [{"text": "", "call": shell("wc -l app.log"), "mean_logprob": -0.3, "policy": "allow",
                         "error": None, "outcome": 1},
                        {"text": "", "call": shell("wc app.log"), "mean_logprob": -0.4, "policy": "allow",
                         "error": None, "outcome": None},
                        {"text": "{", "call": None, "mean_logprob": -2.0, "policy": None,
                         "error": "not JSON", "outcome": 0}]},
        {"goal": "Fix the tests.", "recent": [], "failed_calls": ['{"tool": "run_tests", "args": {}}'],
         "tests_failing": True,
         "candidates": [{"text": "", "call": {"tool": "run_tests", "args": {}}, "mean_logprob": -0.2,
                         "policy": "allow", "error": None, "outcome": 0}]},
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    groups = load_traces(path)
    assert [g.good for g in groups] == [0, -1]
    assert groups[0].outcomes == (1.0, None, 0.0) and groups[0].kinds == ("trace",) * 3
    assert groups[1].state.tests_failing is True
    model, losses = fit(featurize(groups, TINY), TINY, epochs=2)
    assert all(math.isfinite(loss) for loss in losses)


# -- reranker -------------------------------------------------------------------------------

def test_neutral_reranker_orders_exactly_by_log_probability(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.setattr(reranker, "DEFAULT_CHECKPOINT", tmp_path / "none.pt")
    neutral = load_reranker(None)
    assert isinstance(neutral, NeutralReranker)
    assert (neutral.name, neutral.trained, neutral.note) == ("neutral", False,
                                                             "untrained: ranks by LLM log-probability")
    logprobs = [-0.7, -0.1, -2.5, -0.4, -0.1000001]
    ranked = neutral.score(STATE, [view(shell(f"echo {i}"), logprob=lp) for i, lp in enumerate(logprobs)])
    assert [r.energy for r in ranked] == [-lp for lp in logprobs]
    assert all(r.p_success is None for r in ranked)
    by_energy = sorted(range(len(ranked)), key=lambda i: ranked[i].energy)
    assert by_energy == sorted(range(len(logprobs)), key=lambda i: -logprobs[i])


def test_margin_is_the_gap_between_best_and_second() -> None:
    assert margin([Ranked(1.0, None)]) == math.inf
    assert margin([]) == math.inf
    assert margin([Ranked(3.0, None), Ranked(0.5, 0.9), Ranked(1.25, 0.5)]) == 0.75
    assert margin([Ranked(2.0, None), Ranked(2.0, None)]) == 0.0


def test_save_and_load_give_identical_energies(trained, tmp_path: Path) -> None:
    model, held = trained
    mapping = calibration.Platt(a=0.8, b=-0.3)
    path = tmp_path / "ebm.pt"
    save_checkpoint(path, model, mapping, {"test": {"auc": 0.9, "top1": 0.8}}, {})
    loaded = load_reranker(path)
    assert isinstance(loaded, EnergyReranker) and loaded.trained and loaded.name == "ebm"
    assert "AUC 0.900" in loaded.note
    for group in held[:10]:
        ranked = loaded.score(group.state, list(group.candidates))
        expected = energies(model, featurize([group], TINY))[0]
        assert [r.energy for r in ranked] == expected
        assert [r.p_success for r in ranked] == [mapping(e) for e in expected]
    assert loaded.score(STATE, []) == []


def test_bad_checkpoints_are_errors(tmp_path: Path, trained) -> None:
    with pytest.raises(EBMError, match="no EBM checkpoint"):
        load_reranker(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(EBMError):
        load_reranker(garbage)
    path = tmp_path / "old.pt"
    save_checkpoint(path, trained[0], calibration.Platt(1.0, 0.0), {}, {})
    saved = torch.load(path, weights_only=True)
    torch.save({**saved, "feature_version": -1}, path)
    with pytest.raises(EBMError, match="retrain"):
        load_reranker(path)


def test_train_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "ebm.pt"
    assert main(["--out", str(out), "--synthetic", "80", "--held-out", "60", "--epochs", "2"]) == 0
    loaded = load_reranker(out)
    test = loaded.metrics["test"]
    assert {"auc", "top1", "ece_before", "ece_after", "method", "beaten_by_kind"} <= set(test)
    assert "llm_only_test" in loaded.metrics
    ranked = loaded.score(STATE, [view(shell("cp report.csv backup/")), view(shell("rm -rf backup"))])
    assert all(r.p_success is not None and 0.0 <= r.p_success <= 1.0 for r in ranked)
