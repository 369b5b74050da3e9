from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hybrid_agent.models.tpc import load_tpc
from hybrid_agent.policies.engine import PolicyEngine
from hybrid_agent.policies.policy_file import load_policy


@pytest.fixture(scope="module")
def shipped_engine_for() -> Callable[[list[Path]], PolicyEngine]:
    """The engine as deployed: the default policy and the shipped classifier."""
    classifier = load_tpc()
    return lambda scopes: PolicyEngine(load_policy(), scopes=scopes, classifier=classifier)


@pytest.fixture
def rules_engine(tmp_path: Path) -> PolicyEngine:
    """The default policy's rules alone, over a real scope directory."""
    scope = tmp_path / "ws"
    scope.mkdir()
    return PolicyEngine(load_policy(), scopes=[scope])
