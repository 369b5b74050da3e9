"""What the step's second proposal costs when the greedy call was unusable: the model's next
best call (where K is capped at 1) against four samples (the fallback otherwise), in one run.

    python benchmarks/next_best.py

On the step benchmark's goals' first prompts, with the configured LLM (HA_LLM, a
transformers one): greedy, then the next best call with greedy's call excluded (the kept
greedy path and the prompt's cache reused, as in the loop), then four samples of the same
prompt. Prints one line per goal, then one JSON line (greedy_s, next_best_s, samples_s:
mean seconds per call; ratio = samples_s / next_best_s; none: goals where every branch
gave back greedy's text)."""

import json
import statistics
import time

from hybrid_agent.agents.prompt import PromptParts, build_messages
from hybrid_agent.config import Settings
from hybrid_agent.eval.step_bench import GOALS, WARM_UP, load_bench_llm
from hybrid_agent.policies.tool_schema import TOOL_ARGS, call_schema

llm = load_bench_llm(Settings())
schema = call_schema(frozenset(TOOL_ARGS) - {"finish"})   # the first step's tools
for k in (1, 4):   # untimed: the grammar compiles and torch warms up once per process
    llm.propose(build_messages(PromptParts(WARM_UP.goal, "", [])), schema, k)


def timed(call):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


rows, none = [], 0
for goal in GOALS:
    messages = build_messages(PromptParts(goal.goal, "\n".join(goal.files), []))
    greedy, greedy_s = timed(lambda: llm.propose(messages, schema, 1).candidates[0])
    following, next_s = timed(lambda: llm.propose(messages, schema, 1, exclude=[greedy.text]))
    _, samples_s = timed(lambda: llm.propose(messages, schema, 4))
    none += not following.candidates
    rows.append((greedy_s, next_s, samples_s))
    other = following.candidates[0].text if following.candidates else "(none)"
    print(f"{goal.goal[:44]:<46}greedy {greedy_s:5.2f} s  next best {next_s:5.2f} s "
          f"({following.info['branched']} branches)  4 samples {samples_s:5.2f} s  {greedy.text[:40]} -> {other[:40]}")
greedy_s, next_best_s, samples_s = (statistics.mean(r[i] for r in rows) for i in range(3))
print(json.dumps({"greedy_s": round(greedy_s, 3), "next_best_s": round(next_best_s, 3),
                  "samples_s": round(samples_s, 3), "ratio": round(samples_s / next_best_s, 2), "none": none,
                  "goals": len(rows)}))
