"""The agent-step benchmark: the whole step (observe, plan with the HRM and the scheduler,
constrained decoding, schema, preflight and policy checks, EBM rerank, act through the
sandbox, verify) against raw ``model.generate`` of as many tokens from the same prompt on
a second copy of the same model (``TransformersLLM.plain_model``: loaded, merged and
quantized alike, but whole, where the backend's runs through its lean decoder).

Each goal runs in a fresh temporary workspace, once at K = 1 and once at K = 4 (forced by
``Limits(k=K, max_k=K)``), for up to ``steps`` steps or until the agent exits; the journal
callback only keeps the record. The raw baseline replays each K = 1 step's first prompt:
greedy ``generate`` of exactly as many new tokens as that step's greedy candidate had,
timed right after the step so both see the same machine load. The step has what the
backend does to be fast (the KV cache of a prompt's unchanged head, drafts checked several
tokens per forward pass); raw generation has none of it. Model loading and
first-call costs (torch's first passes, compiling the grammars of the loop's tool sets,
the sandbox probe) are excluded: a goal of its own runs once untimed at each K first, as a
worker pays them once per process."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from hybrid_agent.agents.hybrid import Hybrid, load_hybrid
from hybrid_agent.agents.loop import LOOK_OR_FINISH, AgentExit, AgentLoop, AgentState, Limits, StepRecord
from hybrid_agent.agents.prompt import PromptParts, build_messages
from hybrid_agent.agents.sandbox import Sandbox, SandboxLimits, make_sandbox
from hybrid_agent.agents.tools import ToolRunner
from hybrid_agent.config import Settings
from hybrid_agent.models.llm import Proposal, load_llm
from hybrid_agent.models.llm.transformers_backend import TransformersLLM
from hybrid_agent.models.tpc import load_tpc
from hybrid_agent.policies.engine import CallClassifier, PolicyEngine
from hybrid_agent.policies.policy_file import Policy, load_policy
from hybrid_agent.policies.tool_schema import TOOL_ARGS, call_schema

KS = (1, 4)


@dataclass(frozen=True)
class BenchGoal:
    goal: str
    files: dict[str, str]


LOG = "".join(f"2024-05-0{d} {level} request {d}\n" for d in range(1, 10) for level in ("INFO", "ERROR", "INFO"))
GOALS = [
    BenchGoal("Create a file named hello.txt containing the word hello", {}),
    BenchGoal("Count the lines containing ERROR in app.log and write the number to errors.txt", {"app.log": LOG}),
    BenchGoal("Make a folder named backup and copy config.ini into it", {"config.ini": "[main]\nport = 80\n"}),
    BenchGoal("Compress data.csv with gzip", {"data.csv": "id,value\n" + "".join(f"{i},{i * i}\n" for i in range(50))}),
    BenchGoal("Rename draft.md to final.md", {"draft.md": "# Draft\n"}),
    BenchGoal("Create a directory named reports", {}),
    BenchGoal("Append the line done to status.txt", {"status.txt": "started\n"}),
    BenchGoal("Show the contents of notes.txt", {"notes.txt": "buy milk\n"}),
    BenchGoal("Sort names.txt alphabetically into sorted.txt", {"names.txt": "carol\nalice\nbob\n"}),
    BenchGoal("Write the number 42 into a file named answer.txt", {}),
]
# Not one of GOALS: a timed step must not find its own prompt cached by the warm-up.
WARM_UP = BenchGoal("Make an empty file named warm.up", {})
# The tool sets AgentLoop.plan asks grammars for (a trained HRM may narrow them further).
TOOL_SETS = (frozenset(TOOL_ARGS), frozenset(TOOL_ARGS) - {"finish"}, LOOK_OR_FINISH, frozenset({"finish"}))


@dataclass(frozen=True)
class StepTiming:
    goal: str
    k: int
    n: int
    seconds: float              # the whole step, as the loop's caller sees it
    tokens: int                 # new tokens of the step's first proposal's first candidate
    raw_seconds: float | None   # raw generate of ``tokens`` from the same prompt (K = 1 only)
    call: dict[str, Any] | None
    error: str | None           # what the journal says went wrong, when the step did not succeed


@dataclass(frozen=True)
class StepBenchResult:
    steps: list[StepTiming]
    summary: dict[str, Any]


class _Recorder:
    """The LLM as the loop sees it, keeping the first request of the current step: the
    prompt and token count the raw baseline replays."""

    def __init__(self, llm: TransformersLLM) -> None:
        self.llm = llm
        self.name = llm.name
        self.first: tuple[list[dict[str, str]], Proposal] | None = None

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any], k: int, *,
                exclude: Sequence[str] = ()) -> Proposal:
        proposal = self.llm.propose(messages, schema, k, exclude=exclude)
        if self.first is None:
            self.first = (messages, proposal)
        return proposal


@dataclass(frozen=True)
class _Setup:
    settings: Settings
    hybrid: Hybrid
    policy: Policy
    classifier: CallClassifier | None
    sandbox: Sandbox
    raw_model: PreTrainedModel   # the raw baseline's: the backend's own copy runs through its lean decoder


def load_bench_llm(settings: Settings) -> TransformersLLM:
    """The configured LLM, which must be a local transformers one: the raw baseline needs
    its model object. ValueError otherwise; LLMError when it fails to load."""
    if not settings.llm.startswith("transformers:"):
        raise ValueError(f"the step benchmark needs a transformers LLM (HA_LLM=transformers:...), not {settings.llm!r}")
    llm = load_llm(settings.llm, cache_dir=settings.model_cache_dir, seed=settings.seed,
                   max_new_tokens=settings.llm_max_new_tokens, temperature=settings.llm_temperature,
                   adapter=settings.llm_adapter, quantize=settings.llm_quantize,
                   loop_tokens=settings.llm_loop_tokens)
    assert isinstance(llm, TransformersLLM)
    return llm


def raw_generate_seconds(llm: TransformersLLM, raw_model: PreTrainedModel, messages: list[dict[str, str]],
                         tokens: int) -> float:
    """Seconds for greedy ``raw_model.generate`` (``llm.plain_model()``) of exactly ``tokens``
    new tokens from the prompt ``propose`` would build for ``messages``."""
    ids = llm.prompt_ids(messages)
    with torch.inference_mode():
        started = time.perf_counter()
        raw_model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, min_new_tokens=tokens,
                           max_new_tokens=tokens, pad_token_id=llm.tokenizer.eos_token_id)
        return time.perf_counter() - started


def run_goal(llm: TransformersLLM, setup: _Setup, goal: BenchGoal, *, k: int, steps: int) -> list[StepTiming]:
    """Up to ``steps`` timed steps of ``goal`` at K = ``k`` in a fresh workspace."""
    settings = setup.settings
    recorder = _Recorder(llm)
    records: list[StepRecord] = []
    timings = []
    with tempfile.TemporaryDirectory(prefix="step-bench-") as tmp:
        workspace = Path(tmp)
        for name, content in goal.files.items():
            (workspace / name).write_text(content)
        runner = ToolRunner(workspace, setup.sandbox, timeout_s=settings.tool_timeout_s,
                            max_output_chars=settings.max_output_chars, test_cmd=settings.test_cmd)
        policy = PolicyEngine(setup.policy, scopes=[workspace], test_cmd=settings.test_cmd,
                              classifier=setup.classifier)
        loop = AgentLoop(llm=recorder, runner=runner, policy=policy, hybrid=setup.hybrid, journal=records.append,
                         limits=Limits(max_steps=settings.max_steps, max_seconds=math.inf, k=k, max_k=k))
        state = AgentState(goal=goal.goal, workspace=workspace)
        for n in range(1, steps + 1):
            recorder.first = None
            started = time.perf_counter()
            exited = False
            try:
                loop.step(state, n)
            except AgentExit:
                exited = True
            seconds = time.perf_counter() - started
            tokens, raw = 0, None  # stay so when the model failed (the journal says how)
            if recorder.first is not None:
                messages, proposal = recorder.first
                tokens = proposal.candidates[0].tokens
                raw = raw_generate_seconds(llm, setup.raw_model, messages, max(tokens, 1)) if k == 1 else None
            record = records[-1]  # the step journals before it verifies (and may exit)
            timings.append(StepTiming(goal.goal, k, n, seconds, tokens, raw, record.tool_call,
                                      None if record.ok else record.observation[:300]))
            if exited:
                break
    return timings


def run_step_benchmark(llm: TransformersLLM, settings: Settings, *, goals: list[BenchGoal] | None = None,
                       steps: int = 3, progress: bool = True) -> StepBenchResult:
    """Every goal at each K in ``KS`` for up to ``steps`` steps, after an untimed warm-up,
    with the hybrid parts of ``settings.ablation``; a progress bar on stderr unless not ``progress``."""
    goals = goals or GOALS
    hybrid = load_hybrid(settings.ablation, hrm_checkpoint=settings.hrm_checkpoint, ebm_checkpoint=settings.ebm_checkpoint)
    sandbox = make_sandbox(settings.sandbox, max_output_chars=settings.max_output_chars,
                           limits=SandboxLimits.from_settings(settings), require_bwrap=settings.require_bwrap)
    setup = _Setup(settings, hybrid, load_policy(settings.policy),
                   load_tpc(settings.tpc_checkpoint) if settings.tpc else None, sandbox, llm.plain_model())
    runs = [(k, goal) for k in KS for goal in goals]
    with tqdm(total=len(runs) + 1, desc="bench step", unit="goal", disable=not progress) as bar:
        bar.set_postfix_str("warm-up")
        warm_up = build_messages(PromptParts(WARM_UP.goal, "", []))
        for tools in TOOL_SETS:  # each grammar compiles once per process
            llm.propose(warm_up, call_schema(tools), 1)
        for k in KS:
            run_goal(llm, setup, WARM_UP, k=k, steps=steps)
        bar.update()
        # All goals at one K, then at the next: a goal's K = 4 run finds its K = 1 run's prompts
        # evicted from the backend's prompt cache (with three goals or more), as another task's would be.
        timed = []
        for k, goal in runs:
            bar.set_postfix_str(f"K={k}")
            timed += run_goal(llm, setup, goal, k=k, steps=steps)
            bar.update()
    return StepBenchResult(timed, {**summarize(timed, hybrid, steps=steps), "llm": llm.name})


def summarize(timed: list[StepTiming], hybrid: Hybrid, *, steps: int) -> dict[str, Any]:
    """Mean seconds per step, the K = 1 steps' p95, and what ran: an untrained HRM or EBM
    is its neutral stand-in (named so), which costs next to nothing."""
    k1 = [t for t in timed if t.k == 1]
    raw_s = _mean([t.raw_seconds for t in k1 if t.raw_seconds is not None])
    k1_s = _mean([t.seconds for t in k1])
    return {"raw_s": round(raw_s, 3), "k1_s": round(k1_s, 3),
            "k4_s": round(_mean([t.seconds for t in timed if t.k == 4]), 3),
            "p95_step_s": round(p95([t.seconds for t in k1]), 3), "ratio": round(k1_s / raw_s, 3),
            "tokens": round(_mean([t.tokens for t in k1]), 1), "ablation": hybrid.ablation,
            "planner": hybrid.planner.name if hybrid.planner else None,
            "reranker": hybrid.reranker.name if hybrid.reranker else None, "steps": steps,
            "k1_steps": len(k1), "k4_steps": len(timed) - len(k1),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def _mean(values: list[float] | list[int]) -> float:
    return sum(values) / len(values) if values else math.nan  # nan: no such step ran


def table(result: StepBenchResult) -> str:
    """One row per goal: mean tokens and seconds per step of raw generation, K = 1 and K = 4."""
    lines = [f"{'goal':<48}{'steps':>6}{'tokens':>8}{'raw s':>8}{'k1 s':>8}{'k4 s':>8}"]
    for goal in dict.fromkeys(t.goal for t in result.steps):
        k1 = [t for t in result.steps if t.goal == goal and t.k == 1]
        k4 = [t for t in result.steps if t.goal == goal and t.k == 4]
        raw = [t.raw_seconds for t in k1 if t.raw_seconds is not None]
        lines.append(f"{goal[:47]:<48}{len(k1):>6}{_mean([t.tokens for t in k1]):>8.1f}{_mean(raw):>8.2f}"
                     f"{_mean([t.seconds for t in k1]):>8.2f}{_mean([t.seconds for t in k4]):>8.2f}")
    return "\n".join(lines)
