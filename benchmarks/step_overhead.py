"""The whole agent step at K=1 and K=4 vs raw generation of the same tokens, in one run.

    python benchmarks/step_overhead.py [--steps N] [--ablation A]

Uses the configured LLM (HA_LLM, a transformers one; HA_MODEL_CACHE for its converted
weights). Prints a table per goal, then one JSON line (raw_s, k1_s, k4_s, p95_step_s,
ratio, tokens, ablation, planner, reranker, steps, k1_steps, k4_steps, load_avg). Same as
`hybrid-agent bench step`."""

import argparse
import json

from hybrid_agent.config import ABLATIONS, Settings
from hybrid_agent.eval.step_bench import load_bench_llm, run_step_benchmark, table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=3, help="steps per goal")
parser.add_argument("--ablation", choices=ABLATIONS, help="hybrid model parts (default: HA_ABLATION or full)")
args = parser.parse_args()
settings = Settings(**({"ablation": args.ablation} if args.ablation else {}))
result = run_step_benchmark(load_bench_llm(settings), settings, steps=args.steps)
print(table(result))
print(json.dumps(result.summary))
