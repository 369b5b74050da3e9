"""The energy-based verifier and reranker: (state, candidate tool call) -> energy, lower is
better, calibrated to P(success). The agent loop calls ``load_reranker()`` and
``Reranker.score``; until a trained checkpoint ships, that is the neutral reranker (the
LLM's own ranking). ``python -m hybrid_agent.models.ebm.train`` trains one. Knows nothing
of the bus, the API, the store or the agents."""

from hybrid_agent.models.ebm.features import CandidateView, StateView
from hybrid_agent.models.ebm.reranker import EBMError, NeutralReranker, Ranked, Reranker, load_reranker, margin

__all__ = ["CandidateView", "EBMError", "NeutralReranker", "Ranked", "Reranker", "StateView", "load_reranker",
           "margin"]
