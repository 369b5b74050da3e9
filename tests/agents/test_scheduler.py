"""The compute scheduler spends one greedy candidate on easy steps and more, with a
deliberate step, when the HRM or the last step's uncertainty says so; it says why."""

import pytest

from hybrid_agent.agents.scheduler import Budget, Signals, choose_budget


def test_with_nothing_to_go_on_the_step_is_one_greedy_candidate():
    assert choose_budget(Signals(), max_k=8) == Budget(k=1, deliberate=False, reasons=())


@pytest.mark.parametrize("segments, k", [(1, 1), (2, 4), (3, 8), (5, 8)])
def test_the_segment_the_hrm_halts_at_sets_k(segments, k):
    assert choose_budget(Signals(segments=segments), max_k=8).k == k


def test_k_never_exceeds_the_configured_maximum():
    assert choose_budget(Signals(segments=4, risk=0.9), max_k=2).k == 2


def test_risk_makes_the_step_deliberate_with_more_candidates():
    budget = choose_budget(Signals(segments=1, risk=0.8), max_k=8)
    assert budget.k == 4 and budget.deliberate and "HRM risk 0.80" in budget.reasons


@pytest.mark.parametrize("signals", [Signals(last_mean_logprob=-2.5), Signals(last_margin=0.01)])
def test_an_unsure_last_step_widens_the_next(signals):
    budget = choose_budget(signals, max_k=8)
    assert budget.k == 4 and not budget.deliberate and len(budget.reasons) == 1


def test_a_confident_last_step_stays_on_the_fast_path():
    assert choose_budget(Signals(segments=1, risk=0.1, last_mean_logprob=-0.2, last_margin=float("inf")),
                         max_k=8).k == 1
