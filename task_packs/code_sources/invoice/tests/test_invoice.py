from decimal import Decimal

import pytest

from invoice import Line, subtotal, total


def test_subtotal_multiplies_quantities():
    lines = [Line("pens", Decimal("2.50"), 4), Line("pad", Decimal("1.25"))]
    assert subtotal(lines) == Decimal("11.25")


def test_empty_invoice_is_zero():
    assert total([]) == Decimal("0.00")


def test_discount_then_tax():
    lines = [Line("chair", Decimal("50.00"), 2)]
    assert total(lines, discount_pct=Decimal("10"), tax_pct=Decimal("20")) == Decimal("108.00")


def test_rounds_half_up_to_cents():
    assert total([Line("bolt", Decimal("0.125"))]) == Decimal("0.13")


def test_rejects_discount_over_100():
    with pytest.raises(ValueError):
        total([Line("x", Decimal("1"))], discount_pct=Decimal("110"))
