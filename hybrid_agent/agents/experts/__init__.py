"""Proposers other than the LLM: the code-edit expert (small repairs of the code a failing
test implicates) and the playbook expert (calls that succeeded on similar goals)."""

from hybrid_agent.agents.experts.base import Expert, ExpertContext, expert_candidate
from hybrid_agent.agents.experts.code_edit import CodeEditExpert
from hybrid_agent.agents.experts.factory import NAMES, make_experts
from hybrid_agent.agents.experts.playbook import Playbook, PlaybookExpert

__all__ = ["NAMES", "CodeEditExpert", "Expert", "ExpertContext", "Playbook", "PlaybookExpert", "expert_candidate",
           "make_experts"]
