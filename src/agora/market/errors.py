"""Market's domain errors."""

from __future__ import annotations

from typing import Any

from agora.db.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    on_constraint,
)


class ProductNotFound(NotFound):
    default_detail = "No such product"


class NotProductSeller(Forbidden):
    default_detail = "Only the product's seller or a superuser may change it"


class VersionMismatch(PreconditionFailed):
    default_detail = "The product changed since that version (If-Match); reload it"


class OutOfStock(Conflict):
    """Not enough stock; `detail` names each short product with what is left."""

    def __init__(self, shortages: list[dict[str, Any]] | None = None) -> None:
        super().__init__({"message": "Not enough stock", "products": shortages or []})


class ProductUnavailable(Conflict):
    def __init__(self, product_ids: list[int]) -> None:
        super().__init__(
            {"message": "Products not found or not for sale", "product_ids": product_ids}
        )


class OwnProduct(Invalid):
    default_detail = "You cannot order your own products"


class OrderNotFound(NotFound):
    default_detail = "No such order"


class NotOrderBuyer(Forbidden):
    default_detail = "Only the buyer may pay for an order"


class OrderNotPending(Conflict):
    default_detail = "The order is not pending"


# Backstop behind the locked check-and-decrement.
on_constraint("ck_product_stock_nonnegative", OutOfStock)
