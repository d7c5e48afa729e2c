"""Market's HTTP API: products and orders (mounted under /api/v1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Header, Path, Query, Request, Response, status

from agora.credits.router import IdempotencyKeyHeader, stored_response
from agora.db.api import ReadUoW, WriteUoW
from agora.db.errors import Invalid
from agora.db.pagination import CursorPage, Page, PageQuery, get_pagination_config
from agora.idempotency import checked_key
from agora.market import service
from agora.market.repository import ProductFilters, ProductSort
from agora.market.schemas import (
    MAX_ID,
    Category,
    OrderCreate,
    OrderRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
)
from agora.members.deps import CurrentUser, CurrentUserForWrite
from agora.models.market import Product
from agora.money import parse_cents
from agora.openapi import errors
from agora.routing import PrefixRouter

products = PrefixRouter(prefix="/products", tags=["products"])
orders = PrefixRouter(prefix="/orders", tags=["orders"])

ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
IfMatch = Annotated[str | None, Header(max_length=1000, description='e.g. "3" (an ETag)')]
PriceQuery = Annotated[str | None, Query(max_length=32, description='e.g. "12.50"')]


def _product_response(product: Product, *, status_code: int = 200) -> Response:
    return Response(
        content=ProductRead.model_validate(product).model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers={"ETag": service.etag(product)},
    )


def _cents(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_cents(value)
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}") from None


@products.post("", status_code=status.HTTP_201_CREATED, response_model=ProductRead)
async def create_product(
    data: ProductCreate, uow: WriteUoW, seller: CurrentUserForWrite
) -> Response:
    """Put a product on sale; the caller is the seller."""
    product = await service.create_product(uow, seller_id=seller.id, data=data)
    return _product_response(product, status_code=201)


@products.get("", response_model=Page[ProductRead] | CursorPage[ProductRead])
async def list_products(
    request: Request,
    uow: ReadUoW,
    category: Annotated[Category | None, Query()] = None,
    seller_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    min_price: PriceQuery = None,
    max_price: PriceQuery = None,
    in_stock: bool | None = None,
    q: Annotated[str | None, Query(max_length=100, description="In the name")] = None,
    sort: ProductSort = ProductSort.newest,
    paginate: Annotated[
        Literal["offset", "cursor"], Query(description="`cursor` implied by `cursor=`")
    ] = "offset",
    limit: Annotated[int | None, Query()] = None,
    offset: Annotated[int, Query()] = 0,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Any:
    """Active products: filters, sort by `newest`, `price` or `-price`; offset or cursor pages."""
    if q is not None and "\x00" in q:
        raise Invalid("q: no NUL characters")
    filters = ProductFilters(
        category=category,
        seller_id=seller_id,
        min_price=_cents("min_price", min_price),
        max_price=_cents("max_price", max_price),
        in_stock=in_stock,
        q=q,
    )
    config = get_pagination_config(request)
    params = (
        config.cursor_params(limit=limit, cursor=cursor)
        if cursor is not None or paginate == "cursor"
        else config.page_params(limit=limit, offset=offset)
    )
    return await service.list_products(uow, filters=filters, sort=sort, params=params)


@products.get("/{product_id}", response_model=ProductRead, responses=errors(404))
async def read_product(product_id: ProductId, uow: ReadUoW) -> Response:
    """A product, with its version as the `ETag`."""
    return _product_response(await service.get_product(uow, product_id=product_id))


@products.patch("/{product_id}", response_model=ProductRead, responses=errors(403, 404, 412))
async def update_product(
    product_id: ProductId,
    data: ProductUpdate,
    uow: WriteUoW,
    actor: CurrentUserForWrite,
    if_match: IfMatch = None,
) -> Response:
    """Change some fields (seller or superuser); a stale `If-Match` is a 412."""
    product = await service.update_product(
        uow,
        actor_id=actor.id,
        is_superuser=actor.is_superuser,
        product_id=product_id,
        data=data,
        if_match=if_match,
    )
    return _product_response(product)


@products.delete(
    "/{product_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404, 412)
)
async def delete_product(
    product_id: ProductId, uow: WriteUoW, actor: CurrentUserForWrite, if_match: IfMatch = None
) -> Response:
    """Take a product off the market (soft delete; seller or superuser)."""
    await service.delete_product(
        uow,
        actor_id=actor.id,
        is_superuser=actor.is_superuser,
        product_id=product_id,
        if_match=if_match,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@orders.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    responses={
        **errors(404),
        400: {"description": "Idempotency-Key missing or malformed"},
        409: {"description": "OutOfStock, naming the products"},
        422: {"description": "IdempotencyKeyReused: the key came with another body"},
    },
)
async def place_order(
    data: OrderCreate,
    uow: WriteUoW,
    buyer: CurrentUserForWrite,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Order products (Idempotency-Key required); a retry replays the first response."""
    key = checked_key(idempotency_key, required=True)
    assert key is not None
    result = await service.place_order(uow, buyer_id=buyer.id, data=data, key=key)
    return stored_response(result)


@orders.get("", response_model=Page[OrderRead])
async def list_orders(uow: ReadUoW, viewer: CurrentUser, page: PageQuery) -> Any:
    """The caller's orders, newest first (a superuser sees everyone's)."""
    return await service.list_orders(
        uow, viewer_id=viewer.id, is_superuser=viewer.is_superuser, params=page
    )


@orders.get("/{order_id}", response_model=OrderRead, responses=errors(404))
async def read_order(order_id: OrderId, uow: ReadUoW, viewer: CurrentUser) -> Any:
    """One of the caller's orders (another member's is a 404)."""
    return await service.get_order(
        uow, viewer_id=viewer.id, is_superuser=viewer.is_superuser, order_id=order_id
    )


@orders.post("/{order_id}/pay", response_model=OrderRead, responses=errors(403, 404))
async def pay_order(order_id: OrderId, uow: WriteUoW, buyer: CurrentUserForWrite) -> Any:
    """Pay a pending order: the buyer is debited, each seller credited (409 when short)."""
    return await service.pay_order(
        uow, actor_id=buyer.id, is_superuser=buyer.is_superuser, order_id=order_id
    )


@orders.post("/{order_id}/cancel", response_model=OrderRead, responses=errors(403, 404))
async def cancel_order(order_id: OrderId, uow: WriteUoW, actor: CurrentUserForWrite) -> Any:
    """Cancel an order: stock comes back; a paid order is refunded."""
    return await service.cancel_order(
        uow, actor_id=actor.id, is_superuser=actor.is_superuser, order_id=order_id
    )


# Included one by one by the app (`routers`), not nested: FastAPI matches a nested router's
# routes once per level (bench/README.md, "Fourth round").
routers = (products, orders)
