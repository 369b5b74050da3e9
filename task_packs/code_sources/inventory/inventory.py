"""Warehouse inventory: stock levels and reservations per SKU."""


class OutOfStock(Exception):
    pass


class Inventory:
    def __init__(self) -> None:
        self._stock: dict[str, int] = {}
        self._reserved: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Inventory(stock={self._stock}, reserved={self._reserved})"

    def receive(self, sku: str, quantity: int) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self._stock[sku] = self._stock.get(sku, 0) + quantity

    def available(self, sku: str) -> int:
        """Units on hand that are not yet promised to an order."""
        return self._stock.get(sku, 0) - self._reserved.get(sku, 0)

    def reserve(self, sku: str, quantity: int) -> None:
        if quantity > self.available(sku):
            raise OutOfStock(f"{sku}: {quantity} requested, {self.available(sku)} available")
        self._reserved[sku] = self._reserved.get(sku, 0) + quantity

    def ship(self, sku: str, quantity: int) -> None:
        """Shipped units leave both the stock and the reservation."""
        if quantity > self._reserved.get(sku, 0):
            raise OutOfStock(f"{sku}: only {self._reserved.get(sku, 0)} reserved")
        self._reserved[sku] -= quantity
        self._stock[sku] -= quantity
