"""Market's use cases: products (with optimistic versions) and orders.

Writes commit once. Orders and payments run as one transaction each, retried as a whole on
serialization failure or deadlock (`retrying_in`). Rows are locked in one global order,
orders -> products (ascending id) -> user balances (ascending id), so concurrent use cases
queue behind each other instead of deadlocking.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from agora.credits.repository import AccountRepository
from agora.credits.service import refusal_error
from agora.db.base import utcnow
from agora.db.errors import StaleData
from agora.db.pagination import CursorPage, CursorParams, Page, PageParams
from agora.db.uow import UnitOfWork, retrying_in
from agora.idempotency import StoredResponse, commit_idempotent
from agora.market.errors import (
    NotOrderBuyer,
    NotProductSeller,
    OrderNotFound,
    OrderNotPending,
    OutOfStock,
    OwnProduct,
    ProductUnavailable,
    VersionMismatch,
)
from agora.market.repository import (
    OrderRepository,
    ProductFilters,
    ProductRepository,
    ProductSort,
)
from agora.market.schemas import OrderCreate, OrderRead, ProductCreate, ProductUpdate
from agora.models.market import (
    CreditTransfer,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    TransferKind,
)

ORDER_SCOPE = "orders"

# --- products -------------------------------------------------------------------------------


def etag(product: Product) -> str:
    return f'"{product.version}"'


def matches(if_match: str, product: Product) -> bool:
    """RFC 9110 If-Match: `*` or a list of entity tags (weak ones compared as strong)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    return "*" in tags or etag(product) in tags


async def create_product(uow: UnitOfWork, *, seller_id: int, data: ProductCreate) -> Product:
    product = await uow.repo(ProductRepository).add(
        Product(seller_id=seller_id, **data.model_dump())
    )
    await uow.commit()
    return product


async def get_product(uow: UnitOfWork, *, product_id: int) -> Product:
    return await uow.repo(ProductRepository).get_one(product_id)


async def list_products(
    uow: UnitOfWork,
    *,
    filters: ProductFilters,
    sort: ProductSort,
    params: PageParams | CursorParams,
) -> Page[Product] | CursorPage[Product]:
    products = uow.repo(ProductRepository)
    if isinstance(params, CursorParams):
        return await products.list_cursor(params, filters=filters, sort=sort)
    return await products.list_page(params, filters=filters, sort=sort)


async def _own_product(
    uow: UnitOfWork, *, actor_id: int, is_superuser: bool, product_id: int, if_match: str | None
) -> Product:
    product = await get_product(uow, product_id=product_id)
    if product.seller_id != actor_id and not is_superuser:
        raise NotProductSeller()
    if if_match is not None and not matches(if_match, product):
        raise VersionMismatch()
    return product


async def update_product(
    uow: UnitOfWork,
    *,
    actor_id: int,
    is_superuser: bool,
    product_id: int,
    data: ProductUpdate,
    if_match: str | None,
) -> Product:
    """Partial update by the seller or a superuser; a stale `If-Match` is a 412.

    The UPDATE itself checks the version it read (`VersionMixin`), so a change that lands
    between the check and the write is refused too: 412 with If-Match, 409 without.
    """
    product = await _own_product(
        uow, actor_id=actor_id, is_superuser=is_superuser, product_id=product_id, if_match=if_match
    )
    try:
        await uow.repo(ProductRepository).update(product, data.model_dump(exclude_unset=True))
        await uow.commit()
    except StaleData:
        if if_match is not None:
            raise VersionMismatch() from None
        raise
    return product


async def delete_product(
    uow: UnitOfWork, *, actor_id: int, is_superuser: bool, product_id: int, if_match: str | None
) -> None:
    """Soft delete; orders keep their snapshot of the product."""
    product = await _own_product(
        uow, actor_id=actor_id, is_superuser=is_superuser, product_id=product_id, if_match=if_match
    )
    await uow.repo(ProductRepository).delete(product)
    await uow.commit()


# --- orders ---------------------------------------------------------------------------------


async def place_order(
    uow: UnitOfWork, *, buyer_id: int, data: OrderCreate, key: str
) -> StoredResponse:
    """Claim the key, lock and decrement stock, snapshot prices: one transaction, 201."""

    return await commit_idempotent(
        uow,
        user_id=buyer_id,
        scope=ORDER_SCOPE,
        key=key,
        payload=data.model_dump(mode="json"),
        work=lambda: _place(uow, buyer_id=buyer_id, data=data),
    )


