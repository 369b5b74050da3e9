"""Bus path vs raw JetStream, and REST submission vs a trivial endpoint, in one run.

    python benchmarks/bus_path.py [--events N] [--database-url URL]

Prints a table, then one JSON line (path_rate, raw_rate, ratio, rest_rate, rest_raw_rate,
rest_ratio, sent, delivered, lost). Same as `hybrid-agent bench bus`."""

import argparse
import asyncio
import json

from hybrid_agent.eval.bus_bench import run_bus_benchmark

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--events", type=int, default=5000)
parser.add_argument("--database-url")
args = parser.parse_args()
result = asyncio.run(run_bus_benchmark(events=args.events, database_url=args.database_url))
print(f"{'path':<28}{'msgs/s':>10}")
print(f"{'events->router->tasks->ack':<28}{result['path_rate']:>10}")
print(f"{'raw JetStream pub+consume':<28}{result['raw_rate']:>10}")
print(f"{'REST submit (real API)':<28}{result['rest_rate']:>10}")
print(f"{'REST trivial endpoint':<28}{result['rest_raw_rate']:>10}")
print(json.dumps(result))
