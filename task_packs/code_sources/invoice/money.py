"""Money helpers shared by the invoice code: cents rounding and percentages as Decimals."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> Decimal:
    """Round half up to whole cents, as printed invoices do."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def percent(amount: Decimal, pct: Decimal) -> Decimal:
    return amount * pct / 100
