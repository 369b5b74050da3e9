"""Reorder suggestions for purchasing, from an inventory and minimum stock levels."""

from inventory import Inventory


def reorder(inventory: Inventory, minimum: dict[str, int]) -> dict[str, int]:
    """Units to order per SKU so that every SKU gets back to its minimum available level."""
    return {sku: level - inventory.available(sku) for sku, level in sorted(minimum.items())
            if inventory.available(sku) < level}
