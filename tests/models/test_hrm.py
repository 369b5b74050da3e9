"""The HRM planner: a hierarchical recurrent model over the agent's state whose training
memory does not grow with its cycles, whose Q-head learns when to stop, a flat ablation of
the same size, and a planner that is neutral (and says so) until it has a checkpoint.

Tiny models and the FakeHashEncoder stand in where the test is not about sizes or the text
encoder; the MiniLM test loads the real encoder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hybrid_agent.models.hrm import RecentStep, StepState, load_planner
from hybrid_agent.models.hrm import data
from hybrid_agent.models.hrm.checkpoint import Checkpoint, HRMError, build_model, load, parameter_count, save
from hybrid_agent.models.hrm.model import HRM, HRMConfig, PlanHeads, halts
from hybrid_agent.models.hrm.planner import NEUTRAL_NOTE, HRMPlanner, NeutralPlanner
from hybrid_agent.models.hrm.state import RECENT, STRUCT_DIM, TOKENS, encode_state, encode_states, input_dim
from hybrid_agent.models.hrm.text import FakeHashEncoder, MiniLMEncoder
from hybrid_agent.models.hrm.train import IGNORE, Tensors, TrainConfig, evaluate, fit, main, q_targets, tensorize

TOOLS = list(data.TOOLS)
EXPERTS = list(data.EXPERTS)
FAKE = FakeHashEncoder(dim=32)
TINY = {"d_in": input_dim(FAKE), "n_tools": len(TOOLS), "n_experts": len(EXPERTS), "hidden": 32, "heads": 2}
VARIANTS = ["hrm", "flat"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Small matrices on a shared two-core machine: a second thread only waits.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(variant: str, **sizes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    blocks = {"blocks": 2} if variant == "flat" else {"blocks": 1}    # flat: the two modules' blocks
    return build_model(variant, **{**TINY, **blocks, **sizes})


def a_state(goal: str = "Count the ERROR lines in app.log", steps: int = 2) -> StepState:
    history = [RecentStep("shell", False, 1, "FileNotFoundError"), RecentStep("list_dir", True),
               RecentStep("shell", True, 0)]
    return StepState(goal, "logs", steps, 10, history[:steps])


# -- the model ----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_every_output_has_its_shape_and_dtype(variant: str) -> None:
    model = tiny(variant)
    x = encode_states([a_state(), a_state(steps=0), a_state(steps=3)], FAKE)     # (3, TOKENS, d_in)
    carry, out = model(x)
    carry, out = model(x, carry)          # a second segment from the first one's carry
    assert x.shape == (3, TOKENS, TINY["d_in"]) and x.dtype == torch.float32
    assert out.plan.shape == (3, 32)
    assert out.tool_logits.shape == (3, len(TOOLS))
    assert out.expert_logits.shape == (3, len(EXPERTS))
    assert out.risk_logit.shape == (3,)
    assert out.q_logits.shape == (3, 2)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all()
               for t in (out.plan, out.tool_logits, out.expert_logits, out.risk_logit, out.q_logits))
    assert halts(out).shape == (3,) and halts(out).dtype == torch.bool
    for state in vars(carry).values():
        assert state.shape == (3, TOKENS, 32) and not state.requires_grad   # detached between segments


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(variant: str) -> None:
    model = tiny(variant, high_cycles=2, low_steps=2) if variant == "hrm" else tiny(variant)
    x = encode_states([a_state(), a_state(steps=0)], FAKE)
    carry, _ = model(x)
    _, out = model(x, carry)              # backward on the last segment only
    loss = sum(t.square().mean() for t in (out.plan, out.tool_logits, out.expert_logits, out.risk_logit, out.q_logits))
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def saved_for_backward(model: HRM, x: torch.Tensor) -> tuple[int, int]:
    """(bytes autograd keeps for the backward pass, nodes in the graph) of one training segment."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, out = model(x)
        loss = out.tool_logits.sum() + out.q_logits.sum()
    nodes, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in nodes:
            nodes.add(node)
            todo += [next_fn for next_fn, _ in node.next_functions]
    return saved, len(nodes)


def test_the_one_step_gradient_keeps_training_memory_flat_as_cycles_grow() -> None:
    x = encode_states([a_state(), a_state(steps=3)], FAKE)
    few = saved_for_backward(tiny("hrm", high_cycles=2, low_steps=2), x)
    many = saved_for_backward(tiny("hrm", high_cycles=8, low_steps=2), x)
    longer = saved_for_backward(tiny("hrm", high_cycles=2, low_steps=6), x)
    assert few[0] > 0
    assert few == many == longer


