"""Invoice totals: line items, a percentage discount, then tax, rounded to cents."""

from dataclasses import dataclass
from decimal import Decimal

from money import percent, to_cents


@dataclass(frozen=True)
class Line:
    description: str
    unit_price: Decimal
    quantity: int = 1


def subtotal(lines: list[Line]) -> Decimal:
    return sum((line.unit_price * line.quantity for line in lines), Decimal("0"))


def total(lines: list[Line], discount_pct: Decimal = Decimal("0"), tax_pct: Decimal = Decimal("0")) -> Decimal:
    """Subtotal less the discount, plus tax on the discounted amount."""
    if not 0 <= discount_pct <= 100:
        raise ValueError("discount must be between 0 and 100 percent")
    net = subtotal(lines) - percent(subtotal(lines), discount_pct)
    gross = net + percent(net, tax_pct)
    return to_cents(gross)
