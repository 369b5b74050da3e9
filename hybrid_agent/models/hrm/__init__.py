"""The HRM planner and compute scheduler's model: a Hierarchical Reasoning Model over a
compact structured state (state.py) that gives priors over tools and experts, a risk,
and, by halting, how much computation a step deserves. ``load_planner`` is what the
agent calls; ``python -m hybrid_agent.models.hrm.train`` trains a checkpoint. Knows
nothing of the bus, the API, the store or the agents."""

from hybrid_agent.models.hrm.planner import PlanOutput, Planner, default_checkpoint, load_planner
from hybrid_agent.models.hrm.state import RecentStep, StepState

__all__ = ["PlanOutput", "Planner", "RecentStep", "StepState", "default_checkpoint", "load_planner"]
