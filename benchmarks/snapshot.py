"""Our incremental snapshot vs `cp -a` of the tree vs git's incremental commit, in one run.

    python benchmarks/snapshot.py [--files N] [--mb MB] [--changed FRACTION] [--repeats N]

Builds a tree of random files (in a temporary folder), changes a fraction of them per
repeat, and times the three on the same change. Prints a table, then one JSON line (cp_s,
git_s, ours_s, ratio = cp_s / ours_s, files, total_mb, changed_files, files_read,
bytes_stored, full_s, repeats, goal_ratio_met, goal_below_git_met). Same as
`hybrid-agent bench snapshot`."""

import argparse
import json

from hybrid_agent.eval.snapshot_bench import run_snapshot_benchmark, table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--files", type=int, default=2000)
parser.add_argument("--mb", type=float, default=50, help="total size of the tree")
parser.add_argument("--changed", type=float, default=0.01, help="fraction of the files changed per repeat")
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
result = run_snapshot_benchmark(files=args.files, total_mb=args.mb, changed_fraction=args.changed,
                                repeats=args.repeats)
print(table(result))
print(json.dumps(result.summary))
