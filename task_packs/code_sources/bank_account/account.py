"""Bank accounts: deposits, withdrawals within an overdraft limit, and transfers."""

from decimal import Decimal


class InsufficientFunds(Exception):
    pass


class Account:
    def __init__(self, owner: str, overdraft_limit: Decimal = Decimal("0")) -> None:
        self.owner = owner
        self.overdraft_limit = overdraft_limit
        self.balance = Decimal("0")
        self.history: list[tuple[str, Decimal]] = []

    def __repr__(self) -> str:
        return f"Account({self.owner!r}, balance={self.balance})"

    def deposit(self, amount: Decimal) -> None:
        if amount <= 0:
            raise ValueError("a deposit must be positive")
        self.balance += amount
        self.history.append(("deposit", amount))

    def withdraw(self, amount: Decimal) -> None:
        if amount <= 0:
            raise ValueError("a withdrawal must be positive")
        if self.balance - amount < -self.overdraft_limit:
            raise InsufficientFunds(f"{self.owner}: balance {self.balance}, requested {amount}")
        self.balance -= amount
        self.history.append(("withdraw", amount))


def transfer(source: Account, target: Account, amount: Decimal) -> None:
    """Move money; when the withdrawal fails nothing is deposited."""
    source.withdraw(amount)
    target.deposit(amount)
