"""The retry budget over a sliding window (twistgate.upstream.budget)."""

from twisted.internet.task import Clock

from twistgate.upstream.budget import RetryBudget


def test_retries_are_a_share_of_requests():
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window=10, min_per_second=0, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(50)) == 20


def test_the_minimum_lets_a_quiet_service_retry():
    clock = Clock()
    budget = RetryBudget(ratio=0.2, window=10, min_per_second=1, clock=clock)
    budget.deposit()
    assert sum(budget.withdraw() for _ in range(30)) == 10  # 1/s over a 10 s window


def test_exhausted_budget_refills_as_the_window_slides():
    """A storm exhausts the budget; old requests and retries age out bucket by bucket."""
    clock = Clock()
    budget = RetryBudget(ratio=0.5, window=10, min_per_second=0, clock=clock)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(10)) == 5
    assert not budget.withdraw()
    clock.advance(5)
    for _ in range(10):
        budget.deposit()
    assert sum(budget.withdraw() for _ in range(10)) == 5  # 20 requests in the window: 10 retries
    clock.advance(5)  # the first 10 requests and 5 retries age out
    assert budget.snapshot() == {"requests": 10, "retries": 5}
    assert not budget.withdraw()
    clock.advance(10)
    assert budget.snapshot() == {"requests": 0, "retries": 0}
