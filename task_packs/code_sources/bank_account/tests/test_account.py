from decimal import Decimal

import pytest

from account import Account, InsufficientFunds, transfer
from statement import statement


def funded(owner, amount, overdraft="0"):
    account = Account(owner, Decimal(overdraft))
    account.deposit(Decimal(amount))
    return account


def test_withdraw_to_exactly_zero():
    account = funded("ann", "100")
    account.withdraw(Decimal("100"))
    assert account.balance == 0


def test_overdraft_limit():
    account = funded("bob", "10", overdraft="50")
    account.withdraw(Decimal("60"))
    assert account.balance == Decimal("-50")
    with pytest.raises(InsufficientFunds):
        account.withdraw(Decimal("1"))


def test_no_overdraft_by_default():
    account = Account("cy")
    account.deposit(Decimal("20"))
    with pytest.raises(InsufficientFunds):
        account.withdraw(Decimal("30"))
    assert account.balance == Decimal("20")


def test_transfer():
    source, target = funded("ann", "100"), funded("bob", "5")
    transfer(source, target, Decimal("40"))
    assert (source.balance, target.balance) == (Decimal("60"), Decimal("45"))


def test_deposit_must_be_positive():
    with pytest.raises(ValueError):
        Account("ann").deposit(Decimal("0"))


def test_statement():
    account = funded("ann", "100.00")
    account.withdraw(Decimal("30.50"))
    assert statement(account) == [
        "deposit  +  100.00",
        "withdraw -   30.50",
        "balance      69.50",
    ]
