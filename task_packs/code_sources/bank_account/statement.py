"""Printable account statements: one aligned line per movement, then the balance."""

from account import Account


def statement(account: Account) -> list[str]:
    lines = []
    for kind, amount in account.history:
        sign = "+" if kind == "deposit" else "-"
        lines.append(f"{kind:<8} {sign}{amount:>8}")
    lines.append(f"{'balance':<8} {account.balance:>9}")
    return lines