def test_the_flat_variant_has_the_hrm_parameter_count() -> None:
    sizes = {"d_in": MiniLMEncoder.dim + STRUCT_DIM, "n_tools": len(TOOLS), "n_experts": len(EXPERTS)}
    hrm, flat = parameter_count(build_model("hrm", **sizes)), parameter_count(build_model("flat", **sizes))
    assert 1_000_000 < hrm < 10_000_000          # "a few million" at the default sizes
    assert abs(flat - hrm) <= 0.1 * hrm


# -- halting --------------------------------------------------------------------------------

NODES = 6


def pointer_chasing(n: int, hard_hops: int, seed: int) -> tuple[Tensors, torch.Tensor]:
    """Each token is a node: its own id, the id it points to (a random permutation), a start
    flag on one node, and whether the question is hard. The answer is the node reached from
    the start in 1 hop (easy) or ``hard_hops`` (hard)."""
    g = torch.Generator().manual_seed(seed)
    pointers = torch.stack([torch.randperm(NODES, generator=g) for _ in range(n)])     # (n, NODES)
    start = torch.randint(NODES, (n,), generator=g)
    hard = torch.rand(n, generator=g) < 0.5
    x = torch.zeros(n, NODES, 2 * NODES + 2)
    x[:, :, :NODES] = torch.eye(NODES)
    x[:, :, NODES:2 * NODES] = F.one_hot(pointers, NODES).float()
    x[torch.arange(n), start, 2 * NODES] = 1.0
    x[:, :, 2 * NODES + 1] = hard[:, None].float()
    node, rows = start.clone(), torch.arange(n)
    for hop in range(hard_hops):
        node = torch.where(hard | (hop == 0), pointers[rows, node], node)
    return Tensors(x, node, torch.full((n,), IGNORE), torch.zeros(n)), hard


def test_the_halting_head_learns_which_inputs_are_easy_and_stops_there_after_one_segment() -> None:
    # One segment of this model learns one hop in a few hundred steps, not three. A second
    # segment does not help with three either (a model that learns to use it takes ten times
    # this training), so the step cost rightly halts those after one segment as well: what
    # tells them apart is the halting value, P(the answer is right now).
    torch.manual_seed(0)
    model = HRM(HRMConfig(d_in=2 * NODES + 2, n_tools=NODES, n_experts=2, hidden=64, heads=2,
                          blocks=1, high_cycles=1, low_steps=1))
    train, _ = pointer_chasing(10_000, hard_hops=3, seed=0)
    fit(model, train, TrainConfig(steps=600, batch_size=64, segments=4, lr=3e-3, log_every=600))
    held, hard = pointer_chasing(1_000, hard_hops=3, seed=1)
    easy_metrics = evaluate(model, held[(~hard).nonzero().squeeze(1)], max_segments=4)
    with torch.inference_mode():
        halt_value = torch.sigmoid(model(held.x)[1].q_logits[:, 0])             # (n,) after one segment
    assert easy_metrics["tool_acc"] > 0.9
    assert easy_metrics["mean_segments"] == 1.0
    assert halt_value[~hard].mean() > 0.9 > 0.6 > halt_value[hard].mean()


def heads(tool_logits: list[list[float]], q_logits: list[list[float]]) -> PlanHeads:
    n = len(tool_logits)
    return PlanHeads(torch.zeros(n, 4), torch.tensor(tool_logits), torch.zeros(n, 2), torch.zeros(n),
                     torch.tensor(q_logits))


def test_the_q_targets_are_the_papers_less_a_step_cost() -> None:
    now = heads([[2.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]])    # right on row 0, wrong on row 1
    following = heads([[0.0, 0.0]] * 2, [[1.0, 3.0], [2.0, -1.0]])
    halt, go_on = q_targets(now, torch.tensor([0, 0]), following, next_is_last=False, step_cost=0.05)
    assert halt.tolist() == [1.0, 0.0]                                     # is this segment's answer right
    assert go_on == pytest.approx(torch.sigmoid(torch.tensor([3.0, 2.0])) - 0.05)   # the next segment's best
    _, go_on = q_targets(now, torch.tensor([0, 0]), following, next_is_last=True, step_cost=0.05)
    assert go_on == pytest.approx(torch.sigmoid(torch.tensor([1.0, 2.0])) - 0.05)   # the last one can only halt
    assert q_targets(now, torch.tensor([0, 0]), None, next_is_last=False, step_cost=0.05)[1] is None


