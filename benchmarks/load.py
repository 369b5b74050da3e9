"""Events -> router -> worker processes (a model-free tool loop) vs raw JetStream, in one run.

    python benchmarks/load.py [--workers N] [--events N] [--fast-events N] [--rate R] [--database-url URL]
                              [--scratch-dir DIR]

A fixed-rate phase (--events at --rate events/s: event-to-task-start p50/p99) and an
as-fast-as-possible phase (--fast-events, default --events: sustained events/s), each
beside raw JetStream publish + consume of as many messages in the same run. Progress on
stderr; prints a table, then one JSON line (events_per_s, p50_ms, p99_ms, lost, duplicated,
ratio = events_per_s / raw as-fast-as-possible msgs/s, raw_p99_ms, workers, rate, events,
database, and where the time went). Same as `hybrid-agent bench load`."""

import argparse
import asyncio
import json
from pathlib import Path

from hybrid_agent.config import Settings
from hybrid_agent.eval.load_bench import run_load_benchmark, table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--workers", type=int, default=3, help="worker processes")
parser.add_argument("--events", type=int, default=20000, help="events in the fixed-rate phase")
parser.add_argument("--fast-events", type=int, help="events in the as-fast-as-possible phase (default: --events)")
parser.add_argument("--rate", type=float, default=500, help="events/s in the fixed-rate phase")
parser.add_argument("--database-url", help="the store (default: SQLite in the run's temporary folder)")
parser.add_argument("--scratch-dir", type=Path, help="where the run's temporary folder goes (JetStream's store, "
                                                     "the database, the workspaces; default: HA_DATA_DIR)")
args = parser.parse_args()
result = asyncio.run(run_load_benchmark(workers=args.workers, events=args.events, fast_events=args.fast_events,
                                        rate=args.rate, database_url=args.database_url,
                                        scratch_dir=args.scratch_dir or Settings().data_dir))
print(table(result))
print(json.dumps(result.summary))
