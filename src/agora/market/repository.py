"""SQL for products and orders. Locks are taken in ascending id order; never commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Select

from agora.db.filters import Condition, between, contains, eq, given
from agora.db.pagination import CursorPage, CursorParams, OrderBy, Page, PageParams
from agora.db.repository import Repository
from agora.market.errors import OrderNotFound, ProductNotFound
from agora.models.market import Order, Product


class ProductSort(StrEnum):
    newest = "newest"
    price = "price"
    price_desc = "-price"


_SORTS: dict[ProductSort, list[OrderBy]] = {
    ProductSort.newest: [Product.created_at.desc()],
    ProductSort.price: [Product.price.asc()],
    ProductSort.price_desc: [Product.price.desc()],
}


@dataclass(frozen=True)
class ProductFilters:
    category: str | None = None
    seller_id: int | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None
    q: str | None = None

    def conditions(self) -> list[Condition]:
        stock = (
            None
            if self.in_stock is None
            else (Product.stock > 0 if self.in_stock else Product.stock == 0)
        )
        return given(
            Product.is_active.is_(True),
            eq(Product.category, self.category),
            eq(Product.seller_id, self.seller_id),
            between(Product.price, self.min_price, self.max_price),
            stock,
            # lower(name) LIKE ...: served by the trigram index on PostgreSQL.
            contains(Product.name, self.q),
        )


class ProductRepository(Repository[Product]):
    model = Product
    not_found = ProductNotFound

    async def list_page(
        self, params: PageParams, *, filters: ProductFilters, sort: ProductSort
    ) -> Page[Product]:
        order = [*_SORTS[sort], Product.id.desc() if sort is ProductSort.newest else Product.id]
        return await self.page(params, where=filters.conditions(), order_by=order)

    async def list_cursor(
        self, params: CursorParams, *, filters: ProductFilters, sort: ProductSort
    ) -> CursorPage[Product]:
        return await self.cursor_page(params, where=filters.conditions(), order_by=_SORTS[sort])

    async def lock_many(
        self, ids: Iterable[int], *, include_deleted: bool = False
    ) -> list[Product]:
        """Lock the products (FOR NO KEY UPDATE) in ascending id order and read them fresh.

        Every transaction that changes stock locks products this way, so two of them never
        hold each other's next row (no deadlock). `populate_existing` overwrites objects
        already in the session with the values read under the lock.
        """
        stmt = self.locking(
            self.select_stmt(
                where=[Product.id.in_(sorted(set(ids)))],
                order_by=[Product.id],
                include_deleted=include_deleted,
            )
        )
        return await self.all(stmt)

    @staticmethod
    def locking(stmt: Select[Product]) -> Select[Product]:
        # FOR NO KEY UPDATE: enough to change stock, and it does not block foreign-key checks
        # of concurrent inserts that reference these rows. SQLite ignores it (BEGIN IMMEDIATE
        # already serializes writers).
        return stmt.with_for_update(key_share=True).execution_options(populate_existing=True)


class OrderRepository(Repository[Order]):
    model = Order
    not_found = OrderNotFound

    async def get_with_items(self, order_id: int, *, lock: bool = False) -> Order | None:
        stmt = self.select_stmt(where=[Order.id == order_id], load=[Order.items])
        if lock:
            stmt = stmt.with_for_update(of=Order, key_share=True)
            stmt = stmt.execution_options(populate_existing=True)
        return await self.one_or_none(stmt)

    async def list_for(self, params: PageParams, *, buyer_id: int | None) -> Page[Order]:
        """Orders, newest first: one buyer's, or everyone's when `buyer_id` is None."""
        where = given(eq(Order.buyer_id, buyer_id))
        return await self.page(params, where=where, order_by=[Order.id.desc()], load=[Order.items])