# -- the planner ---------------------------------------------------------------------------

def test_without_a_checkpoint_the_planner_is_neutral_and_says_so() -> None:
    planner = load_planner(None, tools=TOOLS, experts=EXPERTS)
    out = planner.plan(a_state())
    assert isinstance(planner, NeutralPlanner) and planner.trained is False
    assert out.tool_prior == {tool: 1 / len(TOOLS) for tool in TOOLS}
    assert out.expert_prior == {expert: 1 / len(EXPERTS) for expert in EXPERTS}
    assert out.risk is None and out.segments == 1 and not out.halted_early
    assert out.trained is False and out.note == NEUTRAL_NOTE == "untrained: neutral prior"


def planner_with_q_bias(halt: float, go_on: float, max_segments: int = 4) -> tuple[HRMPlanner, list[int]]:
    """A planner whose Q-head always says the same, and a list that counts segments run."""
    model = tiny("hrm").eval()
    model.heads.q.bias.data = torch.tensor([halt, go_on])
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    checkpoint = Checkpoint("hrm", model, TOOLS, EXPERTS, FAKE.name, max_segments, {})
    return HRMPlanner(checkpoint, FAKE, TOOLS, EXPERTS), calls


def test_the_planner_stops_at_the_first_segment_whose_q_head_halts() -> None:
    planner, calls = planner_with_q_bias(halt=5.0, go_on=-5.0)
    out = planner.plan(a_state())
    assert (out.segments, out.halted_early, len(calls)) == (1, True, 1)
    assert out.trained and 0.0 <= out.risk <= 1.0
    assert sum(out.tool_prior.values()) == pytest.approx(1.0)
    assert sum(out.expert_prior.values()) == pytest.approx(1.0)

    planner, calls = planner_with_q_bias(halt=-5.0, go_on=5.0)
    out = planner.plan(a_state())
    assert (out.segments, out.halted_early, len(calls)) == (4, False, 4)   # the limit, not a halt


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training command, at toy sizes and with the fake encoder."""
    out = tmp_path_factory.mktemp("hrm") / "hrm.pt"
    assert main(["--variant", "hrm", "--out", str(out), "--encoder", "fake-hash", "--hidden", "32",
                 "--synthetic", "600", "--steps", "20", "--batch-size", "32", "--segments", "2"]) == 0
    return out


def test_the_train_command_writes_a_checkpoint_with_what_the_planner_needs(trained_checkpoint: Path) -> None:
    saved = load(trained_checkpoint)
    assert saved.variant == "hrm" and saved.tools == TOOLS and saved.experts == EXPERTS
    assert saved.encoder == FakeHashEncoder().name and saved.max_segments == 2
    assert {"tool_acc", "expert_acc", "risk_auc", "mean_segments", "parameters", "train_seconds"} <= set(saved.metrics)


def test_a_saved_and_loaded_checkpoint_plans_identically(trained_checkpoint: Path, tmp_path: Path) -> None:
    first = load_planner(trained_checkpoint, tools=TOOLS, experts=EXPERTS)
    copy = tmp_path / "copy.pt"
    saved = load(trained_checkpoint)
    save(saved, copy)
    second = load_planner(copy, tools=TOOLS, experts=EXPERTS)
    states = [a_state(), a_state(steps=0), a_state("Fix the failing test in test_utils.py", steps=3)]
    assert first.trained and first.name == "hrm"
    assert [first.plan(s) for s in states] == [second.plan(s) for s in states]
    x = encode_states(states, FakeHashEncoder())
    assert torch.equal(saved.model(x)[1].tool_logits, load(copy).model(x)[1].tool_logits)


def test_the_planner_spreads_over_the_tools_asked_for(trained_checkpoint: Path) -> None:
    planner = load_planner(trained_checkpoint, tools=[*TOOLS[:3], "browser"], experts=EXPERTS)
    out = planner.plan(a_state())
    assert list(out.tool_prior) == [*TOOLS[:3], "browser"]
    assert sum(out.tool_prior.values()) == pytest.approx(1.0)
    assert "browser" in out.note


def test_a_wrong_or_missing_checkpoint_is_a_clear_error(trained_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(HRMError, match="holds a 'hrm' model"):
        load_planner(trained_checkpoint, variant="flat", tools=TOOLS, experts=EXPERTS)
    with pytest.raises(HRMError, match="no HRM checkpoint"):
        load_planner(tmp_path / "absent.pt", tools=TOOLS, experts=EXPERTS)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HRMError, match="not a readable"):
        load_planner(tmp_path / "junk.pt", tools=TOOLS, experts=EXPERTS)


# -- state and data ------------------------------------------------------------------------

def test_the_state_keeps_the_last_steps_most_recent_first() -> None:
    history = [RecentStep("read_file", True)] * RECENT + [RecentStep("run_tests", False, 1, "AssertionError")]
    x = encode_state(StepState("Make the test suite pass", "tests", 7, 10, history), FAKE)
    struct = x[:, FAKE.dim:]                                       # (TOKENS, STRUCT_DIM)
    assert x.shape == (TOKENS, FAKE.dim + STRUCT_DIM)
    assert torch.equal(x[2, :FAKE.dim], FAKE.encode(["AssertionError"])[0])   # the newest step's error
    assert not x[3:, :FAKE.dim].any()                             # older steps had none
    assert struct[2:, 2].all()                                    # all RECENT slots hold steps
    empty = encode_state(StepState("Make the test suite pass", "tests", 0, 10), FAKE)[:, FAKE.dim:]
    assert empty[2:, 3].all()                                     # padding tokens when nothing happened yet


def test_the_synthetic_data_follows_its_documented_rules() -> None:
    assert data.scripted_next("logs", "shell", []) == "shell"
    assert data.scripted_next("files", "shell", [RecentStep("shell", False, 1, "FileNotFoundError")]) == "list_dir"
    failing = [RecentStep("run_tests", False, 1, "AssertionError")]
    assert data.scripted_next("tests", "run_tests", failing) == "read_file"
    done = [*failing, RecentStep("read_file", True), RecentStep("edit", True), RecentStep("run_tests", True, 0)]
    assert data.scripted_next("tests", "run_tests", done) == "finish"
    examples = data.synthetic(2_000, seed=3)
    assert {e.next_tool for e in examples} == set(TOOLS)
    assert 0.02 < sum(e.failed_soon for e in examples) / len(examples) < 0.3
    assert all(e.expert == "code_edit" for e in examples if e.state.task_kind == "tests" and e.next_tool == "edit")


def test_traces_load_from_jsonl_and_a_bad_line_is_named(tmp_path: Path) -> None:
    row = {"state": {"goal": "Print notes.txt", "task_kind": "inspect", "step": 1, "max_steps": 8,
                     "recent": [{"tool": "read_file", "ok": False, "exit_code": None,
                                 "error_class": "FileNotFoundError"}]},
           "next_tool": "list_dir", "expert": None, "failed_soon": False}
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(row) + "\n\n" + json.dumps({"state": {}}) + "\n")
    with pytest.raises(ValueError, match="traces.jsonl:2"):
        data.load_traces(path)
    path.write_text(json.dumps(row) + "\n")
    (example,) = data.load_traces(path)
    assert example.state.recent == [RecentStep("read_file", False, None, "FileNotFoundError")]
    assert tensorize([example], FAKE, TOOLS, EXPERTS).expert.tolist() == [IGNORE]


def test_training_learns_the_synthetic_task() -> None:
    examples, held = data.synthetic(3_000, seed=0), data.synthetic(600, seed=1)
    model = tiny("hrm", hidden=64)
    train, held_t = tensorize(examples, FAKE, TOOLS, EXPERTS), tensorize(held, FAKE, TOOLS, EXPERTS)
    before = evaluate(model, held_t, max_segments=2)["tool_acc"]
    fit(model, train, TrainConfig(steps=150, batch_size=32, segments=2, lr=3e-3, log_every=150))
    after = evaluate(model, held_t, max_segments=2)
    assert before < 0.4 and after["tool_acc"] > 0.75 and after["expert_acc"] > 0.9


# -- the real text encoder -----------------------------------------------------------------

def test_minilm_embeds_goals_so_that_similar_ones_are_closer() -> None:
    encoder = MiniLMEncoder()
    goals = ["Count the ERROR lines in app.log", "How many lines of app.log contain ERROR?",
             "Fix the failing unit test in test_parser.py"]
    vectors = encoder.encode(goals)
    assert vectors.shape == (3, 384) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.2
    assert encode_state(a_state(), encoder).shape == (TOKENS, 384 + STRUCT_DIM)
