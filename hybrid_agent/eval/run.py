"""What ``hybrid-agent eval`` and ``hybrid-agent collect`` do, given parsed options:
load the agent's parts once, run the pack's tasks, print the family table and the totals."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_agent.agents.assembly import AgentParts, build_loop, load_parts
from hybrid_agent.agents.experts import Playbook, make_experts
from hybrid_agent.agents.hybrid import Hybrid, load_hybrid
from hybrid_agent.agents.loop import AgentExit, StepRecord
from hybrid_agent.config import Settings
from hybrid_agent.eval.collect import CollectRun, TraceWriter
from hybrid_agent.eval.harness import EvalOptions, EvalRun, family_table, run_eval, summarize
from hybrid_agent.eval.packs import Split, Task, load_pack


@dataclass(frozen=True)
class PackSelection:
    pack: Path
    split: Split | None = None
    limit: int | None = None
    families: tuple[str, ...] = ()
    per_family: int | None = None

    def tasks(self) -> list[Task]:
        tasks = load_pack(self.pack, split=self.split)
        if self.families:
            tasks = [t for t in tasks if t.family in self.families]
        if self.per_family is not None:
            tasks = _first_per_family(tasks, self.per_family)
        return tasks[: self.limit] if self.limit is not None else tasks


def _first_per_family(tasks: list[Task], n: int) -> list[Task]:
    """A smaller run that still covers every family."""
    taken: dict[str, int] = {}
    kept = []
    for task in tasks:
        taken[task.family] = taken.get(task.family, 0) + 1
        if taken[task.family] <= n:
            kept.append(task)
    return kept


def load_playbook(path: Path | None) -> Playbook:
    """The playbook expert's memory from a JSONL of ``{"goal", "call"}`` (what ``collect``
    writes as playbook.jsonl); empty, recalling nothing, when no file is given."""
    text = path.read_text() if path is not None else ""
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return Playbook.from_rows([(row["goal"], row["call"]) for row in rows])


def load_eval_hybrid(settings: Settings, playbook: Path | None) -> Hybrid:
    wanted = settings.experts if settings.ablation != "llm_only" else []
    experts = make_experts(wanted, playbook=load_playbook(playbook) if "playbook" in wanted else None)
    return load_hybrid(settings.ablation, hrm_checkpoint=settings.hrm_checkpoint,
                       ebm_checkpoint=settings.ebm_checkpoint, experts=experts)


def evaluate(settings: Settings, selection: PackSelection, options: EvalOptions, *, out: Path | None,
             playbook: Path | None = None, parts: AgentParts | None = None) -> dict[str, Any]:
    """Run the selected tasks; print the table by family and return the totals."""
    tasks = selection.tasks()
    hybrid = load_eval_hybrid(settings, playbook)
    parts = parts or load_parts(settings, seed=options.seed)
    print(f"eval: {len(tasks)} tasks from {selection.pack} ({selection.split or 'all'}), ablation "
          f"{settings.ablation}, {parts.describe()}, approve {options.approve}", flush=True)
    results = run_eval(EvalRun(settings, parts, hybrid, options), tasks, out=out)
    print(family_table(results))
    return summarize(results, ablation=settings.ablation, pack=selection.pack.stem, split=selection.split)


def collect(settings: Settings, selection: PackSelection, options: EvalOptions, *, out_dir: Path,
            playbook: Path | None = None, parts: AgentParts | None = None) -> dict[str, Any]:
    """Run the selected tasks with labelling; write the training files under ``out_dir``."""
    tasks = selection.tasks()
    hybrid = load_eval_hybrid(settings, playbook)
    parts = parts or load_parts(settings, seed=options.seed)
    writer = TraceWriter(out_dir)
    run = CollectRun(settings, parts, hybrid, options, scratch=out_dir / ".scratch")
    print(f"collect: {len(tasks)} tasks from {selection.pack} ({selection.split or 'all'}), K={settings.candidates}, "
          f"ablation {settings.ablation}, {parts.describe()}", flush=True)
    try:
        results = run_eval(run, tasks, out=out_dir / "results.jsonl",
                           on_task=lambda task, result, _records: writer.write_task(task, result, run.steps))
    finally:
        writer.close()
    print(family_table(results))
    return {**summarize(results, ablation=settings.ablation, pack=selection.pack.stem, split=selection.split),
            "written": writer.counts, "out": str(out_dir)}


def collect_demonstrations(settings: Settings, selection: PackSelection, options: EvalOptions, *,
                           solutions: Path, out_dir: Path) -> dict[str, Any]:
    """``collect`` with the reference solutions in ``solutions`` as the proposer (the LLM
    alone, one candidate a step): traces of the loop's own prompts, for ``train sft``."""
    from hybrid_agent.eval.demonstrations import DemonstrationLLM, Demonstrations

    demonstrations = Demonstrations.load(solutions, selection.tasks())
    settings = settings.model_copy(update={"ablation": "llm_only", "candidates": 1})
    parts = load_parts(settings, llm=DemonstrationLLM(demonstrations))
    summary = collect(settings, selection, options, out_dir=out_dir, parts=parts)
    return {**summary, "demonstrated": len(demonstrations.calls), "not_demonstrated": demonstrations.skipped}


def swebench(settings: Settings, instances: Path, *, out: Path, resume: bool = False,
             playbook: Path | None = None, keep_workspaces: bool = False) -> dict[str, Any]:
    """Run SWE-bench-format instances through the agent loop; write predictions for the
    official harness (docs/swebench.md)."""
    from hybrid_agent.eval.swebench import load_instances, run_instances

    loaded = load_instances(instances)
    hybrid = load_eval_hybrid(settings, playbook)
    parts = load_parts(settings)

    def solve(goal: str, workspace: Path) -> AgentExit:
        records: list[StepRecord] = []
        return build_loop(settings, workspace=workspace, llm=parts.llm, sandbox=parts.sandbox, policy=parts.policy,
                          hybrid=hybrid, journal=records.append, classifier=parts.classifier).run(goal, workspace)

    root = Path(tempfile.mkdtemp(prefix="hybrid-agent-swebench-"))
    summary = run_instances(loaded, solve=solve, model_name=f"hybrid-agent/{settings.ablation}/{parts.llm.name}",
                            root=root, out=out, resume=resume, keep_workspaces=keep_workspaces)
    return summary.as_dict()
