"""The agent-step benchmark on two goals with the real default model: the summary has its
fields with positive, finite times, and every timed step ran (a tool call, or an error the
journal recorded). Nothing about the times themselves is asserted: they depend on the load."""

import json
import math
from pathlib import Path

import pytest

from hybrid_agent.config import Settings
from hybrid_agent.eval.step_bench import GOALS, KS, load_bench_llm, run_step_benchmark, table

pytestmark = pytest.mark.llm

CACHE = Path(__file__).parents[2] / ".cache" / "models"
SHIPPED_ADAPTER = Path(__file__).parents[2] / "adapters" / "sft"
TIMES = ("raw_s", "k1_s", "k4_s", "p95_step_s", "ratio")


def test_two_goals_through_the_whole_step_and_raw_generation(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_cache=CACHE)
    result = run_step_benchmark(load_bench_llm(settings), settings, goals=GOALS[:2], steps=1)
    progress = capfd.readouterr().err
    assert "bench step" in progress and f"{1 + 2 * len(KS)}/{1 + 2 * len(KS)}" in progress   # warm-up, goals x K

    summary = json.loads(json.dumps(result.summary))  # what the last line prints
    assert set(TIMES) | {"ablation", "steps", "load_avg"} <= set(summary)
    for key in TIMES:
        assert math.isfinite(summary[key]) and summary[key] > 0, (key, summary)
    assert summary["ablation"] == "full" and summary["steps"] == 1 and len(summary["load_avg"]) == 3
    assert summary["llm"] == "transformers:default+fp16"   # HA_LLM_QUANTIZE's default

    for goal in GOALS[:2]:
        for k in KS:
            ran = [t for t in result.steps if t.goal == goal.goal and t.k == k]
            assert [t.n for t in ran] == [1]
    for timed in result.steps:
        assert timed.call is not None or timed.error, timed
        assert math.isfinite(timed.seconds) and timed.seconds > 0
        assert (timed.raw_seconds is not None) == (timed.k == 1)
    assert len(table(result).splitlines()) == 3  # a header and one row per goal


def test_the_benchmark_times_the_configured_model_adapter_weights_and_loop_guard_included(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", model_cache=CACHE, llm_adapter=SHIPPED_ADAPTER,
                        llm_quantize="none", llm_loop_tokens=24)
    llm = load_bench_llm(settings)
    assert llm.name == f"transformers:default+lora:{SHIPPED_ADAPTER}"
    assert llm.loop_tokens == 24
