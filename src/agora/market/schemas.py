"""Market's request and response bodies. Prices are decimal strings ("12.50")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    Field,
    StringConstraints,
    model_validator,
)

from agora.models.market import (
    CATEGORY_MAX,
    ORDER_LINES_MAX,
    PRICE_MAX_CENTS,
    PRODUCT_DESCRIPTION_MAX,
    PRODUCT_NAME_MAX,
    QUANTITY_MAX,
    OrderStatus,
)
from agora.money import Amount, AmountOut
from agora.schemas import Input, NoNul, Output, PartialUpdate

MAX_ID = 2**31 - 1  # 32-bit integer keys
STOCK_MAX = 1_000_000_000


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=PRODUCT_NAME_MAX),
    NoNul,
]
Description = Annotated[str, StringConstraints(max_length=PRODUCT_DESCRIPTION_MAX), NoNul]
Category = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=CATEGORY_MAX), NoNul
]
Price = Annotated[Amount, Field(gt=0, le=PRICE_MAX_CENTS)]
Stock = Annotated[int, Field(ge=0, le=STOCK_MAX)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class ProductCreate(Input):
    name: Name
    description: Description = ""
    category: Category
    price: Price
    stock: Stock = 0
    is_active: bool = True


class ProductUpdate(PartialUpdate):
    """Every field optional; only the fields sent change."""

    name: Name | None = None
    description: Description | None = None
    category: Category | None = None
    price: Price | None = None
    stock: Stock | None = None
    is_active: bool | None = None


class ProductRead(Output):
    id: int
    seller_id: int
    name: str
    description: str
    category: str
    price: AmountOut
    stock: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class OrderLine(Input):
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=QUANTITY_MAX)]


class OrderCreate(Input):
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=ORDER_LINES_MAX)]

    @model_validator(mode="after")
    def _one_line_per_product(self) -> Self:
        ids = [line.product_id for line in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("each product may appear on one line only")
        return self


class OrderItemRead(Output):
    product_id: int
    seller_id: int
    name: str
    unit_price: AmountOut
    quantity: int
    line_total: AmountOut


class OrderRead(Output):
    id: int
    buyer_id: int
    status: OrderStatus
    total: AmountOut
    items: list[OrderItemRead]
    created_at: datetime
    paid_at: datetime | None
    cancelled_at: datetime | None
