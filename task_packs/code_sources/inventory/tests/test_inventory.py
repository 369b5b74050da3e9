import pytest

from inventory import Inventory, OutOfStock
from reorder import reorder


def stocked(**levels):
    inventory = Inventory()
    for sku, quantity in levels.items():
        inventory.receive(sku, quantity)
    return inventory


def test_receive_accumulates():
    inventory = stocked(widget=5)
    inventory.receive("widget", 3)
    assert inventory.available("widget") == 8


def test_reserve_reduces_available():
    inventory = stocked(widget=5)
    inventory.reserve("widget", 5)
    assert inventory.available("widget") == 0


def test_cannot_reserve_more_than_available():
    inventory = stocked(widget=3)
    with pytest.raises(OutOfStock, match="widget: 5 requested, 3 available"):
        inventory.reserve("widget", 5)


def test_ship_reserved_units():
    inventory = stocked(widget=10)
    inventory.reserve("widget", 4)
    inventory.ship("widget", 3)
    assert inventory.available("widget") == 6


def test_cannot_ship_unreserved_units():
    inventory = stocked(widget=10)
    inventory.reserve("widget", 1)
    with pytest.raises(OutOfStock):
        inventory.ship("widget", 2)


def test_reorder_to_minimum():
    inventory = stocked(a=2, b=2)
    assert reorder(inventory, {"a": 5, "b": 2, "c": 3}) == {"a": 3, "c": 3}


def test_receive_rejects_zero():
    with pytest.raises(ValueError):
        Inventory().receive("widget", 0)