async def _place(uow: UnitOfWork, *, buyer_id: int, data: OrderCreate) -> StoredResponse:
    wanted = {line.product_id: line.quantity for line in data.items}
    products = {p.id: p for p in await uow.repo(ProductRepository).lock_many(wanted)}
    missing = sorted(pid for pid in wanted if pid not in products or not products[pid].is_active)
    if missing:
        raise ProductUnavailable(missing)
    if any(p.seller_id == buyer_id for p in products.values()):
        raise OwnProduct()
    short = [
        {"product_id": pid, "requested": qty, "available": products[pid].stock}
        for pid, qty in sorted(wanted.items())
        if products[pid].stock < qty
    ]
    if short:
        raise OutOfStock(short)
    items = []
    for pid in sorted(wanted):  # lines in product id order, like the locks
        product, qty = products[pid], wanted[pid]
        product.stock -= qty
        items.append(
            OrderItem(
                product_id=pid,
                seller_id=product.seller_id,
                name=product.name,
                unit_price=product.price,
                quantity=qty,
            )
        )
    order = Order(buyer_id=buyer_id, total=sum(i.line_total for i in items), items=items)
    await uow.repo(OrderRepository).add(order)
    return StoredResponse(201, OrderRead.model_validate(order).model_dump_json())


async def get_order(
    uow: UnitOfWork, *, viewer_id: int, is_superuser: bool, order_id: int, lock: bool = False
) -> Order:
    """The order, if the viewer may see it: another member's order is a 404, not a 403."""
    order = await uow.repo(OrderRepository).get_with_items(order_id, lock=lock)
    if order is None or (order.buyer_id != viewer_id and not is_superuser):
        raise OrderNotFound()
    return order


async def list_orders(
    uow: UnitOfWork, *, viewer_id: int, is_superuser: bool, params: PageParams
) -> Page[Order]:
    buyer = None if is_superuser else viewer_id
    return await uow.repo(OrderRepository).list_for(params, buyer_id=buyer)


def _seller_amounts(items: Iterable[OrderItem]) -> dict[int, int]:
    amounts: dict[int, int] = defaultdict(int)
    for item in items:
        amounts[item.seller_id] += item.line_total
    return dict(amounts)


async def pay_order(uow: UnitOfWork, *, actor_id: int, is_superuser: bool, order_id: int) -> Order:
    """Debit the buyer, credit each seller, mark paid: all or nothing (409 when short)."""

    async def attempt() -> Order:
        order = await get_order(
            uow, viewer_id=actor_id, is_superuser=is_superuser, order_id=order_id, lock=True
        )
        if order.buyer_id != actor_id:
            raise NotOrderBuyer()
        if order.status is not OrderStatus.pending:
            raise OrderNotPending(f"The order is {order.status.value}")
        sellers = _seller_amounts(order.items)
        refusal = await uow.repo(AccountRepository).apply({order.buyer_id: -order.total, **sellers})
        if refusal is not None:
            raise refusal_error(refusal)
        _record(uow, order, sellers, TransferKind.order_payment)
        order.status, order.paid_at = OrderStatus.paid, utcnow()
        await uow.commit()
        return order

    return await retrying_in(uow, attempt)


async def cancel_order(
    uow: UnitOfWork, *, actor_id: int, is_superuser: bool, order_id: int
) -> Order:
    """Cancel a pending order (stock back) or a paid one (stock back and refunded)."""

    async def attempt() -> Order:
        order = await get_order(
            uow, viewer_id=actor_id, is_superuser=is_superuser, order_id=order_id, lock=True
        )
        if order.status is OrderStatus.cancelled:
            raise OrderNotPending("The order is already cancelled")
        quantities = {item.product_id: item.quantity for item in order.items}
        # Deleted products get their stock back too: the rows still exist.
        locked = await uow.repo(ProductRepository).lock_many(quantities, include_deleted=True)
        for product in locked:
            product.stock += quantities[product.id]
        if order.status is OrderStatus.paid:
            sellers = _seller_amounts(order.items)
            deltas = {seller: -amount for seller, amount in sellers.items()}
            refusal = await uow.repo(AccountRepository).apply(
                {**deltas, order.buyer_id: order.total}
            )
            if refusal is not None:
                raise refusal_error(refusal, who=f" for user {refusal.user_id} to refund")
            _record(uow, order, sellers, TransferKind.order_refund)
        order.status, order.cancelled_at = OrderStatus.cancelled, utcnow()
        await uow.commit()
        return order

    return await retrying_in(uow, attempt)


def _record(uow: UnitOfWork, order: Order, sellers: dict[int, int], kind: TransferKind) -> None:
    """Ledger rows between the buyer and each seller (reversed for a refund)."""
    refund = kind is TransferKind.order_refund
    for seller, amount in sorted(sellers.items()):
        uow.session.add(
            CreditTransfer(
                kind=kind,
                from_user_id=seller if refund else order.buyer_id,
                to_user_id=order.buyer_id if refund else seller,
                amount=amount,
                note=f"order {order.id}",
                order_id=order.id,
            )
        )
